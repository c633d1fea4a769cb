package routing

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/dataplane/fake"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
)

var update = flag.Bool("update", false, "rewrite testdata/hoststate/*.golden")

// cluster builds a scenario's allocation state with the allocator the
// server runs, so blocks and group prefixes are the ones a snapshot holds.
type cluster struct {
	t    *testing.T
	topo *topology.Topology
	a    *ipam.Allocator
	pod  int // endpoints allocated so far, for their IDs
}

func newCluster(t *testing.T, text string) *cluster {
	t.Helper()
	topo := mustTopology(t, text)
	a, _, err := ipam.New(topo, ipam.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, topo: topo, a: a}
}

// host adds (or, known, relabels) a host; labels are "k=v" pairs.
func (c *cluster) host(name, ip string, labels ...string) {
	c.t.Helper()
	l := map[string]string{}
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		l[k] = v
	}
	if _, err := c.a.AddHost(ipam.HostSpec{Name: name, IP: netip.MustParseAddr(ip), Labels: l}); err != nil {
		c.t.Fatalf("host %s: %v", name, err)
	}
}

// pods allocates n endpoints on host in network ("": the default), in a
// namespace named after the network.
func (c *cluster) pods(host, network string, n int) {
	c.t.Helper()
	for range n {
		c.pod++
		id := fmt.Sprintf("pod-%d", c.pod)
		if _, _, err := c.a.AllocateEndpoint(ipam.EndpointRequest{ID: id, Host: host, Network: network, Namespace: network}); err != nil {
			c.t.Fatalf("endpoint %s: %v", id, err)
		}
	}
}

// view is host's view of the cluster, as a snapshot gives it to its agent;
// each endpoint's veth is named after its address.
func (c *cluster) view(host string) HostView {
	v := HostView{Topology: c.topo, Hosts: c.a.Hosts(), Host: host,
		Blocks: map[string][]ipam.BlockInfo{}, Groups: map[string]map[string][]netip.Prefix{}}
	for _, n := range c.topo.Networks {
		v.Blocks[n.Name] = c.a.Blocks(n.Name)
		v.Groups[n.Name] = c.a.GroupPrefixes(n.Name)
	}
	for _, e := range c.a.Endpoints() {
		if e.Host == host {
			v.Endpoints = append(v.Endpoints, LocalEndpoint{Network: e.Network, Addr: e.Addr, Dev: "veth" + strings.NewReplacer(".", "", ":", "").Replace(e.Addr.String())})
		}
	}
	return v
}

// render is every host's table as the fake dataplane holds it after
// applying HostState, and its BGP speaker's configuration.
func (c *cluster) render() string {
	c.t.Helper()
	var b strings.Builder
	for _, h := range c.a.Hosts() {
		fmt.Fprintf(&b, "## %s %s %v\n", h.Name, h.IP, h.Groups)
		v := c.view(h.Name)
		for _, n := range c.topo.Networks {
			var mine []string
			for _, bl := range v.Blocks[n.Name] {
				if bl.Host == h.Name {
					mine = append(mine, bl.Prefix.String()+" ("+bl.Group+")")
				}
			}
			if len(mine) > 0 {
				fmt.Fprintf(&b, "blocks %s: %s\n", n.Name, strings.Join(mine, ", "))
			}
		}
		st, err := HostState(v, HostTable{Table: 100, Gateway: netip.MustParseAddr("169.254.1.1")})
		if err != nil {
			c.t.Fatalf("host state of %s: %v", h.Name, err)
		}
		dp, err := fake.New(fake.Options{Table: 100})
		if err != nil {
			c.t.Fatal(err)
		}
		if _, err := dp.Apply(context.Background(), st); err != nil {
			c.t.Fatalf("apply %s's state: %v", h.Name, err)
		}
		b.WriteString(dp.String())
		sc, ok, warn := HostBGP(v, BGPOverrides{})
		if ok {
			fmt.Fprintf(&b, "bgp as %d graceful-restart %ds\n", sc.ASN, sc.GracefulRestartSeconds)
			for _, p := range sc.Peers {
				fmt.Fprintf(&b, "  peer %s as %d port %d\n", p.Address, p.ASN, p.Port)
			}
			for _, p := range sc.Prefixes {
				fmt.Fprintf(&b, "  announce %s\n", p)
			}
		}
		if warn != nil {
			fmt.Fprintf(&b, "bgp warning: %v\n", warn)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestHostStateGolden renders every host's table and BGP configuration in
// a few clusters and compares them with testdata/hoststate/NAME.golden
// (rewritten with -update; check the diff before committing it).
func TestHostStateGolden(t *testing.T) {
	tests := []struct {
		name  string
		topo  string
		build func(c *cluster)
	}{
		{name: "l2-segment", topo: `networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 29, default: true}
topologies:
  - networks: [pods]
    groups:
      - {name: rack, routing: l2, assignment: {matchLabels: {rack: "1"}}}
`, build: func(c *cluster) {
			c.host("h1", "192.0.2.11", "rack=1")
			c.host("h2", "192.0.2.12", "rack=1")
			c.host("h3", "192.0.2.13", "rack=1")
			c.pods("h1", "", 10) // two blocks, merged in its peers' routes
			c.pods("h2", "", 2)
			c.pods("h3", "", 1)
		}},
		{name: "bgp-racks", topo: `networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 29, default: true}
topologies:
  - networks: [pods]
    groups:
      - name: fabric
        routing: bgp
        bgp:
          asn: 64601
          peers:
            - {address: 192.168.1.1, asn: 65001}
            - {address: 192.168.2.1, asn: 65002}
          gracefulRestart: 90s
        groups:
          - {name: rack-1, advertise: blocks, assignment: {matchLabels: {rack: "1"}}}
          - {name: rack-2, advertise: group, assignment: {matchLabels: {rack: "2"}}}
`, build: func(c *cluster) {
			c.host("r1a", "192.168.1.11", "rack=1")
			c.host("r1b", "192.168.1.12", "rack=1")
			c.host("r2a", "192.168.2.11", "rack=2")
			c.host("r2b", "192.168.2.12", "rack=2")
			c.pods("r1a", "", 2)
			c.pods("r1b", "", 10)
			c.pods("r2a", "", 1)
			c.pods("r2b", "", 1)
		}},
		{name: "relabel-drain", topo: `networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 29, default: true}
topologies:
  - networks: [pods]
    groups:
      - name: zone
        routing: l2
        groups:
          - {name: rack-a, assignment: {matchLabels: {rack: a}}}
          - {name: rack-b, assignment: {matchLabels: {rack: b}}}
`, build: func(c *cluster) {
			c.host("a1", "192.0.2.21", "rack=a")
			c.host("a2", "192.0.2.22", "rack=a")
			c.host("b1", "192.0.2.31", "rack=b")
			c.pods("a1", "", 2)
			c.pods("a2", "", 1)
			c.pods("b1", "", 1)
			// a2 moves to rack-b: its block in rack-a drains (kept while
			// its pod lives), new pods come from rack-b.
			c.host("a2", "192.0.2.22", "rack=b")
			c.pods("a2", "", 1)
		}},
		{name: "two-networks", topo: `networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 29, default: true}
  - {name: vms, cidr: 10.20.0.0/16, blockSize: 27, namespaces: [vms]}
topologies:
  - networks: [pods, vms]
    groups:
      - {name: rack, routing: l2, assignment: {matchLabels: {rack: "1"}}}
`, build: func(c *cluster) {
			c.host("h1", "192.0.2.11", "rack=1")
			c.host("h2", "192.0.2.12", "rack=1")
			c.pods("h1", "pods", 2)
			c.pods("h1", "vms", 1)
			c.pods("h2", "vms", 2)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.topo)
			tt.build(c)
			golden(t, filepath.Join("testdata", "hoststate", tt.name+".golden"), c.render())
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update after checking):\n--- got\n%s--- want\n%s", path, got, want)
	}
}
