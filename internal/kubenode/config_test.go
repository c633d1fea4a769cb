package kubenode

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func testOptions(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	touch := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return Options{
		Name: "host-1", Netns: touch("netns"), Dir: filepath.Join(dir, "node"),
		NodeIP: netip.MustParseAddr("192.168.10.11"), Labels: map[string]string{"zone": "a", "rack": "1"},
		Kubeconfig: touch("kubeconfig"), CgroupName: "terrane-lab-x-host-1",
		CNIConfDir: filepath.Join(dir, "net.d"), CNIBinDir: filepath.Join(dir, "bin"),
		Kubelet: touch("kubelet"), Terrane: touch("terrane it's"),
		Containerd: "/usr/bin/containerd", Runc: "/usr/sbin/runc", Ctr: "/usr/bin/ctr",
		Tools: Tools{PauseArchive: touch("pause.tar"), PodArchive: touch("pod.tar"), Loopback: touch("loopback")},
	}
}

// The kubelet's configuration carries what this kind of machine needs:
// cgroupfs on cgroup v1 (allowed explicitly), no swap check, the node's
// own cgroup root, containerd socket and address.
func TestKubeletConfig(t *testing.T) {
	o := testOptions(t)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(o.kubeletYAML()), &cfg); err != nil {
		t.Fatalf("kubelet config is not YAML: %v\n%s", err, o.kubeletYAML())
	}
	for k, want := range map[string]any{
		"kind": "KubeletConfiguration", "cgroupDriver": "cgroupfs", "failCgroupV1": false, "failSwapOn": false,
		"cgroupRoot": "/terrane-lab-x-host-1", "address": "192.168.10.11",
		"containerRuntimeEndpoint": "unix://" + filepath.Join(o.Dir, "containerd.sock"),
		"podLogsDir":               filepath.Join(o.Dir, "pod-logs"),
	} {
		if cfg[k] != want {
			t.Errorf("%s = %v, want %v", k, cfg[k], want)
		}
	}
	args := strings.Join(o.kubeletArgs(), " ")
	for _, want := range []string{"--node-ip=192.168.10.11", "--node-labels=rack=1,zone=a", "--hostname-override=host-1", "--root-dir=" + filepath.Join(o.Dir, "kubelet")} {
		if !strings.Contains(args, want) {
			t.Errorf("kubelet args %q lack %q", args, want)
		}
	}
}

// containerd's configuration keeps everything in the node's directory
// and runs runc through the wrapper, which runs the terrane shim.
func TestContainerdConfig(t *testing.T) {
	o := testOptions(t)
	toml := o.containerdTOML()
	for _, want := range []string{
		`root = "` + filepath.Join(o.Dir, "containerd", "root") + `"`,
		`state = "` + filepath.Join(o.Dir, "containerd", "state") + `"`,
		`address = "` + filepath.Join(o.Dir, "containerd.sock") + `"`,
		`sandbox_image = "terrane-lab/pause:1"`,
		`BinaryName = "` + filepath.Join(o.Dir, "runc-wrapper") + `"`,
		`Root = "` + filepath.Join(o.Dir, "runc") + `"`,
		`conf_dir = "` + filepath.Join(o.Dir, "net.d") + `"`,
		`bin_dir = "` + o.CNIBinDir + `"`,
	} {
		if !strings.Contains(toml, want) {
			t.Errorf("containerd config lacks %s:\n%s", want, toml)
		}
	}
	script := o.runcWrapperScript()
	if !strings.Contains(script, `'`+strings.ReplaceAll(o.Terrane, `'`, `'\''`)+`' lab runc-shim '/usr/sbin/runc' "$@"`) {
		t.Errorf("runc wrapper does not run the shim with the quoted terrane path:\n%s", script)
	}
}

// Bad options are refused whole, each field named.
func TestValidate(t *testing.T) {
	o := testOptions(t)
	o.Name = "Host_1"
	o.Netns = ""
	o.NodeIP = netip.Addr{}
	o.Kubelet = "/nonexistent/kubelet"
	o.CgroupName = "a/b"
	err := o.validate()
	if err == nil {
		t.Fatal("bad options accepted")
	}
	for _, want := range []string{`name "Host_1"`, "netns: required", "node IP: required", "kubelet: stat /nonexistent/kubelet", `cgroup name "a/b"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	o = testOptions(t)
	o.Dir = "/" + strings.Repeat("d", 100)
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "107 bytes") {
		t.Errorf("a socket path too long for a unix socket: %v", err)
	}
	good := testOptions(t)
	if err := good.validate(); err != nil {
		t.Errorf("good options refused: %v", err)
	}
}

// The agent's conflist reaches containerd at CNI spec 1.0.0, the rest as
// it was.
func TestCopyConflists(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	if err := copyConflists(src, dst, true); err == nil || !strings.Contains(err.Error(), "--install-cni") {
		t.Errorf("no conflist: %v", err)
	}
	if err := copyConflists(src, dst, false); err != nil {
		t.Errorf("no conflist, not required: %v", err)
	}
	conf := `{"cniVersion":"1.1.0","name":"terrane","plugins":[{"type":"terrane-cni","agentSocket":"/x/agent.sock"}]}`
	if err := os.WriteFile(filepath.Join(src, "10-terrane.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := copyConflists(src, dst, true); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	b, _ := os.ReadFile(filepath.Join(dst, "10-terrane.conflist"))
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["cniVersion"] != "1.0.0" || got["name"] != "terrane" || len(got["plugins"].([]any)) != 1 {
		t.Errorf("copied conflist: %s", b)
	}
}
