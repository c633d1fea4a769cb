package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/terrane-net/terrane/internal/cniplugin"
)

// TestAgentInstallCNI: --install-cni writes a conflist libcni loads and
// whose terrane-cni entry the plugin's own parser accepts with the agent's
// socket, queue and MTU, and copies the plugin executable.
func TestAgentInstallCNI(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "src", "terrane-cni")
	if err := os.MkdirAll(filepath.Dir(plugin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf, bin := filepath.Join(dir, "net.d"), filepath.Join(dir, "bin")
	var out bytes.Buffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"agent", "--install-cni", "--cni-conf-dir", conf, "--cni-bin-dir", bin, "--cni-plugin", plugin,
		"--socket", "/run/x/agent.sock", "--cni-queue-dir", "/var/x/queue", "--mtu", "9000"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(bin, "terrane-cni")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("plugin not installed executable: %v %v", fi, err)
	}
	list, err := libcni.ConfListFromFile(filepath.Join(conf, "10-terrane.conflist"))
	if err != nil {
		t.Fatalf("libcni cannot load the conflist: %v", err)
	}
	if list.Name != "terrane" || len(list.Plugins) != 1 {
		t.Fatalf("conflist %s: %+v", list.Bytes, list)
	}
	c, err := cniplugin.ParseConfig(list.Plugins[0].Bytes)
	if err != nil {
		t.Fatalf("the plugin refuses the installed config: %v", err)
	}
	if c.AgentSocket != "/run/x/agent.sock" || c.QueueDir != "/var/x/queue" || c.MTU != 9000 || !c.Capabilities["io.kubernetes.cri.pod-annotations"] {
		t.Fatalf("installed config: %+v", c)
	}
	if !strings.Contains(out.String(), "installed "+filepath.Join(conf, "10-terrane.conflist")) {
		t.Fatalf("output %q does not name what was installed", out.String())
	}
	var raw map[string]any
	if err := json.Unmarshal(list.Bytes, &raw); err != nil || raw["cniVersion"] != "1.1.0" {
		t.Fatalf("cniVersion: %v %v", raw["cniVersion"], err)
	}
}

func TestAgentFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--ip", "nope"}, `--ip "nope"`},
		{[]string{"agent", "--ip", "10.0.0.1", "--labels", "rack"}, "--labels"},
		{[]string{"agent", "--install-cni", "--mtu", "20"}, "--mtu 20: want 68 to 65535"},
		{[]string{"agent", "--ip", "10.0.0.1", "--log-level", "loud"}, "--log-level"},
		{[]string{"agent", "--ip", "10.0.0.1", "--host", "n1", "--server", "https://a:1,ftp://b"}, `--server "https://a:1,ftp://b": entry 2 "ftp://b": want a URL`},
	} {
		cmd := newRootCommand()
		cmd.SetArgs(c.args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error containing %q", c.args, err, c.want)
		}
	}
}

// TestAgentHelpListsServers: the help shows how to give two servers.
func TestAgentHelpListsServers(t *testing.T) {
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetArgs([]string{"agent", "--help"})
	cmd.SetOut(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--server https://10.0.0.1:7443,https://10.0.0.2:7443", "comma-separated"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("agent --help does not show %q:\n%s", want, out.String())
		}
	}
}
