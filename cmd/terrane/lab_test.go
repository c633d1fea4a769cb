package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/terrane-net/terrane/internal/lab"
)

// buildLabBinaries builds terrane and terrane-cni into a temporary
// directory: the lab runs them as separate processes.
func buildLabBinaries(t *testing.T) string {
	t.Helper()
	// Not t.TempDir (0700 under a 0700 parent): the test runs the binary
	// as nobody too.
	dir, err := os.MkdirTemp("", "terrane-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/terrane", "./cmd/terrane-cni")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return dir
}

type labRun struct {
	stdout, stderr string
	code           int
}

// labCLI names a lab prefix and 8 random hex digits, in a short temporary
// directory (agent sockets live below it), taken down when the test ends;
// run drives the built terrane on it.
func labCLI(t *testing.T, bin, prefix string) (name, dir string, run func(args ...string) labRun) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name = prefix + hex.EncodeToString(b[:])
	dir, err := os.MkdirTemp("", "t"+prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = lab.Down(t.Context(), lab.DownOptions{Name: name, Dir: dir})
		os.RemoveAll(dir)
	})
	common := []string{"--name", name, "--dir", dir}
	return name, dir, func(args ...string) labRun { return runLab(t, bin, nil, append(args, common...)...) }
}

func runLab(t *testing.T, bin string, cred *syscall.Credential, args ...string) labRun {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "terrane"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	r := labRun{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// The lab as an operator drives it: `lab up` of the built-in default
// scenario prints JSON with every probe passed; a second up is refused;
// probe, routes, add-pod and del-pod work on the running lab; down removes
// it and a second down finds nothing. Without root, up says why and points
// to terrane plan.
func TestPrivilegedLabCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create network namespaces; run `go test` as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("privileged test: needs the ip command from iproute2")
	}
	t.Setenv("TERRANE_PROGRESS", "auto") // the lab's children inherit it
	bin := buildLabBinaries(t)
	name, dir, run := labCLI(t, bin, "c")

	r := run("lab", "up", "-o", "json")
	if r.code != 0 {
		t.Fatalf("lab up: exit %d\n%s\n%s", r.code, r.stderr, r.stdout)
	}
	for _, step := range []string{"creating 4 namespaces", "starting the server", "starting 3 agents", "creating 6 pods through libcni", "probing every pod"} {
		if !strings.Contains(r.stderr, step) {
			t.Errorf("lab up progress lacks %q:\n%s", step, r.stderr)
		}
	}
	// Off a terminal: plain lines with the count and the estimate.
	if strings.ContainsAny(r.stderr, "\r\x1b") || !strings.Contains(r.stderr, " done, ETA ") {
		t.Errorf("lab up's progress off a terminal: want plain lines, each step with its count and estimate:\n%q", r.stderr)
	}
	var up struct {
		Probe struct {
			Pods    []struct{ Name string }
			Results []struct {
				From, To string
				OK, TCP  bool
				ICMP     bool
			}
		}
		Routes []struct{ Node string }
		State  struct{ Blocks map[string][]any }
	}
	if err := json.Unmarshal([]byte(r.stdout), &up); err != nil {
		t.Fatalf("lab up -o json: %v\n%s", err, r.stdout)
	}
	if len(up.Probe.Pods) != 6 || len(up.Probe.Results) != 30 {
		t.Errorf("lab up probed %d pods, %d pairs; want 6 and 30", len(up.Probe.Pods), len(up.Probe.Results))
	}
	for _, res := range up.Probe.Results {
		if !res.OK || !res.TCP || !res.ICMP {
			t.Errorf("probe %+v failed", res)
		}
	}
	if len(up.Routes) != 3 || len(up.State.Blocks["flat"]) != 3 {
		t.Errorf("lab up reports routes of %d nodes and %d blocks; want 3 hosts with a block each", len(up.Routes), len(up.State.Blocks["flat"]))
	}

	if r := run("lab", "up"); r.code == 0 || !strings.Contains(r.stderr, "terrane lab down --name "+name) {
		t.Errorf("second lab up: exit %d, stderr %s; want a refusal naming lab down", r.code, r.stderr)
	}

	r = run("lab", "probe", "-o", "json")
	var probe lab.ProbeReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &probe) != nil || len(probe.Results) != 30 || probe.Failed() != 0 {
		t.Errorf("lab probe -o json: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if r = run("lab", "probe"); r.code != 0 || !strings.Contains(r.stdout, "30 of 30 pairs reachable") {
		t.Errorf("lab probe: exit %d: %s", r.code, r.stdout)
	}

	r = run("lab", "routes", "host-1", "-o", "json")
	var routes lab.NodeRoutes
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &routes) != nil {
		t.Fatalf("lab routes host-1: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	peer := false
	for _, rt := range routes.Routes {
		peer = peer || rt.Gateway == "192.168.10.12"
	}
	if !peer {
		t.Errorf("host-1 has no route via its peer host-2:\n%s", r.stdout)
	}
	if r = run("lab", "routes", "nosuch"); r.code == 0 || !strings.Contains(r.stderr, "nodes: host-1, host-2, host-3") {
		t.Errorf("lab routes nosuch: exit %d: %s", r.code, r.stderr)
	}

	if r = run("lab", "add-pod", "extra", "--host", "host-2"); r.code != 0 || !strings.Contains(r.stdout, "pod extra on host-2: 10.10.") {
		t.Errorf("lab add-pod: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if r = run("lab", "probe"); r.code != 0 || !strings.Contains(r.stdout, "42 of 42 pairs reachable") {
		t.Errorf("lab probe with the extra pod: exit %d: %s", r.code, r.stdout)
	}
	if r = run("lab", "add-pod", "bad", "--host", "host-9", "--network", "nope"); r.code == 0 ||
		!strings.Contains(r.stderr, `host: unknown host "host-9"`) {
		t.Errorf("lab add-pod on an unknown host: exit %d: %s", r.code, r.stderr)
	}
	if r = run("lab", "del-pod", "extra"); r.code != 0 {
		t.Errorf("lab del-pod: exit %d: %s", r.code, r.stderr)
	}

	if r = run("lab", "down"); r.code != 0 || !strings.Contains(r.stderr, "deleted 10 namespaces") {
		t.Errorf("lab down: exit %d: %s", r.code, r.stderr)
	}
	if r = run("lab", "down"); r.code != 0 || !strings.Contains(r.stderr, "nothing to remove") {
		t.Errorf("second lab down: exit %d: %s", r.code, r.stderr)
	}
	if r = run("lab", "probe"); r.code == 0 || !strings.Contains(r.stderr, "no lab is running") {
		t.Errorf("lab probe after down: exit %d: %s", r.code, r.stderr)
	}

	// Without root: a clear refusal that points to the planner.
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	if r = runLab(t, bin, nobody, "lab", "up", "--name", name, "--dir", dir); r.code == 0 ||
		!strings.Contains(r.stderr, "the lab needs root") || !strings.Contains(r.stderr, "terrane plan") {
		t.Errorf("lab up as nobody: exit %d: %s", r.code, r.stderr)
	}
}
