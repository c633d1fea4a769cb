package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/cniapi"
)

// usedOn sums the server's count of addresses in use in host's blocks.
func (e *env) usedOn(host string) int {
	e.t.Helper()
	blocks, err := e.admin.Blocks(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, bs := range blocks {
		for _, b := range bs {
			if b.Host == host {
				n += b.Used
			}
		}
	}
	return n
}

// TestAgentReportsAddresses: the server counts the pods' addresses from
// the agent's reports within a report interval, after ADDs, DELs and an
// agent restart, and its check stays clean.
func TestAgentReportsAddresses(t *testing.T) {
	e := newEnv(t, flatTopology)
	n := e.startNode("n1", "192.0.2.1", "")
	ctx := context.Background()
	for i := range 5 {
		if _, err := n.Add(ctx, addReq(fmt.Sprintf("p%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the server to count 5 pods", func() bool { return e.usedOn("n1") == 5 })
	for i := range 2 {
		if err := n.Del(ctx, addReq(fmt.Sprintf("p%d", i)).Attachment); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the server to count 3 pods", func() bool { return e.usedOn("n1") == 3 })

	// A restarted agent starts with a full report: nothing lost, nothing
	// counted twice.
	n.stop()
	n = e.startNode("n1", "192.0.2.1", n.state)
	if _, err := n.Add(ctx, addReq("p9")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server to count 4 pods", func() bool { return e.usedOn("n1") == 4 })
	rep, err := e.admin.Check(ctx)
	if err != nil || !rep.Clean {
		t.Errorf("check: %+v, %v", rep, err)
	}
	ex, err := e.admin.Explain(ctx, n.eps[addReq("p9").ID()].Addr)
	if err != nil || len(ex.Holders) != 1 || ex.Holders[0].Path != "cni" || ex.Holders[0].Pod != "default/p9" || ex.Holders[0].Host != "n1" {
		t.Errorf("explain p9's address: %+v, %v", ex, err)
	}
}

// TestAgentRoutesVMPorts: a VM port the server allocated for the host is
// routed to its device once the device appears (prepared like a pod's
// veth), reported wired, and unrouted when the device goes; it never comes
// from the agent's blocks.
func TestAgentRoutesVMPorts(t *testing.T) {
	e := newEnv(t, flatTopology)
	n := e.startNode("n1", "192.0.2.1", "")
	ctx := context.Background()
	dev := api.VMPortDevice("vm-1")
	n.host.setAbsent(dev, true)
	res, err := e.admin.AllocateEndpoint(ctx, api.EndpointRequest{ID: "vm-1", Host: "n1", Network: "pods"})
	if err != nil {
		t.Fatal(err)
	}
	vm := res.Endpoint
	route := fmt.Sprintf("%s dev %s", netip.PrefixFrom(vm.Addr, 32), dev)
	if _, err := n.Add(ctx, addReq("p0")); err != nil {
		t.Fatal(err)
	}
	if pod := n.eps[addReq("p0").ID()]; pod.Block == vm.Block {
		t.Fatalf("pod %s and VM port %s share block %s", pod.Addr, vm.Addr, vm.Block)
	}
	waitFor(t, "the agent to learn of the port", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.ports["vm-1"] != nil
	})
	if slices.Contains(n.routes(), route) {
		t.Fatalf("routed a port whose device does not exist: %v", n.routes())
	}

	n.host.setAbsent(dev, false)
	waitFor(t, "the port to be routed", func() bool { return slices.Contains(n.routes(), route) })
	for _, kv := range cniapi.HostSideSysctls(dev) {
		if got := n.host.sysctl("net/" + kv[0]); got != kv[1] {
			t.Errorf("net/%s = %q, want %s", kv[0], got, kv[1])
		}
	}
	waitFor(t, "the server to count the pod and the port", func() bool { return e.usedOn("n1") == 2 })

	n.host.setAbsent(dev, true)
	waitFor(t, "the port to be unrouted", func() bool { return !slices.Contains(n.routes(), route) })
}

// TestAgentHoldsSurplus: a block is given back only after it has been
// surplus for SurplusHold; one used again in between starts over.
func TestAgentHoldsSurplus(t *testing.T) {
	a := &Agent{cfg: Config{SurplusHold: time.Minute}, surplusSince: map[string]map[netip.Prefix]time.Time{}}
	b1, b2 := netip.MustParsePrefix("10.0.0.0/28"), netip.MustParsePrefix("10.0.0.16/28")
	t0 := time.Unix(1000, 0)
	for _, step := range []struct {
		at      time.Duration
		surplus []netip.Prefix
		want    []netip.Prefix
	}{
		{0, []netip.Prefix{b1, b2}, nil},
		{30 * time.Second, []netip.Prefix{b1}, nil}, // b2 used again
		{40 * time.Second, []netip.Prefix{b1, b2}, nil},
		{61 * time.Second, []netip.Prefix{b1, b2}, []netip.Prefix{b1}},
		{101 * time.Second, []netip.Prefix{b2}, []netip.Prefix{b2}},
	} {
		if got := a.held("pods", step.surplus, t0.Add(step.at)); !slices.Equal(got, step.want) {
			t.Errorf("at %s surplus %v: released %v, want %v", step.at, step.surplus, got, step.want)
		}
	}
}

// otherWrites reads the server's count of records written outside the
// allocation state (address reports, heartbeats).
func (e *env) otherWrites() int {
	e.t.Helper()
	text, err := e.admin.Metrics(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "terrane_store_other_writes_total "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				e.t.Fatal(err)
			}
			return n
		}
	}
	e.t.Fatal("no terrane_store_other_writes_total in /metrics")
	return 0
}

// TestAgentReportsInBatches: pods that keep coming, each after the quiet
// period has passed, cost a burst of reports and then about one per
// ReportMax — not one per pod — and the server still ends up counting them
// all.
func TestAgentReportsInBatches(t *testing.T) {
	e := newEnv(t, flatTopology)
	e.reportMax = 300 * time.Millisecond
	n := e.startNode("n1", "192.0.2.1", "")
	ctx := context.Background()
	waitFor(t, "the first report", func() bool { return e.otherWrites() > 0 })
	before := e.otherWrites()
	const pods = 24
	for i := range pods {
		if _, err := n.Add(ctx, addReq(fmt.Sprintf("slow%d", i))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // slower than the 20 ms quiet period: a pod at a time
	}
	waitFor(t, "the server to count every pod", func() bool { return e.usedOn("n1") == pods })
	// 1.2 s of churn: a burst of 3, one per 300 ms, the last batch.
	if got := e.otherWrites() - before; got > 3+5+2 {
		t.Errorf("%d reports for %d pods arriving one at a time, want about one per ReportMax", got, pods)
	}
}

// TestAgentNamespaceDefaultNetwork: a namespace's own default network (set
// at the server) decides where its pods go, once the agent's snapshot has
// it; a pod's own choice still wins.
func TestAgentNamespaceDefaultNetwork(t *testing.T) {
	e := newEnv(t, flatTopology)
	n := e.startNode("n1", "192.0.2.1", "")
	ctx := context.Background()
	if _, err := e.admin.SetNamespaceNetwork(ctx, "vms", "other"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the snapshot with the namespace's network", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.snap != nil && n.snap.Namespaces["vms"] == "other"
	})
	vm := addReq("vm1")
	vm.PodNamespace = "vms"
	if r, err := n.Add(ctx, vm); err != nil || r.Network != "other" {
		t.Fatalf("a pod of namespace vms: %+v %v, want its namespace's network other", r, err)
	}
	pinned := addReq("vm2")
	pinned.PodNamespace, pinned.Network = "vms", "pods"
	if r, err := n.Add(ctx, pinned); err != nil || r.Network != "pods" {
		t.Fatalf("a pod of namespace vms asking for pods: %+v %v", r, err)
	}
}
