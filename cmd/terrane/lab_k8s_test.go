package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/k8sbins"
	"github.com/terrane-net/terrane/internal/lab"
)

// `lab up --k8s` as an operator runs it: the progress names the control
// plane, the Nodes and the Pods and ends with the KUBECONFIG hint; the
// report and `lab status -o json` carry the kubeconfig; kubectl with it
// lists the Nodes and the Pods with the lab's addresses; add-pod and
// del-pod go through the API. Bad --kubelet values are refused before
// anything is made.
func TestPrivilegedLabK8sCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create network namespaces; run `go test` as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("privileged test: needs the ip command from iproute2")
	}
	bins := k8sbins.Dir()
	if missing := k8sbins.Missing(bins, k8sbins.ControlPlane); len(missing) > 0 {
		t.Fatalf("%s not in %s: build them with `%s`", strings.Join(missing, ", "), bins, k8sbins.BuildCommand)
	}
	bin := buildLabBinaries(t)
	_, dir, run := labCLI(t, bin, "k")

	for _, bad := range [][]string{{"--k8s", "--kubelet", "docker"}, {"--kubelet", "real"}} {
		r := run(append([]string{"lab", "up"}, bad...)...)
		if r.code == 0 || !strings.Contains(r.stderr, "--kubelet") {
			t.Errorf("lab up %v: exit %d: %s", bad, r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "state.json")); err == nil {
			t.Fatalf("lab up %v made a lab", bad)
		}
	}

	r := run("lab", "up", "--k8s", "--scenario", "two-networks", "-o", "json")
	if r.code != 0 {
		t.Fatalf("lab up --k8s: exit %d\n%s\n%s", r.code, r.stderr, r.stdout)
	}
	kubeconfig := filepath.Join(dir, "k8s", "kubeconfig")
	for _, step := range []string{"starting etcd and kube-apiserver", "registering 3 Nodes", "starting the lab kubelet",
		"creating 5 pods as Pod objects", "export KUBECONFIG=" + kubeconfig} {
		if !strings.Contains(r.stderr, step) {
			t.Errorf("lab up --k8s progress lacks %q:\n%s", step, r.stderr)
		}
	}
	var rep struct {
		Kubeconfig string
		Probe      lab.ProbeReport
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("lab up --k8s -o json: %v", err)
	}
	if rep.Kubeconfig != kubeconfig || len(rep.Probe.Results) != 20 || rep.Probe.Failed() != 0 {
		t.Errorf("lab up --k8s: kubeconfig %q, %d probes, %d failed; want %s, 20, 0", rep.Kubeconfig, len(rep.Probe.Results), rep.Probe.Failed(), kubeconfig)
	}
	r = run("lab", "status", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"kubeconfig": "`+kubeconfig+`"`) {
		t.Errorf("lab status -o json: exit %d, no kubeconfig: %s", r.code, r.stderr)
	}

	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(bins, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := kubectl("get", "nodes", "-o", "jsonpath={.items[*].status.addresses[0].address}"); got != "192.168.30.1 192.168.30.2 192.168.30.3" {
		t.Errorf("nodes' InternalIPs %q", got)
	}
	if r = run("lab", "add-pod", "viaapi", "--host", "host-3", "--network", "red"); r.code != 0 || !strings.Contains(r.stdout, "pod viaapi on host-3: 10.40.") {
		t.Fatalf("lab add-pod --network red: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if got := kubectl("get", "pod", "viaapi", "-o", "jsonpath={.status.phase} {.metadata.annotations.terrane\\.io/network}"); got != "Running red" {
		t.Errorf("pod viaapi: %q, want a Running Pod annotated red", got)
	}
	if r = run("lab", "del-pod", "viaapi"); r.code != 0 {
		t.Errorf("lab del-pod: exit %d: %s", r.code, r.stderr)
	}
	if out, err := exec.Command(filepath.Join(bins, "kubectl"), "--kubeconfig", kubeconfig, "get", "pod", "viaapi").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "NotFound") {
		t.Errorf("pod viaapi after del-pod: %s", out)
	}
	if r = run("lab", "down"); r.code != 0 {
		t.Errorf("lab down: exit %d: %s", r.code, r.stderr)
	}
}
