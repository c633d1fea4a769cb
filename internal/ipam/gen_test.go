package ipam

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// This file draws the random topologies TestModel runs on.

var (
	labelKeys   = []string{"zone", "rack", "role"}
	labelValues = [][]string{{"a", "b", "c"}, {"1", "2", "3"}, {"x", "y"}}
	namespaces  = []string{"", "ns1", "ns2"}
)

// genSpec builds a random topology: one or two networks (IPv4 /20–/24 with
// /28–/30 blocks, IPv6 /116–/120 with /124–/126 blocks), group trees one to
// three levels deep with label selectors, routing modes, size hints,
// static hosts, reservations and service CIDRs.
func genSpec(r *rand.Rand) topology.Spec {
	var s topology.Spec
	genNet := func(name string, k int) topology.NetworkSpec {
		if r.IntN(4) > 0 {
			bits := []int{20, 21, 22, 23, 24, 24, 24, 24}[r.IntN(8)]
			return topology.NetworkSpec{Name: name, CIDR: fmt.Sprintf("10.%d.0.0/%d", k, bits), BlockSize: 28 + r.IntN(3)}
		}
		return topology.NetworkSpec{Name: name, CIDR: fmt.Sprintf("fd00:%x::/%d", k, 116+r.IntN(5)), BlockSize: 124 + r.IntN(3)}
	}
	n0 := genNet("n0", r.IntN(32))
	n0.Default = r.IntN(2) == 0
	if r.IntN(5) == 0 {
		n0.Namespaces = []string{"ns1", "ns2"}
	}
	s.Networks = append(s.Networks, n0)
	if r.IntN(5) < 2 {
		n1 := genNet("n1", 32+r.IntN(32))
		if r.IntN(2) == 0 {
			n1.Namespaces = []string{"ns1"}
		}
		s.Networks = append(s.Networks, n1)
	}
	// pin picks a prefix of n0 for a top-level group now and then; most
	// picks clash with a sibling's and genTopology draws again.
	n0cidr := netip.MustParsePrefix(n0.CIDR)
	pin := func() string {
		if r.IntN(8) > 0 {
			return ""
		}
		bits := n0cidr.Bits() + 1 + r.IntN(2)
		p, _ := netx.Nth(n0cidr, bits, r.Uint64N(1<<(bits-n0cidr.Bits())))
		return p.String()
	}
	if len(s.Networks) == 2 && r.IntN(2) == 0 {
		s.Topologies = []topology.TreeSpec{{Networks: []string{"n0"}, Groups: genGroups(r, 0, 1+r.IntN(3), pin)}, {Networks: []string{"n1"}, Groups: genGroups(r, 0, 1+r.IntN(3), func() string { return "" })}}
	} else {
		var names []string
		for _, n := range s.Networks {
			names = append(names, n.Name)
		}
		s.Topologies = []topology.TreeSpec{{Networks: names, Groups: genGroups(r, 0, 1+r.IntN(3), pin)}}
	}
	for _, n := range s.Networks {
		for range r.IntN(3) {
			if r.IntN(2) == 0 {
				continue
			}
			cidr := netip.MustParsePrefix(n.CIDR)
			bits := min(cidr.Addr().BitLen(), max(cidr.Bits()+1, n.BlockSize-1+r.IntN(4)))
			p, _ := netx.Nth(cidr, bits, r.Uint64N(1<<(bits-cidr.Bits())))
			s.Reservations = append(s.Reservations, p.String())
		}
	}
	if r.IntN(5) == 0 {
		s.ServiceCIDRs = []string{"10.96.0.0/12", "fd96::/112"}
	}
	return s
}

func genGroups(r *rand.Rand, level, depth int, pin func() string) []topology.GroupSpec {
	var out []topology.GroupSpec
	for i := range 1 + r.IntN(3) {
		g := topology.GroupSpec{Name: fmt.Sprintf("g%d", i), Assignment: genSelector(r, level, i)}
		if level == 0 {
			g.Prefix = pin()
			switch r.IntN(3) {
			case 0:
				g.Routing = "vpc"
			case 1:
				g.Routing = "bgp"
				if r.IntN(3) > 0 {
					g.Advertise = "group"
				}
			}
		}
		if level+1 < depth && r.IntN(4) > 0 {
			g.Groups = genGroups(r, level+1, depth, pin)
		} else {
			if r.IntN(5) == 0 {
				g.ExpectedHosts = 1 + r.IntN(4)
			}
			if r.IntN(4) == 0 {
				j := r.IntN(4)
				g.Hosts = []topology.HostSpec{{Name: fmt.Sprintf("s%d", j), IP: fmt.Sprintf("192.168.0.%d", j+1)}}
			}
		}
		out = append(out, g)
	}
	return out
}

func genSelector(r *rand.Rand, level, i int) *topology.SelectorSpec {
	key, vals := labelKeys[level], labelValues[level]
	switch r.IntN(10) {
	case 0, 1:
		return nil
	case 2:
		return &topology.SelectorSpec{MatchExpressions: []topology.RequirementSpec{{Key: key, Operator: "Exists"}}}
	case 3:
		return &topology.SelectorSpec{MatchExpressions: []topology.RequirementSpec{{Key: key, Operator: "NotIn", Values: []string{vals[r.IntN(len(vals))]}}}}
	case 4:
		return &topology.SelectorSpec{MatchLabels: map[string]string{key: vals[i%len(vals)], "gpu": "true"}}
	default:
		return &topology.SelectorSpec{MatchLabels: map[string]string{key: vals[(i+r.IntN(2)*r.IntN(3))%len(vals)]}}
	}
}

// genTopology draws specs until one compiles (tight layouts fail).
func genTopology(r *rand.Rand) (*topology.Topology, string) {
	for {
		s := genSpec(r)
		data, err := json.Marshal(s)
		if err != nil {
			panic(err)
		}
		if top, err := topology.Load(data); err == nil {
			return top, string(data)
		}
	}
}
