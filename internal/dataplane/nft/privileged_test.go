//go:build linux

package nft

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/testnet"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create network namespaces and nftables tables; run `go test` as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("privileged test: needs the ip command from iproute2")
	}
}

// inNS runs fn on a thread inside the named namespace; sockets fn opens stay
// in it.
func inNS(t *testing.T, name string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace switched
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// lab is a node namespace routing between pod namespaces, each pod with one
// IPv4 and one IPv6 address on a veth to the node, and servers answering
// TCP (accept, write "ok") and UDP (echo) on ports 80 and 81.
type lab struct {
	node string
	pods map[string]labPod
}

type labPod struct {
	ns     string
	v4, v6 netip.Addr
}

func newLab(t *testing.T, pods ...string) *lab {
	t.Helper()
	l := &lab{node: testnet.NewNS(t, "nftnode"), pods: map[string]labPod{}}
	run := func(args ...string) { testnet.Run(t, "ip", args...) }
	run("netns", "exec", l.node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	for i, name := range pods {
		p := labPod{ns: testnet.NewNS(t, "nftpod"),
			v4: netip.AddrFrom4([4]byte{10, 1, 0, byte(2 + i)}),
			v6: netip.MustParseAddr(fmt.Sprintf("fd00:1::%d", 2+i))}
		host, peer := fmt.Sprintf("nfth%d", i), fmt.Sprintf("nftp%d", i)
		run("-n", l.node, "link", "add", host, "type", "veth", "peer", "name", peer, "netns", p.ns)
		run("-n", l.node, "link", "set", host, "up")
		run("-n", l.node, "addr", "add", "169.254.1.1/32", "dev", host)
		run("-n", l.node, "addr", "add", "fe80::1/64", "dev", host, "nodad")
		run("-n", l.node, "route", "add", p.v4.String()+"/32", "dev", host)
		run("-n", l.node, "-6", "route", "add", p.v6.String()+"/128", "dev", host)
		run("-n", p.ns, "link", "set", peer, "up")
		run("-n", p.ns, "addr", "add", p.v4.String()+"/32", "dev", peer)
		run("-n", p.ns, "addr", "add", p.v6.String()+"/128", "dev", peer, "nodad")
		run("-n", p.ns, "route", "add", "169.254.1.1/32", "dev", peer)
		run("-n", p.ns, "route", "add", "default", "via", "169.254.1.1", "dev", peer)
		run("-n", p.ns, "-6", "route", "add", "default", "via", "fe80::1", "dev", peer)
		l.pods[name] = p
		for _, port := range []int{80, 81} {
			if err := inNS(t, p.ns, func() error { return serve(t, port) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	return l
}

func serve(t *testing.T, port int) error {
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			n, a, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], a)
		}
	}()
	return nil
}

// reach reports whether from gets an answer from to on proto/port: a TCP
// echo or a UDP echo, within a short deadline (a denied packet is dropped,
// so denial is a timeout).
func (l *lab) reach(t *testing.T, from, to, proto string, port int, v6 bool) bool {
	t.Helper()
	dst := l.pods[to].v4
	if v6 {
		dst = l.pods[to].v6
	}
	addr := net.JoinHostPort(dst.String(), fmt.Sprint(port))
	var ok bool
	err := inNS(t, l.pods[from].ns, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, strings.ToLower(proto), addr)
		if err != nil {
			return nil
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(400 * time.Millisecond))
		if _, err := c.Write([]byte("hi")); err != nil {
			return nil
		}
		buf := make([]byte, 8)
		n, err := c.Read(buf)
		ok = err == nil && string(buf[:n]) == "hi"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// ping sends one ICMP echo from one pod to another.
func (l *lab) ping(t *testing.T, from, to string, v6 bool) bool {
	t.Helper()
	dst := l.pods[to].v4
	if v6 {
		dst = l.pods[to].v6
	}
	return exec.Command("ip", "netns", "exec", l.pods[from].ns, "ping", "-c", "1", "-W", "1", dst.String()).Run() == nil
}

func (l *lab) cluster(policies ...policy.NetworkPolicy) *policy.Cluster {
	c := &policy.Cluster{Namespaces: []policy.Namespace{{Name: "x"}}, Policies: policies}
	for name, p := range l.pods {
		c.Pods = append(c.Pods, policy.Pod{Namespace: "x", Name: name, Node: "n", Labels: map[string]string{"pod": name},
			IPs: []netip.Addr{p.v4, p.v6}})
	}
	return c
}

func (l *lab) apply(t *testing.T, tbl *Table, policies ...policy.NetworkPolicy) {
	t.Helper()
	rs, err := policy.Compile(l.cluster(policies...), policy.Node{Name: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.Apply(rs); err != nil {
		t.Fatal(err)
	}
}

func openIn(t *testing.T, ns string) *Table {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	tbl, err := Open(int(h))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tbl.Close() })
	return tbl
}

func ingressFrom(target string, port int32, from ...string) policy.NetworkPolicy {
	np := policy.NetworkPolicy{Metadata: policy.ObjectMeta{Name: "in-" + target, Namespace: "x"}}
	np.Spec.PodSelector = policy.Selector{MatchLabels: map[string]string{"pod": target}}
	rule := policy.IngressRule{Ports: []policy.Port{{Port: &policy.IntOrString{Int: port}}}}
	for _, f := range from {
		rule.From = append(rule.From, policy.Peer{PodSelector: &policy.Selector{MatchLabels: map[string]string{"pod": f}}})
	}
	np.Spec.Ingress = []policy.IngressRule{rule}
	return np
}

type probe struct {
	from, to, proto string
	port            int
	v6              bool
	want            bool
}

func (l *lab) expect(t *testing.T, step string, probes ...probe) {
	t.Helper()
	for _, p := range probes {
		if got := l.reach(t, p.from, p.to, p.proto, p.port, p.v6); got != p.want {
			fam := "IPv4"
			if p.v6 {
				fam = "IPv6"
			}
			t.Errorf("%s: %s -> %s %s/%d (%s): reached %v, want %v", step, p.from, p.to, p.proto, p.port, fam, got, p.want)
		}
	}
}

// TestPrivilegedNftEnforcesPolicy drives real packets through a node
// namespace whose table this package programs: isolation, ports and
// protocols, both families, incremental changes (a peer joins, a policy
// goes), established connections surviving a new policy, egress, and
// another program's table left alone.
func TestPrivilegedNftEnforcesPolicy(t *testing.T) {
	requireRoot(t)
	l := newLab(t, "a", "b", "c")
	testnet.Run(t, "ip", "netns", "exec", l.node, "nft", "add table inet other; add chain inet other c { type filter hook forward priority 10; policy accept; }")
	tbl := openIn(t, l.node)

	l.apply(t, tbl)
	l.expect(t, "no policy", probe{"a", "b", "tcp", 81, false, true}, probe{"c", "b", "udp", 80, true, true})

	l.apply(t, tbl, ingressFrom("b", 80, "a"))
	l.expect(t, "b takes a on TCP 80",
		probe{"a", "b", "tcp", 80, false, true}, probe{"a", "b", "tcp", 80, true, true},
		probe{"c", "b", "tcp", 80, false, false}, probe{"c", "b", "tcp", 80, true, false},
		probe{"a", "b", "tcp", 81, false, false}, probe{"a", "b", "udp", 80, false, false},
		probe{"b", "a", "tcp", 80, false, true}, probe{"c", "a", "udp", 81, false, true})

	// An established connection from c... is not possible yet; open one
	// from a, then replace the policy with one that admits only c.
	var conn net.Conn
	if err := inNS(t, l.pods["a"].ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(l.pods["b"].v4.String(), "80"), time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	l.apply(t, tbl, ingressFrom("b", 80, "c"))
	l.expect(t, "b takes c on TCP 80 instead",
		probe{"c", "b", "tcp", 80, false, true}, probe{"a", "b", "tcp", 80, false, false})
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := conn.Read(buf); err != nil {
		t.Errorf("an established connection broke when the policy changed: %v", err)
	}

	// Egress: a may reach only b's UDP 81.
	egress := policy.NetworkPolicy{Metadata: policy.ObjectMeta{Name: "a-out", Namespace: "x"}}
	egress.Spec.PodSelector = policy.Selector{MatchLabels: map[string]string{"pod": "a"}}
	egress.Spec.PolicyTypes = []policy.PolicyType{policy.Egress}
	udp := policy.UDP
	egress.Spec.Egress = []policy.EgressRule{{
		To:    []policy.Peer{{PodSelector: &policy.Selector{MatchLabels: map[string]string{"pod": "b"}}}},
		Ports: []policy.Port{{Protocol: &udp, Port: &policy.IntOrString{Int: 81}}},
	}}
	l.apply(t, tbl, egress)
	l.expect(t, "a may send only UDP 81 to b",
		probe{"a", "b", "udp", 81, false, true}, probe{"a", "b", "udp", 81, true, true},
		probe{"a", "b", "tcp", 81, false, false}, probe{"a", "c", "udp", 81, false, false},
		probe{"c", "a", "tcp", 80, false, true})

	out := testnet.Run(t, "ip", "netns", "exec", l.node, "nft", "list", "table", "inet", TableName)
	for _, want := range []string{"chain out-x/a", "10.1.0.3 . udp . 81", "jump out-x/a"} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list table lacks %q:\n%s", want, out)
		}
	}

	// A cluster policy: the Admin tier denies c's TCP 80 to b and leaves
	// everything else to the default, so c's other traffic to b — another
	// port, ICMP — is admitted by elements of other protocols.
	cnp := policy.ClusterNetworkPolicy{Metadata: policy.ObjectMeta{Name: "no-c-to-b-80"}}
	cnp.Spec.Tier = policy.AdminTier
	cnp.Spec.Subject.Pods = &policy.NamespacedPod{PodSelector: policy.Selector{MatchLabels: map[string]string{"pod": "b"}}}
	cnp.Spec.Ingress = []policy.CNPIngressRule{{
		Action:    policy.Deny,
		From:      []policy.CNPPeer{{Pods: &policy.NamespacedPod{PodSelector: policy.Selector{MatchLabels: map[string]string{"pod": "c"}}}}},
		Protocols: []policy.CNPProtocol{{TCP: &policy.CNPPortMatch{DestinationPort: &policy.CNPPort{Number: 80}}}},
	}}
	c := l.cluster()
	c.ClusterPolicies = []policy.ClusterNetworkPolicy{cnp}
	rs, err := policy.Compile(c, policy.Node{Name: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.Apply(rs); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "the admin tier denies c TCP 80 to b",
		probe{"c", "b", "tcp", 80, false, false}, probe{"c", "b", "tcp", 80, true, false},
		probe{"c", "b", "tcp", 81, false, true}, probe{"c", "b", "udp", 80, false, true},
		probe{"a", "b", "tcp", 80, false, true})
	for _, v6 := range []bool{false, true} {
		if !l.ping(t, "c", "b", v6) {
			t.Errorf("the admin tier: c cannot ping b (IPv6 %v), which no rule denies", v6)
		}
	}

	l.apply(t, tbl)
	l.expect(t, "policies gone", probe{"a", "c", "tcp", 80, false, true}, probe{"c", "b", "udp", 80, true, true})

	if err := tbl.Remove(); err != nil {
		t.Fatal(err)
	}
	out = testnet.Run(t, "ip", "netns", "exec", l.node, "nft", "list", "tables")
	if strings.Contains(out, "inet "+TableName) || !strings.Contains(out, "inet other") {
		t.Errorf("after Remove: want only the other program's table, got:\n%s", out)
	}
}

// TestPrivilegedNftFirstApplyReplaces: a table left by an earlier run (an
// agent restarted) is replaced whole by the new Table's first Apply.
func TestPrivilegedNftFirstApplyReplaces(t *testing.T) {
	requireRoot(t)
	l := newLab(t, "a", "b")
	first := openIn(t, l.node)
	l.apply(t, first, ingressFrom("b", 80, "nobody"))
	l.expect(t, "isolated", probe{"a", "b", "tcp", 80, false, false})

	second := openIn(t, l.node) // a restarted agent
	l.apply(t, second)
	l.expect(t, "replaced", probe{"a", "b", "tcp", 80, false, true})
	if err := second.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := second.Remove(); err != nil {
		t.Errorf("removing a table that is gone: %v", err)
	}
}
