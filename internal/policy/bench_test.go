package policy_test

import (
	"maps"
	"net/netip"
	"testing"

	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/policy/policygen"
)

// BenchmarkCompileFullSync: one node's rule set (100 pods) from 1,000
// policies over 10,000 pods — what an agent compiles on start.
// `terrane bench policy` measures the same compile with its apply into a
// real nftables table.
func BenchmarkCompileFullSync(b *testing.B) {
	c := policygen.BigCluster()
	node := policy.Node{Name: policygen.BigNode(7), IPs: []netip.Addr{netip.MustParseAddr("192.168.0.7")}}
	b.ReportAllocs()
	for b.Loop() {
		rs, err := policy.Compile(c, node)
		if err != nil {
			b.Fatal(err)
		}
		if len(rs.Endpoints) != policygen.BigPodsPerNode {
			b.Fatalf("%d endpoints", len(rs.Endpoints))
		}
	}
}

// BenchmarkCompilePair: a client and a server selected by 10,000 rules per
// direction, each a (peer, port) of its own — the port line of each
// direction is cut into 20,000 pieces.
func BenchmarkCompilePair(b *testing.B) {
	c, err := policygen.Pair(10000, netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.1.0.3"), 5201, 5202)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rs, err := policy.Compile(c, policy.Node{Name: policygen.PairNode})
		if err != nil {
			b.Fatal(err)
		}
		if len(rs.Endpoints[1].Ingress.Ports) != 10000 {
			b.Fatalf("%d port entries", len(rs.Endpoints[1].Ingress.Ports))
		}
	}
}

// BenchmarkCompileLabelChange: the compile of BenchmarkCompileFullSync
// again after one pod's label changed (ns1/p1, on another node, joins the
// peers of node7's ns1/p701 and leaves them, in turn), with the Compiler
// that compiled the node before.
func BenchmarkCompileLabelChange(b *testing.B) {
	c := policygen.BigCluster()
	node := policy.Node{Name: policygen.BigNode(7), IPs: []netip.Addr{netip.MustParseAddr("192.168.0.7")}}
	comp := policy.NewCompiler(node)
	base, err := comp.Compile(c)
	if err != nil {
		b.Fatal(err)
	}
	orig := c.Pods[1].Labels
	changed := maps.Clone(orig)
	changed["app"] = "app2"
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Pods[1].Labels = changed
		if i%2 == 1 {
			c.Pods[1].Labels = orig
		}
		i++
		rs, err := comp.Compile(c)
		if err != nil {
			b.Fatal(err)
		}
		if i == 1 && rs.Digest() == base.Digest() {
			b.Fatal("the label change changed nothing")
		}
	}
}
