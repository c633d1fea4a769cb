package topology

import (
	"fmt"
	"strings"
)

// romanaFile is Romana v2.0's topology JSON, field for field.
type romanaFile struct {
	Networks   []romanaNetwork  `json:"networks"`
	Topologies []romanaTopology `json:"topologies"`
}

type romanaNetwork struct {
	Name      string   `json:"name"`
	CIDR      string   `json:"cidr"`
	BlockMask int      `json:"block_mask"`
	Tenants   []string `json:"tenants,omitempty"`
}

type romanaTopology struct {
	Networks []string            `json:"networks"`
	Map      []romanaGroupOrHost `json:"map"`
}

// romanaGroupOrHost is a group, or a host when ip is set.
type romanaGroupOrHost struct {
	Name       string              `json:"name,omitempty"`
	IP         string              `json:"ip,omitempty"`
	Assignment map[string]string   `json:"assignment,omitempty"`
	Routing    string              `json:"routing,omitempty"`
	Groups     []romanaGroupOrHost `json:"groups"`
	CIDR       string              `json:"cidr,omitempty"`
	Dummy      bool                `json:"dummy,omitempty"`
}

// DummyLabel is the label a Romana dummy (padding) group's selector both
// requires and forbids, so that it admits no host at all.
const DummyLabel = "terrane.io/romana-dummy"

// toSpec maps a Romana file onto the native model. Hosts listed as group
// elements become static hosts of the enclosing group; Romana's routing
// strings map to a routing mode (see docs/topology.md).
func (r *romanaFile) toSpec() (*Spec, []FieldError) {
	s := &Spec{format: Romana}
	var errs []FieldError
	for _, n := range r.Networks {
		s.Networks = append(s.Networks, NetworkSpec{
			Name: n.Name, CIDR: n.CIDR, BlockSize: n.BlockMask, Namespaces: n.Tenants,
		})
	}
	for ti, t := range r.Topologies {
		tree := TreeSpec{Networks: t.Networks}
		for gi, g := range t.Map {
			path := fmt.Sprintf("topologies[%d].map[%d]", ti, gi)
			if g.IP != "" {
				errs = append(errs, FieldError{Path: path, Msg: "a host cannot stand at the top of a topology map; put it inside a group's \"groups\""})
				continue
			}
			gs, e := romanaGroup(g, path, gi)
			errs = append(errs, e...)
			tree.Groups = append(tree.Groups, gs)
		}
		s.Topologies = append(s.Topologies, tree)
	}
	return s, errs
}

func romanaGroup(g romanaGroupOrHost, path string, index int) (GroupSpec, []FieldError) {
	var errs []FieldError
	gs := GroupSpec{Name: g.Name, Prefix: g.CIDR, path: path}
	if gs.Name == "" {
		gs.Name = fmt.Sprintf("group-%d", index)
	}
	if len(g.Assignment) > 0 {
		gs.Assignment = &SelectorSpec{MatchLabels: g.Assignment}
	}
	mode, adv := romanaRouting(g.Routing)
	gs.Routing, gs.Advertise = mode, adv
	if g.Dummy {
		// Romana's padding groups: Terrane never assigns padding, so a
		// declared dummy group is simply a group no host is admitted to.
		// The label must both exist and not exist: no host can satisfy it.
		gs.Assignment = &SelectorSpec{MatchExpressions: []RequirementSpec{
			{Key: DummyLabel, Operator: "Exists"},
			{Key: DummyLabel, Operator: "DoesNotExist"},
		}}
	}
	for ci, c := range g.Groups {
		cpath := fmt.Sprintf("%s.groups[%d]", path, ci)
		if c.IP != "" {
			if len(c.Groups) > 0 || c.Assignment != nil || c.CIDR != "" {
				errs = append(errs, FieldError{Path: cpath, Msg: "an element with an ip is a host and cannot have groups, assignment or cidr"})
				continue
			}
			gs.Hosts = append(gs.Hosts, HostSpec{Name: c.Name, IP: c.IP, path: cpath})
			continue
		}
		cs, e := romanaGroup(c, cpath, ci)
		errs = append(errs, e...)
		gs.Groups = append(gs.Groups, cs)
	}
	return gs, errs
}

// romanaRouting maps Romana's free-form routing string (comma-separated
// tokens such as "block-host-routes,prefix-announce-bgp:peer") to a mode.
// Romana ignored tokens it did not know; Terrane maps them to inheritance.
func romanaRouting(s string) (mode, advertise string) {
	for _, tok := range strings.Split(s, ",") {
		tok = strings.TrimSpace(tok)
		switch {
		case strings.Contains(tok, "vpc"):
			mode = ModeVPC.String()
		case strings.HasPrefix(tok, "prefix-announce-bgp"):
			if mode == "" {
				mode = ModeBGP.String()
			}
			advertise = AdvertiseGroup.String()
		case strings.Contains(tok, "bgp"):
			if mode == "" {
				mode = ModeBGP.String()
			}
		}
	}
	if mode != ModeBGP.String() {
		advertise = "" // a vpc token wins; advertise means nothing there
	}
	return mode, advertise
}
