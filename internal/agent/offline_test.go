package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane/fake"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/metrics"
	"github.com/terrane-net/terrane/internal/store/bolt"
)

// link forwards TCP connections to a real server until it is cut: then
// every connection open through it is closed and new ones are closed as
// soon as they are accepted, as if the server's host had gone away.
type link struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

// linkedClient is an admin client of e's server through a link the test
// can cut.
func linkedClient(t *testing.T, e *env) (*link, *client.Client) {
	t.Helper()
	l, u := startLink(t, e.srv.URL)
	c, err := client.New(client.Config{Server: u, CAFile: e.srv.PKI.CA.Cert, CertFile: e.srv.PKI.Admin.Cert, KeyFile: e.srv.PKI.Admin.Key, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return l, c
}

func startLink(t *testing.T, serverURL string) (*link, string) {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); l.setCut(true) })
	go l.serve()
	return l, "https://" + ln.Addr().String()
}

func (l *link) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.cut {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[c] = true
		l.mu.Unlock()
		go l.forward(c)
	}
}

func (l *link) forward(c net.Conn) {
	s, err := net.Dial("tcp", l.target)
	if err != nil {
		c.Close()
		return
	}
	l.mu.Lock()
	if l.cut {
		l.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	l.conns[s] = true
	l.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
}

// setCut cuts the link (closing what is open through it) or restores it.
func (l *link) setCut(cut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = cut
	if cut {
		for c := range l.conns {
			c.Close()
		}
		clear(l.conns)
	}
}

func (n *node) offline() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.offlineLocked()
}

func (n *node) free(network string) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pool(network).Free()
}

// holder is the pod the server records at addr ("" for none).
func (e *env) holder(addr netip.Addr) string {
	e.t.Helper()
	ex, err := e.admin.Explain(context.Background(), addr)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, h := range ex.Holders {
		out = append(out, h.Pod)
	}
	return strings.Join(out, ",")
}

// TestAgentServesWhileServerUnreachable: with the server out of reach,
// ADDs are served from the host's blocks (routed, recorded) until they
// are full, then fail at once with CNI code 11 naming the cause and the
// fix; DELs release locally and free room. Once the server is reachable
// again the agent reports every pod made and none deleted while it was
// not, claims ahead again, the server's check is clean, and ADDs go on.
func TestAgentServesWhileServerUnreachable(t *testing.T) {
	e := newEnv(t, flatTopology)
	l, c := linkedClient(t, e)
	e.server = c
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	addrs := map[string]netip.Addr{}
	add := func(id string) error {
		r, err := n.Add(ctx, addReq(id))
		if err == nil {
			addrs[id] = r.Addr.Addr()
		}
		return err
	}
	for _, id := range []string{"before-1", "before-2"} {
		if err := add(id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the first pods reported", func() bool { return e.usedOn("n1") == 2 })
	waitFor(t, "room kept ahead", func() bool { return n.free("pods") >= n.keep("pods") })

	// The outage as a metric: 0 while the server answers, its age after.
	unreachableFor := unreachableGauge(t, n.Agent)
	if v := unreachableFor(); v != 0 {
		t.Errorf("server unreachable for %g s while it answers", v)
	}
	l.setCut(true)
	waitFor(t, "the agent to see the server unreachable", n.offline)
	waitFor(t, "the outage in the metrics", func() bool { return unreachableFor() > 0 })
	room := n.free("pods")
	var made []string
	var full error
	for i := 0; full == nil; i++ {
		if i > int(room) {
			t.Fatalf("%d ADDs succeeded offline with %d free addresses", i, room)
		}
		id := fmt.Sprintf("off-%02d", i)
		start := time.Now()
		if full = add(id); full == nil {
			made = append(made, id)
		} else if d := time.Since(start); d > time.Second {
			t.Errorf("the ADD that found the blocks full took %s: it should fail at once", d)
		}
	}
	if uint64(len(made)) != room {
		t.Errorf("%d ADDs succeeded offline, want the host's %d free addresses", len(made), room)
	}
	var ce *cniapi.Error
	if !errors.As(full, &ce) || ce.Code != cniapi.CodeTryAgainLater ||
		!strings.Contains(ce.Message, "try again later: the server is unreachable and this host's blocks are full") ||
		!strings.Contains(ce.Message, "--claim-ahead") {
		t.Errorf("ADD with the blocks full and the server unreachable: %v; want code 11 saying so and naming --claim-ahead", full)
	}
	rs := n.routes()
	for _, id := range made {
		if want := addrs[id].String() + "/32 dev " + cniapi.HostVeth(id, "eth0"); !slices.Contains(rs, want) {
			t.Errorf("no route %s while offline: %v", want, rs)
		}
	}
	// DELs free room locally; an ADD takes it.
	gone := made[:2]
	for _, id := range gone {
		if err := n.Del(ctx, cniapi.Attachment{ContainerID: id, IfName: "eth0"}); err != nil {
			t.Fatalf("DEL offline: %v", err)
		}
	}
	if err := add("off-again"); err != nil {
		t.Fatalf("ADD into room a DEL freed offline: %v", err)
	}
	made = append(made[2:], "off-again")
	if got := e.usedOn("n1"); got != 2 {
		t.Errorf("the server counts %d addresses on n1 while it is out of reach, want the 2 reported before", got)
	}

	l.setCut(false)
	want := 2 + len(made)
	waitFor(t, "the pods made offline reported", func() bool { return e.usedOn("n1") == want })
	for _, id := range append([]string{"before-1", "before-2"}, made...) {
		if h := e.holder(addrs[id]); h != "default/"+id {
			t.Errorf("the server records %s as held by %q, want default/%s", addrs[id], h, id)
		}
	}
	for _, id := range gone {
		if h := e.holder(addrs[id]); h != "" && !strings.Contains(h, "off-again") {
			t.Errorf("the server records %s (deleted offline) as held by %q", addrs[id], h)
		}
	}
	waitFor(t, "room claimed ahead again", func() bool { return !n.offline() && n.free("pods") >= n.keep("pods") })
	if v := unreachableFor(); v != 0 {
		t.Errorf("server unreachable for %g s after it returned", v)
	}
	chk, err := e.admin.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !chk.Clean {
		t.Errorf("check after the catch-up: %+v", chk.Findings)
	}
	if err := add("after"); err != nil {
		t.Fatalf("ADD after the server returned: %v", err)
	}
}

// TestAgentStartsOffline: an agent restarted while the server is out of
// reach starts from the cluster state it kept: it is ready, serves its old
// pods' routes and new ADDs from its blocks, claims nothing and gives no
// block back; once the server answers it registers again, reports the
// pods made meanwhile and claims ahead, and the server's check is clean.
// Without a kept state it waits for the server, not ready.
func TestAgentStartsOffline(t *testing.T) {
	e := newEnv(t, flatTopology)
	l, c := linkedClient(t, e)
	e.server = c
	peer := e.startNode("n2", "192.168.10.12", "")
	if _, err := peer.Add(context.Background(), addReq("peer-pod")); err != nil {
		t.Fatal(err)
	}
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	if _, err := n.Add(ctx, addReq("before")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first pod reported", func() bool { return e.usedOn("n1") == 1 })
	peerRoute := func(rs []string) bool {
		return slices.ContainsFunc(rs, func(r string) bool { return strings.Contains(r, "via 192.168.10.12") })
	}
	waitFor(t, "a route to the peer's block", func() bool { return peerRoute(n.routes()) })
	blocks, err := e.admin.Blocks(ctx, "pods")
	if err != nil {
		t.Fatal(err)
	}
	state := n.state
	n.stop()

	l.setCut(true)
	n = e.startNode("n1", "192.168.10.11", state)
	if !n.offline() {
		t.Error("an agent started from its kept state does not say it is offline")
	}
	if !peerRoute(n.routes()) {
		t.Errorf("started offline without the route to the peer's block: %v", n.routes())
	}
	r, err := n.Add(ctx, addReq("offline"))
	if err != nil {
		t.Fatalf("ADD after an offline start: %v", err)
	}
	if !slices.ContainsFunc(blocks["pods"], func(b ipam.BlockInfo) bool { return b.Host == "n1" && b.Prefix.Contains(r.Addr.Addr()) }) {
		t.Errorf("offline ADD got %s, outside n1's blocks %v", r.Addr, blocks["pods"])
	}
	if !slices.Contains(n.routes(), r.Addr.String()+" dev "+cniapi.HostVeth("offline", "eth0")) {
		t.Errorf("no route to the offline pod: %v", n.routes())
	}

	l.setCut(false)
	waitFor(t, "the offline pod reported", func() bool { return e.usedOn("n1") == 2 })
	waitFor(t, "back online", func() bool { return !n.offline() })
	chk, err := e.admin.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !chk.Clean {
		t.Errorf("check after an offline start and the catch-up: %+v", chk.Findings)
	}
	if _, err := n.Add(ctx, addReq("after")); err != nil {
		t.Fatal(err)
	}
}

// TestAgentWaitsWithoutKeptState: with no kept state and no server, the
// agent does not become ready.
func TestAgentWaitsWithoutKeptState(t *testing.T) {
	e := newEnv(t, flatTopology)
	l, c := linkedClient(t, e)
	l.setCut(true)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "agent.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dp, _ := fake.New(fake.Options{Table: 250})
	a, err := New(context.Background(), Config{Host: "n1", IP: netip.MustParseAddr("192.168.10.11"), Labels: map[string]string{"rack": "1"},
		Server: c, Dataplane: dp, HostOps: &fakeHost{sysctls: map[string]string{}}, State: st, Table: 250, RulePriority: 100})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, "a reason not to be ready", func() bool {
		st := a.Status(ctx)
		return !st.Ready && strings.Contains(st.Reason, "register host n1")
	})
	cancel()
	<-done
}

// releaseWatch is the server as the agent sees it, checking at each block
// release that the agent's kept state no longer lists the block.
type releaseWatch struct {
	*client.Client
	mu       sync.Mutex
	st       func() *Agent
	released []netip.Prefix
	bad      []string
}

func (w *releaseWatch) ReleaseBlock(ctx context.Context, host, network string, block netip.Prefix) ([]ipam.Change, error) {
	kv, err := w.st().local.st.Get(ctx, keySnapshot)
	w.mu.Lock()
	switch {
	case err != nil:
		w.bad = append(w.bad, fmt.Sprintf("%s: no kept state: %v", block, err))
	case strings.Contains(string(kv.Value), `"`+block.String()+`"`):
		w.bad = append(w.bad, fmt.Sprintf("%s released while the kept state still lists it", block))
	}
	w.released = append(w.released, block)
	w.mu.Unlock()
	return w.Client.ReleaseBlock(ctx, host, network, block)
}

// TestAgentForgetsBlocksBeforeReleasing: a block is out of the kept state
// before the server is asked to take it back, so an agent restarted
// offline never hands out an address of a block it gave away.
func TestAgentForgetsBlocksBeforeReleasing(t *testing.T) {
	e := newEnv(t, flatTopology)
	var n *node
	w := &releaseWatch{Client: e.admin, st: func() *Agent { return n.Agent }}
	e.server = w
	n = e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	var ids []string
	for i := range 14 { // past the first /28's room: a second block is claimed
		id := fmt.Sprintf("p%02d", i)
		if _, err := n.Add(ctx, addReq(id)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	waitFor(t, "a second block", func() bool {
		b, err := e.admin.Blocks(ctx, "pods")
		return err == nil && len(b["pods"]) >= 2
	})
	for _, id := range ids {
		if err := n.Del(ctx, cniapi.Attachment{ContainerID: id, IfName: "eth0"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a surplus block released", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.released) > 0
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.bad {
		t.Error(b)
	}
}

// unreachableGauge reads n's terrane_agent_server_unreachable_seconds
// from its metrics handler.
func unreachableGauge(t *testing.T, n *Agent) func() float64 {
	mets := httptest.NewServer(n.MetricsHandler())
	t.Cleanup(mets.Close)
	return func() float64 {
		f, err := metrics.Scrape(http.DefaultClient, mets.URL)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := f.Value("terrane_agent_server_unreachable_seconds")
		if !ok {
			t.Fatal("no terrane_agent_server_unreachable_seconds")
		}
		return v
	}
}
