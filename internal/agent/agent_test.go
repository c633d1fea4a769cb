package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane/fake"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/bolt"
)

// flatTopology: one L2 segment (the rack), a /28 block size, and a second
// network only namespace "vms" may use.
const flatTopology = `networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 28, default: true}
  - {name: other, cidr: 10.20.0.0/16, blockSize: 28, namespaces: [vms]}
topologies:
  - networks: [pods, other]
    groups:
      - {name: rack, routing: l2, assignment: {matchLabels: {rack: "1"}}}
`

type fakeHost struct {
	mu      sync.Mutex
	sysctls map[string]string
	deleted []string
	absent  map[string]bool // links that do not exist (all others do)
	// refuseGSO refuses SetGSOMaxSize.
	refuseGSO bool
}

func (h *fakeHost) EnsureRule(int, int, int) error { return nil }
func (h *fakeHost) LinkExists(name string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.absent[name], nil
}

func (h *fakeHost) setAbsent(name string, absent bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.absent == nil {
		h.absent = map[string]bool{}
	}
	h.absent[name] = absent
}

func (h *fakeHost) sysctl(k string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sysctls[k]
}
func (h *fakeHost) DeleteLink(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deleted = append(h.deleted, name)
	return nil
}
func (h *fakeHost) InterfaceOf(netip.Addr) (string, error) { return "eth0", nil }

// SetGSOMaxSize records the size and caps it at 131072, as a device whose
// tso_max_size is 128 KiB would; refuseGSO refuses it as a kernel before
// 6.3 refuses gso_ipv4_max_size. Its undo puts back what was recorded.
func (h *fakeHost) SetGSOMaxSize(name string, size int) (int, func() error, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := "gso/" + name
	was, had := h.sysctls[key]
	undo := func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if had {
			h.sysctls[key] = was
		} else {
			delete(h.sysctls, key)
		}
		return nil
	}
	if h.refuseGSO {
		return 0, undo, errors.New("set gso_ipv4_max_size of " + name + ": invalid argument")
	}
	n := min(size, 131072)
	h.sysctls[key] = strconv.Itoa(n)
	return n, undo, nil
}

// PrepareEndpointLink records the settings as the sysctls that show them.
func (h *fakeHost) PrepareEndpointLink(name string) error {
	for _, kv := range cniapi.HostSideSysctls(name) {
		if err := h.SetSysctl("net/"+kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}
func (h *fakeHost) SetSysctl(k, v string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sysctls[k] = v
	return nil
}

type env struct {
	t     *testing.T
	srv   *clienttest.Server
	admin *client.Client
	// bgp, if set, gives each node its BGP options (bgp_test.go).
	bgp func(name string) BGPOptions
	// fast, if set, is every node's fast path (fastpath_test.go).
	fast FastPath
	// reportMax, if set, is every node's Config.ReportMax (100 ms else).
	reportMax time.Duration
	// gso is every node's Config.GSOMaxSize, podGSO its SetPodGSOMaxSize.
	gso    int
	podGSO func(hostVeth, netns, ifName string, size int) error
	// ip6, if set, gives each node its IPv6 address (dualstack_test.go).
	ip6 map[string]string
	// policy, if set, gives each node its policy source and table
	// (policy_test.go).
	policy func(name string, dp *fake.Dataplane) (PolicySource, PolicyTable)
	// server, if set, is what the nodes talk to instead of admin
	// (offline_test.go: the same server through a link that can be cut).
	server Server
}

func newEnv(t *testing.T, topo string) *env {
	t.Helper()
	srv := clienttest.Start(t)
	admin, err := client.New(client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, CertFile: srv.PKI.Admin.Cert, KeyFile: srv.PKI.Admin.Key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.CloseIdleConnections)
	if _, err := admin.ApplyTopology(context.Background(), api.TopologyRequest{Topology: topo}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, admin: admin}
}

// node is one running agent with fakes for the kernel.
type node struct {
	*Agent
	name  string
	dp    *fake.Dataplane
	host  *fakeHost
	st    store.Store
	stop  func()
	gone  map[string]bool // netns paths that no longer exist
	gmu   sync.Mutex
	state string
}

func (e *env) startNode(name, ip string, stateFile string, gone ...string) *node {
	t := e.t
	t.Helper()
	if stateFile == "" {
		stateFile = filepath.Join(t.TempDir(), "agent.db")
	}
	st, err := bolt.Open(stateFile, bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	dp, _ := fake.New(fake.Options{Table: 250})
	n := &node{name: name, dp: dp, host: &fakeHost{sysctls: map[string]string{}}, st: st, gone: map[string]bool{}, state: stateFile}
	for _, g := range gone {
		n.gone[g] = true
	}
	var srv Server = e.admin
	if e.server != nil {
		srv = e.server
	}
	a, err := New(context.Background(), Config{Host: name, IP: netip.MustParseAddr(ip), Labels: map[string]string{"rack": "1"},
		Server: srv, Dataplane: dp, HostOps: n.host, State: st, Table: 250, RulePriority: 100,
		NetnsExists: func(p string) bool { n.gmu.Lock(); defer n.gmu.Unlock(); return !n.gone[p] },
		Resync:      50 * time.Millisecond, Report: 20 * time.Millisecond, ReportMax: 100 * time.Millisecond, SurplusHold: time.Nanosecond, QueueDir: filepath.Join(filepath.Dir(stateFile), "queue"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n.Agent = a
	if e.reportMax != 0 {
		a.cfg.ReportMax = e.reportMax
	}
	if e.fast != nil {
		a.cfg.FastPath = e.fast
	}
	if e.policy != nil {
		a.cfg.Policy, a.cfg.PolicyTable = e.policy(name, dp)
	}
	a.cfg.GSOMaxSize, a.cfg.SetPodGSOMaxSize = e.gso, e.podGSO
	if ip6 := e.ip6[name]; ip6 != "" {
		a.cfg.IP6 = netip.MustParseAddr(ip6)
	}
	if e.bgp != nil {
		a.cfg.BGP = e.bgp(name)
		if a.cfg.BGP.Reporter == nil {
			a.cfg.BGP.Reporter = e.admin
		}
		if a.cfg.BGP.ReportInterval == 0 {
			a.cfg.BGP.ReportInterval = 10 * time.Millisecond
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent %s: %v", name, err)
			}
			st.Close()
		})
	}
	t.Cleanup(n.stop)
	waitFor(t, "agent "+name+" ready", func() bool { return a.Status(ctx).Ready })
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func addReq(id string) cniapi.AddRequest {
	return cniapi.AddRequest{Attachment: cniapi.Attachment{ContainerID: id, IfName: "eth0"}, Netns: "/run/netns/" + id,
		HostVeth: cniapi.HostVeth(id, "eth0"), PodNamespace: "default", PodName: id}
}

func (n *node) routes() []string {
	var out []string
	for _, r := range n.dp.Routes() {
		out = append(out, r.String())
	}
	return out
}

func (e *env) revision() int64 {
	e.t.Helper()
	s, err := e.admin.Snapshot(context.Background(), 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.Revision
}

// TestAgentAddsWithoutStoreWrites: pod addresses come from the block the
// host claimed at start; ADDs do not write to the control plane until the
// host runs low, and then a block is claimed ahead, in the background.
// Each pod gets a route to its veth and a prepared veth.
func TestAgentAddsWithoutStoreWrites(t *testing.T) {
	e := newEnv(t, flatTopology)
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	rev := e.revision()
	var addrs []netip.Addr
	for i := range 12 { // a /28 keeps 4 free: 12 ADDs stay in the first block
		r, err := n.Add(ctx, addReq(fmt.Sprintf("pod%02d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if r.Network != "pods" || r.Gateway != cniapi.GatewayV4 || r.Addr.Bits() != 32 {
			t.Fatalf("ADD answered %+v", r)
		}
		addrs = append(addrs, r.Addr.Addr())
	}
	if got := e.revision(); got != rev {
		t.Fatalf("12 ADDs within the first block moved the store from revision %d to %d: the hot path wrote", rev, got)
	}
	block := netip.PrefixFrom(addrs[0], 28).Masked()
	for i, a := range addrs {
		if !block.Contains(a) || (i > 0 && a.Compare(addrs[i-1]) <= 0) {
			t.Fatalf("addresses %v: want ascending addresses in one block %s", addrs, block)
		}
	}
	rs := n.routes()
	if !slices.Contains(rs, "169.254.1.1/32 dev lo") || !slices.Contains(rs, addrs[3].String()+"/32 dev "+cniapi.HostVeth("pod03", "eth0")) {
		t.Fatalf("routes %v: want the gateway on lo and a /32 per pod on its veth", rs)
	}
	if v := n.host.sysctls["net/ipv4/conf/"+cniapi.HostVeth("pod00", "eth0")+"/proxy_arp"]; v != "1" {
		t.Fatalf("proxy_arp on the first pod's veth = %q, want 1", v)
	}
	// The 13th leaves 3 free (< 4): a second block is claimed in the background.
	if _, err := n.Add(ctx, addReq("pod12")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a block claimed ahead", func() bool {
		b, err := e.admin.Blocks(ctx, "pods")
		return err == nil && len(b["pods"]) == 2
	})
}

// TestAgentAddIsIdempotentAndChoosesNetworks: the same attachment gets the
// same address; a network is picked by name, by the namespace's rules, or
// refused with the reason.
func TestAgentAddIsIdempotentAndChoosesNetworks(t *testing.T) {
	e := newEnv(t, flatTopology)
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	a1, err := n.Add(ctx, addReq("p1"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := n.Add(ctx, addReq("p1"))
	if err != nil || again.Addr != a1.Addr {
		t.Fatalf("repeated ADD: %+v %v, want %s again", again, err, a1.Addr)
	}
	vm := addReq("vm1")
	vm.PodNamespace = "vms"
	r, err := n.Add(ctx, vm)
	if err != nil || r.Network != "pods" {
		t.Fatalf("namespace vms without a network: %+v %v, want the default network pods", r, err)
	}
	vm2 := addReq("vm2")
	vm2.PodNamespace, vm2.Network = "vms", "other"
	if r, err := n.Add(ctx, vm2); err != nil || r.Network != "other" || !netip.MustParsePrefix("10.20.0.0/16").Contains(r.Addr.Addr()) {
		t.Fatalf("network other for namespace vms: %+v %v", r, err)
	}
	for _, c := range []struct {
		req  func(*cniapi.AddRequest)
		code uint
		want string
	}{
		{func(r *cniapi.AddRequest) { r.Network = "nope" }, cniapi.CodeInvalid, `network "nope" does not exist; the topology has pods, other`},
		{func(r *cniapi.AddRequest) { r.Network = "other" }, cniapi.CodeInvalid, `network other does not admit namespace "default"`},
		{func(r *cniapi.AddRequest) { r.HostVeth = "eth9" }, cniapi.CodeInvalid, `hostVeth "eth9"`},
		{func(r *cniapi.AddRequest) { r.ContainerID = "" }, cniapi.CodeInvalid, "containerID and ifName are required"},
	} {
		req := addReq("bad")
		c.req(&req)
		_, err := n.Add(ctx, req)
		var ce *cniapi.Error
		if !errors.As(err, &ce) || ce.Code != c.code || !strings.Contains(ce.Message, c.want) {
			t.Errorf("ADD %+v: %v, want code %d containing %q", req, err, c.code, c.want)
		}
	}
	if _, err := n.Check(ctx, cniapi.Attachment{ContainerID: "bad", IfName: "eth0"}); err == nil {
		t.Fatal("a refused ADD left an attachment behind")
	}
}

// TestAgentRestartKeepsAllocations: after a restart the agent holds every
// allocation it had (no address given twice) except those whose netns
// vanished meanwhile, which it releases.
func TestAgentRestartKeepsAllocations(t *testing.T) {
	e := newEnv(t, flatTopology)
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	before := map[string]netip.Prefix{}
	for _, id := range []string{"a", "b", "c"} {
		r, err := n.Add(ctx, addReq(id))
		if err != nil {
			t.Fatal(err)
		}
		before[id] = r.Addr
	}
	n.stop()
	n2 := e.startNode("n1", "192.168.10.11", n.state, "/run/netns/b")
	for id, want := range before {
		got, err := n2.Check(ctx, cniapi.Attachment{ContainerID: id, IfName: "eth0"})
		if id == "b" {
			if err == nil {
				t.Fatalf("b's netns is gone but the agent still holds %s", got.Addr)
			}
			continue
		}
		if err != nil || got.Addr != want {
			t.Fatalf("after restart %s: %+v %v, want %s", id, got, err, want)
		}
	}
	r, err := n2.Add(ctx, addReq("d"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Addr != before["b"] {
		t.Fatalf("new pod got %s, want b's released %s (the lowest free) and never a live pod's", r.Addr, before["b"])
	}
	if !slices.Contains(n2.host.deleted, cniapi.HostVeth("b", "eth0")) {
		t.Fatalf("the gone pod's veth was not deleted: %v", n2.host.deleted)
	}
}

// TestAgentDelAndGC: DEL is idempotent; GC releases what the runtime no
// longer lists and deletes its veth.
func TestAgentDelAndGC(t *testing.T) {
	e := newEnv(t, flatTopology)
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := n.Add(ctx, addReq(id)); err != nil {
			t.Fatal(err)
		}
	}
	at := cniapi.Attachment{ContainerID: "a", IfName: "eth0"}
	for range 2 {
		if err := n.Del(ctx, at); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
	waitFor(t, "a's route removed", func() bool {
		return !slices.ContainsFunc(n.routes(), func(r string) bool { return strings.Contains(r, cniapi.HostVeth("a", "eth0")) })
	})
	res, err := n.GC(ctx, cniapi.GCRequest{Valid: []cniapi.Attachment{{ContainerID: "b", IfName: "eth0"}}})
	if err != nil || len(res.Released) != 1 || res.Released[0].ContainerID != "c" {
		t.Fatalf("GC: %+v %v, want c released", res, err)
	}
	if _, err := n.Check(ctx, cniapi.Attachment{ContainerID: "b", IfName: "eth0"}); err != nil {
		t.Fatalf("GC released a valid attachment: %v", err)
	}
}

// TestAgentPeersConverge: two hosts on one L2 segment. A block claimed by
// one reaches the other's table as a route via the first host's address,
// and is withdrawn when released.
func TestAgentPeersConverge(t *testing.T) {
	e := newEnv(t, flatTopology)
	n1 := e.startNode("n1", "192.168.10.11", "")
	n2 := e.startNode("n2", "192.168.10.12", "")
	ctx := context.Background()
	blocks := func(host string) []netip.Prefix {
		b, err := e.admin.Blocks(ctx, "pods")
		if err != nil {
			t.Fatal(err)
		}
		var out []netip.Prefix
		for _, bi := range b["pods"] {
			if bi.Host == host {
				out = append(out, bi.Prefix)
			}
		}
		return out
	}
	want := func(n *node, p netip.Prefix, via string) func() bool {
		return func() bool { return slices.Contains(n.routes(), p.String()+" via "+via) }
	}
	b1 := blocks("n1")
	if len(b1) != 1 {
		t.Fatalf("n1 blocks %v, want 1 claimed at start", b1)
	}
	waitFor(t, "n2 routes n1's block", want(n2, b1[0], "192.168.10.11"))
	// Fill n1 past its first block: the new block is claimed and reaches n2.
	for i := range 14 {
		if _, err := n1.Add(ctx, addReq(fmt.Sprintf("p%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "n1 owns two blocks", func() bool { return len(blocks("n1")) == 2 })
	cover := netip.PrefixFrom(b1[0].Addr(), 27).Masked()
	waitFor(t, "n2 routes n1's blocks", func() bool {
		rs := n2.routes()
		return slices.Contains(rs, cover.String()+" via 192.168.10.11") ||
			(slices.Contains(rs, blocks("n1")[0].String()+" via 192.168.10.11") && slices.Contains(rs, blocks("n1")[1].String()+" via 192.168.10.11"))
	})
	// Delete every pod: the agent gives back the surplus block, and n2's
	// table follows.
	for i := range 14 {
		if err := n1.Del(ctx, cniapi.Attachment{ContainerID: fmt.Sprintf("p%d", i), IfName: "eth0"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "n1 back to one block", func() bool { return len(blocks("n1")) == 1 })
	last := blocks("n1")[0]
	defer func() {
		if t.Failed() {
			t.Logf("n2 routes: %v; n1 blocks %v", n2.routes(), blocks("n1"))
		}
	}()
	waitFor(t, "n2 routes only n1's remaining block", func() bool {
		var peer []string
		for _, r := range n2.routes() {
			if strings.HasPrefix(r, "10.10.") && strings.Contains(r, " via ") {
				peer = append(peer, r)
			}
		}
		return len(peer) == 1 && peer[0] == last.String()+" via 192.168.10.11"
	})
}

// TestAgentReplaysQueuedReleases: a DEL the plugin queued while the agent
// was unreachable is done by the agent (at start and while running), and
// the queue file removed.
func TestAgentReplaysQueuedReleases(t *testing.T) {
	e := newEnv(t, flatTopology)
	state := filepath.Join(t.TempDir(), "agent.db")
	queue := filepath.Join(filepath.Dir(state), "queue")
	n := e.startNode("n1", "192.168.10.11", state)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := n.Add(ctx, addReq(id)); err != nil {
			t.Fatal(err)
		}
	}
	n.stop()
	if err := cniapi.WriteQueued(queue, cniapi.Attachment{ContainerID: "a", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	n = e.startNode("n1", "192.168.10.11", state)
	if _, err := n.Check(ctx, cniapi.Attachment{ContainerID: "a", IfName: "eth0"}); err == nil {
		t.Fatal("a release queued while the agent was down was not done before it became ready")
	}
	if err := cniapi.WriteQueued(queue, cniapi.Attachment{ContainerID: "b", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b released by the running agent", func() bool {
		_, err := n.Check(ctx, cniapi.Attachment{ContainerID: "b", IfName: "eth0"})
		q, _ := cniapi.ReadQueued(queue)
		return err != nil && len(q) == 0
	})
}

// TestAgentHeartbeats: a running agent checks in with the server, which
// records it (the VPC reconciler's notion of a healthy host).
func TestAgentHeartbeats(t *testing.T) {
	e := newEnv(t, flatTopology)
	e.startNode("n1", "192.168.10.11", "")
	waitFor(t, "n1's heartbeat stored", func() bool {
		r, err := e.admin.Heartbeat(context.Background(), "n1")
		// A second heartbeat inside the write interval is not stored
		// again: proof that the agent's went first.
		return err == nil && !r.Written
	})
}

// TestAgentBigTCPBestEffort: BIG TCP as the default (BigTCPBestEffort)
// on an uplink that refuses it starts the agent at 64 KiB; asked for
// (strict), the same refusal stops the start and names the way out.
func TestAgentBigTCPBestEffort(t *testing.T) {
	for _, bestEffort := range []bool{true, false} {
		t.Run(fmt.Sprintf("best-effort=%v", bestEffort), func(t *testing.T) {
			dp, _ := fake.New(fake.Options{Table: 250})
			st, err := bolt.Open(filepath.Join(t.TempDir(), "agent.db"), bolt.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			host := &fakeHost{sysctls: map[string]string{}, refuseGSO: true}
			a, err := New(context.Background(), Config{Host: "host-1", IP: netip.MustParseAddr("192.168.0.1"), Server: newEnv(t, flatTopology).admin,
				Dataplane: dp, HostOps: host, State: st, Table: 250, RulePriority: 100,
				GSOMaxSize: 524280, BigTCPBestEffort: bestEffort, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			err = a.prepareHost()
			switch {
			case bestEffort && err != nil:
				t.Fatalf("best effort: the start fails: %v", err)
			case !bestEffort && (err == nil || !strings.Contains(err.Error(), "--big-tcp=false")):
				t.Fatalf("strict: %v, want a refusal that names --big-tcp=false", err)
			}
			if a.gso != 0 {
				t.Errorf("pods get GSO size %d, want 0 (the kernel's 64 KiB)", a.gso)
			}
		})
	}
}

// TestAgentBigTCP: with GSOMaxSize the agent sets the uplink's GSO size
// before it is ready and hands pods what the uplink took (the fake caps at
// 128 KiB); without it, nothing is touched and pods get 0.
func TestAgentBigTCP(t *testing.T) {
	for _, tc := range []struct {
		name          string
		gso, want     int
		uplinkTouched bool
	}{
		{"off", 0, 0, false},
		{"on, capped by the uplink", 196608, 131072, true},
		{"on", 100000, 100000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, flatTopology)
			e.gso = tc.gso
			n := e.startNode("host-1", "192.168.0.1", "")
			n.host.mu.Lock()
			got, touched := n.host.sysctls["gso/eth0"]
			n.host.mu.Unlock()
			if touched != tc.uplinkTouched || (touched && got != strconv.Itoa(tc.want)) {
				t.Errorf("uplink GSO size: %q (set: %v), want set %v to %d", got, touched, tc.uplinkTouched, tc.want)
			}
			resp, err := n.Add(context.Background(), addReq("c1"))
			if err != nil {
				t.Fatal(err)
			}
			if resp.GSOMaxSize != tc.want {
				t.Errorf("ADD answered gsoMaxSize %d, want %d", resp.GSOMaxSize, tc.want)
			}

			// Restarted, the agent gives the pod it already had the size.
			var mu sync.Mutex
			var set []string
			e.podGSO = func(hostVeth, netns, ifName string, size int) error {
				mu.Lock()
				defer mu.Unlock()
				set = append(set, fmt.Sprintf("%s %s %s %d", hostVeth, netns, ifName, size))
				return nil
			}
			n.stop()
			n2 := e.startNode("host-1", "192.168.0.1", n.state)
			// Without BIG TCP the pod goes to the kernel's 64 KiB: never
			// larger than its uplink sends.
			pod := func(size int) string {
				return fmt.Sprintf("%s /run/netns/c1 eth0 %d", cniapi.HostVeth("c1", "eth0"), size)
			}
			want := []string{pod(max(tc.want, 65536))}
			mu.Lock()
			if !slices.Equal(set, want) {
				t.Errorf("after a restart the pods' GSO sizes set: %q, want %q", set, want)
			}
			mu.Unlock()
			// Stopped, the agent lowers its pods to 64 KiB, then puts back
			// the uplink's sizes.
			n2.stop()
			if got := n2.host.sysctl("gso/eth0"); got != "" {
				t.Errorf("the agent stopped, but the uplink keeps GSO size %s", got)
			}
			if tc.want > 65536 {
				want = append(want, pod(65536))
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(set, want) {
				t.Errorf("after the stop the pods' GSO sizes set: %q, want %q", set, want)
			}
		})
	}
}
