package agent

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/cniapi"
)

// dualTopology: one L2 segment in an IPv4 network (the default), an IPv6
// network and a second IPv4 network.
const dualTopology = `networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 28, default: true}
  - {name: pods6, cidr: "fd00:10::/48", blockSize: 124}
  - {name: other, cidr: 10.20.0.0/16, blockSize: 28}
topologies:
  - networks: [pods, pods6, other]
    groups:
      - {name: rack, routing: l2, assignment: {matchLabels: {rack: "1"}}}
`

// TestAgentDualStackAdd: a pod that names an IPv4 and an IPv6 network gets
// one address of each, both routed to its veth, both in its record (a
// restart keeps them), both released by one DEL; a single network keeps
// giving one address.
func TestAgentDualStackAdd(t *testing.T) {
	e := newEnv(t, dualTopology)
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	req := addReq("p1")
	req.Network = "pods,pods6"
	r, err := n.Add(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if r.Network != "pods" || !r.Addr.Addr().Is4() || r.Gateway != cniapi.GatewayV4 || r.Second == nil ||
		r.Second.Network != "pods6" || r.Second.Addr.Bits() != 128 || !netip.MustParsePrefix("fd00:10::/48").Contains(r.Second.Addr.Addr()) || r.Second.Gateway != cniapi.GatewayV6 {
		t.Fatalf("dual-stack ADD answered %+v (second %+v)", r, r.Second)
	}
	veth := cniapi.HostVeth("p1", "eth0")
	rs := n.routes()
	for _, want := range []string{r.Addr.String() + " dev " + veth, r.Second.Addr.String() + " dev " + veth} {
		if !slices.Contains(rs, want) {
			t.Fatalf("routes %v: want %q", rs, want)
		}
	}
	if v := n.host.sysctl("net/ipv6/conf/all/forwarding"); v != "1" {
		t.Fatalf("net.ipv6.conf.all.forwarding = %q after an IPv6 ADD, want 1", v)
	}
	again, err := n.Add(ctx, req)
	if err != nil || again.Addr != r.Addr || again.Second == nil || *again.Second != *r.Second {
		t.Fatalf("repeated ADD: %+v %v, want %+v", again, err, r)
	}
	// The same pair in the other order is the same choice; a different
	// one is refused.
	req2 := req
	req2.Network = "pods6,pods"
	if _, err := n.Add(ctx, req2); err != nil {
		t.Fatalf("repeated ADD with the networks swapped: %v", err)
	}
	req2.Network = "pods"
	if _, err := n.Add(ctx, req2); err == nil || !strings.Contains(err.Error(), "already has") {
		t.Fatalf("repeated ADD asking for one of its two networks: %v, want a refusal", err)
	}
	ck, err := n.Check(ctx, req.Attachment)
	if err != nil || ck.Second == nil || ck.Second.Addr != r.Second.Addr || len(ck.Addresses()) != 2 {
		t.Fatalf("CHECK: %+v %v", ck, err)
	}
	single, err := n.Add(ctx, addReq("p2"))
	if err != nil || single.Second != nil || single.Network != "pods" {
		t.Fatalf("ADD without a network: %+v %v, want one address in pods", single, err)
	}
	six := addReq("p3")
	six.Network = "pods6"
	if r6, err := n.Add(ctx, six); err != nil || r6.Second != nil || !r6.Addr.Addr().Is6() || r6.Gateway != cniapi.GatewayV6 {
		t.Fatalf("ADD in the IPv6 network alone: %+v %v, want one IPv6 address via %s", r6, err, cniapi.GatewayV6)
	}

	// A restart reads both addresses back: neither is handed out again.
	n.stop()
	n2 := e.startNode("n1", "192.168.10.11", n.state)
	ck2, err := n2.Check(ctx, req.Attachment)
	if err != nil || ck2.Addr != r.Addr || ck2.Second == nil || ck2.Second.Addr != r.Second.Addr {
		t.Fatalf("CHECK after a restart: %+v %v", ck2, err)
	}
	waitFor(t, "both routes after the restart", func() bool {
		rs := n2.routes()
		return slices.Contains(rs, r.Addr.String()+" dev "+veth) && slices.Contains(rs, r.Second.Addr.String()+" dev "+veth)
	})
	other := addReq("p4")
	other.Network = "pods,pods6"
	r4, err := n2.Add(ctx, other)
	if err != nil || r4.Addr == r.Addr || r4.Second == nil || r4.Second.Addr == r.Second.Addr {
		t.Fatalf("a second dual-stack pod after the restart: %+v %v (the first holds %s and %s)", r4, err, r.Addr, r.Second.Addr)
	}
	if err := n2.Del(ctx, req.Attachment); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both routes gone after DEL", func() bool {
		rs := n2.routes()
		return !slices.Contains(rs, r.Addr.String()+" dev "+veth) && !slices.Contains(rs, r.Second.Addr.String()+" dev "+veth)
	})
	// Both addresses are free again: the pool gives them out once more.
	n2.mu.Lock()
	v4, v6 := n2.pool("pods"), n2.pool("pods6")
	a4, b4, ok4 := v4.Allocate()
	a6, b6, ok6 := v6.Allocate()
	if ok4 {
		v4.Unmark(a4, b4)
	}
	if ok6 {
		v6.Unmark(a6, b6)
	}
	n2.mu.Unlock()
	if a4 != r.Addr.Addr() || a6 != r.Second.Addr.Addr() {
		t.Fatalf("after DEL the pools give %s and %s first, want the released %s and %s", a4, a6, r.Addr.Addr(), r.Second.Addr.Addr())
	}
}

// TestAgentDualStackRefusals: a pair of one family, three networks, an
// unknown network and an empty name are refused with the reason, and
// leave nothing allocated.
func TestAgentDualStackRefusals(t *testing.T) {
	e := newEnv(t, dualTopology)
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	for _, c := range []struct{ network, want string }{
		{"pods,other", "networks pods and other are both IPv4"},
		{"pods,pods6,other", "name one network, or two separated by a comma"},
		{"pods,nope", `network "nope" does not exist`},
		{"pods,", "an empty network name"},
		{"pods,pods", "names pods twice"},
	} {
		req := addReq("bad")
		req.Network = c.network
		_, err := n.Add(ctx, req)
		var ce *cniapi.Error
		if !errors.As(err, &ce) || ce.Code != cniapi.CodeInvalid || !strings.Contains(ce.Message, c.want) {
			t.Errorf("ADD in %q: %v, want code %d containing %q", c.network, err, cniapi.CodeInvalid, c.want)
		}
	}
	if _, err := n.Check(ctx, cniapi.Attachment{ContainerID: "bad", IfName: "eth0"}); err == nil {
		t.Fatal("a refused ADD left an attachment behind")
	}
}

// TestAgentDualStackBothOrNeither: when the second network has no address
// to give and no block to claim, the pod gets neither address.
func TestAgentDualStackBothOrNeither(t *testing.T) {
	// pods6 is a single /124 block, 16 addresses; pods' first block
	// (a /26) has room for every pod here.
	topo := strings.Replace(dualTopology, `"fd00:10::/48", blockSize: 124`, `"fd00:10::/124", blockSize: 124`, 1)
	topo = strings.Replace(topo, "10.10.0.0/16, blockSize: 28", "10.10.0.0/16, blockSize: 26", 1)
	e := newEnv(t, topo)
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	var got int
	var last error
	for i := range 20 {
		req := addReq("p" + string(rune('a'+i)))
		req.Network = "pods,pods6"
		if _, err := n.Add(ctx, req); err != nil {
			last = err
			break
		}
		got++
	}
	if last == nil || !strings.Contains(last.Error(), "no free address") {
		t.Fatalf("%d dual-stack ADDs into 16 IPv6 addresses: last error %v, want no free address", got, last)
	}
	// The pool counts in use exactly the addresses the pods hold: the
	// failed ADD kept no IPv4 address.
	n.mu.Lock()
	used4, held4 := 0, 0
	for _, b := range n.pool("pods").Blocks() {
		used4 += n.pool("pods").Used(b)
	}
	for _, e := range n.eps {
		if e.Network == "pods" {
			held4++
		}
	}
	n.mu.Unlock()
	if held4 != got || used4 != got {
		t.Fatalf("after %d dual-stack pods and a failed ADD: %d pods hold IPv4 addresses and the pool counts %d in use, want %d each", got, held4, used4, got)
	}
	if _, err := n.Add(ctx, addReq("p-single")); err != nil {
		t.Fatalf("an IPv4-only pod after the IPv6 network filled: %v", err)
	}
}

// TestAgentDualStackNamespaceDefault: a namespace whose default names two
// networks gets dual-stack pods; a pod there that asks for one network
// gets that one alone; the server refuses a pair of one family.
func TestAgentDualStackNamespaceDefault(t *testing.T) {
	e := newEnv(t, dualTopology)
	n := e.startNode("n1", "192.0.2.1", "")
	ctx := context.Background()
	if _, err := e.admin.SetNamespaceNetwork(ctx, "web", "pods,other"); err == nil || !strings.Contains(err.Error(), "of one family") {
		t.Fatalf("namespace default pods,other: %v, want a refusal naming the family", err)
	}
	if _, err := e.admin.SetNamespaceNetwork(ctx, "web", "pods6,pods"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the snapshot with the namespace's networks", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.snap != nil && n.snap.Namespaces["web"] == "pods6,pods"
	})
	p := addReq("w1")
	p.PodNamespace = "web"
	r, err := n.Add(ctx, p)
	if err != nil || r.Network != "pods6" || !r.Addr.Addr().Is6() || r.Second == nil || r.Second.Network != "pods" {
		t.Fatalf("a pod of namespace web: %+v %v, want pods6 then pods", r, err)
	}
	pinned := addReq("w2")
	pinned.PodNamespace, pinned.Network = "web", "other"
	if r, err := n.Add(ctx, pinned); err != nil || r.Network != "other" || r.Second != nil {
		t.Fatalf("a pod of namespace web asking for other: %+v %v, want other alone", r, err)
	}
	if r, err := n.Add(ctx, addReq("d1")); err != nil || r.Second != nil || r.Network != "pods" {
		t.Fatalf("a pod of namespace default: %+v %v, want pods alone", r, err)
	}
}

// TestAgentDualStackPeers: hosts that register an IPv6 address route each
// other's IPv6 blocks via it, and their IPv4 blocks via their IPv4
// address; a host without one gets no IPv6 route from its peers (its
// blocks keep the default) and breaks none of theirs.
func TestAgentDualStackPeers(t *testing.T) {
	e := newEnv(t, dualTopology)
	e.ip6 = map[string]string{"n1": "fd00:ff::11", "n2": "fd00:ff::12"}
	n1 := e.startNode("n1", "192.168.10.11", "")
	n2 := e.startNode("n2", "192.168.10.12", "")
	ctx := context.Background()
	req := addReq("p1")
	req.Network = "pods,pods6"
	r, err := n1.Add(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if v := n1.host.sysctl("net/ipv6/conf/all/forwarding"); v != "1" {
		t.Fatalf("IPv6 forwarding on a host with --ip6: %q, want 1", v)
	}
	hosts, err := e.admin.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if want := e.ip6[h.Name]; h.IP6.String() != want {
			t.Fatalf("host %s registered with ip6 %s, want %s", h.Name, h.IP6, want)
		}
	}
	b4 := netip.PrefixFrom(r.Addr.Addr(), 28).Masked()
	b6 := netip.PrefixFrom(r.Second.Addr.Addr(), 124).Masked()
	waitFor(t, "n2 routes n1's blocks of both families", func() bool {
		rs := n2.routes()
		return slices.Contains(rs, b4.String()+" via 192.168.10.11") && slices.Contains(rs, b6.String()+" via fd00:ff::11")
	})
	// n3 has no IPv6 address: n1 routes its IPv4 block, not its IPv6
	// one, and keeps n2's.
	n3 := e.startNode("n3", "192.168.10.13", "")
	req3 := addReq("p3")
	req3.Network = "pods,pods6"
	r3, err := n3.Add(ctx, req3)
	if err != nil {
		t.Fatal(err)
	}
	b34 := netip.PrefixFrom(r3.Addr.Addr(), 28).Masked()
	b36 := netip.PrefixFrom(r3.Second.Addr.Addr(), 124).Masked()
	waitFor(t, "n1 routes n3's IPv4 block", func() bool { return slices.Contains(n1.routes(), b34.String()+" via 192.168.10.13") })
	for _, rt := range n1.routes() {
		if strings.HasPrefix(rt, b36.String()) {
			t.Fatalf("n1 routes n3's IPv6 block (%s) though n3 has no IPv6 address", rt)
		}
	}
	if !slices.ContainsFunc(n1.routes(), func(s string) bool { return strings.HasSuffix(s, "via fd00:ff::12") }) {
		t.Fatalf("n1 routes %v: want n2's IPv6 block via fd00:ff::12", n1.routes())
	}
}

// TestAgentBGPAnnouncesIPv6: a host with an IPv6 address in a bgp group
// of an IPv6 network runs its speaker with that address as the IPv6 next
// hop and announces its IPv6 blocks beside its IPv4 ones.
func TestAgentBGPAnnouncesIPv6(t *testing.T) {
	topo := strings.Replace(bgpTopology, `  - {name: pods, cidr: 10.10.0.0/16, blockSize: 28, default: true}
topologies:
  - networks: [pods]`, `  - {name: pods, cidr: 10.10.0.0/16, blockSize: 28, default: true}
  - {name: pods6, cidr: "fd00:10::/48", blockSize: 124}
topologies:
  - networks: [pods, pods6]`, 1)
	e := newEnv(t, topo)
	fs := &fakeSpeakers{}
	e.bgp = func(string) BGPOptions { return BGPOptions{Start: fs.start} }
	e.ip6 = map[string]string{"n1": "fd00:ff::11"}
	e.startNode("n1", "192.168.10.11", "")
	want := append(e.hostBlocks("pods", "n1"), e.hostBlocks("pods6", "n1")...)
	if len(want) != 2 {
		t.Fatalf("blocks %v: want one of each network", want)
	}
	fs.waitAnnounces(t, "both families announced", func(ps []netip.Prefix) bool {
		return slices.Contains(ps, want[0]) && slices.Contains(ps, want[1])
	})
	if s := fs.current(); s.cfg.NextHop6 != netip.MustParseAddr("fd00:ff::11") || s.cfg.RouterID != netip.MustParseAddr("192.168.10.11") {
		t.Errorf("speaker config %+v: want router ID 192.168.10.11 and IPv6 next hop fd00:ff::11", s.cfg)
	}
}
