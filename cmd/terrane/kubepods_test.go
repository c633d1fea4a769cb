package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
	"github.com/terrane-net/terrane/internal/ipam"
)

// TestServerKubePods runs `terrane server --kube-nodes --kube-pods` against
// a real kube-apiserver: of the two pod addresses Node k1's agent reports,
// the one whose Pod does not exist is marked (`ctl check` exits 1 with an
// orphan-pod finding, its pod, since and due time; `ctl endpoints explain`
// shows it), then its release is asked of k1's agent; the live Pod's
// address is left alone.
func TestServerKubePods(t *testing.T) {
	c, ctx := kubeServerTest(t)
	for _, args := range [][]string{
		{"create", "namespace", "apps"},
		{"create", "serviceaccount", "default", "-n", "apps"},
	} {
		if out, err := c.RunKubectl(ctx, args...); err != nil && !strings.Contains(out, "AlreadyExists") {
			t.Fatalf("kubectl %v: %v", args, err)
		}
	}
	p := startServerWith(t, "server --insecure --listen 127.0.0.1:0 --data-dir "+t.TempDir()+
		" --kube-nodes --kube-pods --kube-pod-orphan-grace 2s --kube-pod-orphan-settle 100ms --kube-pod-orphan-interval 100ms --kubeconfig "+c.Kubeconfig, "http://")
	mustCtl(t, "--server", p.url, "topology", "apply", writeTopology(t, clienttest.Topology))
	manifest := writeTopology(t, `apiVersion: v1
kind: Node
metadata: {name: k1, labels: {rack: "2"}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: apps}
spec:
  nodeName: k1
  automountServiceAccountToken: false
  containers: [{name: web, image: web:test}]
`)
	if _, err := c.RunKubectl(ctx, "create", "-f", manifest); err != nil {
		t.Fatal(err)
	}
	uid, err := c.RunKubectl(ctx, "get", "pod", "web", "-n", "apps", "-o", "jsonpath={.metadata.uid}")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Config{Server: p.url})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.CloseIdleConnections()
	var claim *api.BlockClaim
	waitUntilOK(t, "host k1 registered and a block claimed", func() bool {
		claim, err = cl.ClaimBlock(ctx, "k1", "pods")
		return err == nil
	})
	web, ghost := claim.Block.Addr(), claim.Block.Addr().Next()
	since := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	if _, err := cl.ReportAddresses(ctx, "k1", api.AddressReport{Full: true, Added: []ipam.ReportedAddress{
		{Network: "pods", Addr: web, Block: claim.Block, Attachment: "c-web/eth0", Pod: "apps/web", PodUID: strings.TrimSpace(uid), Since: since},
		{Network: "pods", Addr: ghost, Block: claim.Block, Attachment: "c-ghost/eth0", Pod: "apps/ghost", PodUID: "0b6e", Since: since},
	}, Blocks: []ipam.ReportedBlock{{Network: "pods", Prefix: claim.Block, Used: 2, Open: true}}}); err != nil {
		t.Fatal(err)
	}

	var out string
	waitUntilOK(t, "the orphan marked in ctl check", func() bool {
		out, _, err = ctl(t, "--server", p.url, "check")
		return strings.Contains(out, "orphan-pod")
	})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(out, ghost.String()) || !strings.Contains(out, "apps/ghost") ||
		!strings.Contains(out, "release due at") || strings.Contains(out, "apps/web") {
		t.Fatalf("ctl check: %v\n%s\nwant exit 1 and one orphan-pod finding for apps/ghost at %s with its due time", err, out, ghost)
	}
	if ex := mustCtl(t, "--server", p.url, "endpoints", "explain", ghost.String()); !strings.Contains(ex, "finding: orphan-pod") {
		t.Fatalf("explain %s:\n%s", ghost, ex)
	}
	waitUntilOK(t, "the release asked of k1's agent", func() bool {
		rels, err := cl.Releases(ctx, "k1")
		return err == nil && len(rels.Releases) == 1 && rels.Releases[0].Addr == ghost && rels.Releases[0].Attachment == "c-ghost/eth0"
	})
	// The request is written before the marks that show it.
	waitUntilOK(t, "ctl check showing the request", func() bool {
		return strings.Contains(mustCtlFail(t, "--server", p.url, "check"), "release requested at")
	})
}

func waitUntilOK(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustCtlFail runs ctl that is to exit with status 1 (findings) and
// returns its output.
func mustCtlFail(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := ctl(t, args...)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("terrane ctl %s: %v, want exit status 1\n%s\n%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// TestKubePodFlagErrors: durations that cannot work are refused, naming
// the flag.
func TestKubePodFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" : accepted
	}{
		{[]string{"--kube-pods"}, ""},
		{[]string{"--kube-pod-orphan-grace", "0s"}, ""}, // without --kube-pods: unused
		{[]string{"--kube-pods", "--kube-pod-orphan-grace", "0s"}, "--kube-pod-orphan-grace 0s"},
		{[]string{"--kube-pods", "--kube-pod-orphan-grace", "-1m"}, "--kube-pod-orphan-grace -1m0s"},
		{[]string{"--kube-pods", "--kube-pod-orphan-settle", "-1s"}, "--kube-pod-orphan-settle"},
		{[]string{"--kube-pods", "--kube-pod-orphan-interval", "-1s"}, "--kube-pod-orphan-interval"},
		{[]string{"--kube-pods", "--kube-pod-orphan-grace", "1s", "--kube-pod-orphan-settle", "2s"}, "settle time 2s"},
	} {
		var k kubeServerFlags
		fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
		k.register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := k.pods.check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one naming %q", tc.args, err, tc.want)
		}
	}
}
