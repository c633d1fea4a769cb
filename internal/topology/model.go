package topology

import (
	"net/netip"
	"slices"
)

// Topology is a checked topology: every CIDR parsed and masked, every
// reference resolved, every group's home prefix laid out in every network.
// It is immutable once Compile returns it.
type Topology struct {
	Networks     []*Network
	Trees        []*Tree
	Reservations []netip.Prefix
	ServiceCIDRs []netip.Prefix
	Format       Format
}

// Network is one address pool.
type Network struct {
	Name       string
	CIDR       netip.Prefix
	BlockBits  int
	Namespaces []string // empty: every namespace may use it
	Default    bool
	Tree       *Tree
	// Homes is each group's home prefix in this network: where the static
	// split puts it (Romana's layout). Padding between homes belongs to no
	// group.
	Homes map[*Group]netip.Prefix
}

// Tree is one group tree and the networks it applies to.
type Tree struct {
	Index    int
	Networks []*Network
	Groups   []*Group // top level
	All      []*Group // every group, parents before children
	Leaves   []*Group // groups without child groups, in file order
}

// Group is one node of a tree.
type Group struct {
	Name      string
	Path      string // names from the top, joined by "/": "zone-a/rack-1"
	SrcPath   string // where it stands in the file: "topologies[0].groups[1]"
	Tree      *Tree
	Parent    *Group
	Children  []*Group
	Hosts     []StaticHost
	Selector  Selector
	Mode      Mode      // effective: inherited when not set
	Advertise Advertise // effective
	// ExpectedHosts is the size hint: 0 when none was given.
	ExpectedHosts int
	// Weight weighs the home prefix against siblings' (at least 1).
	Weight int
	// Pinned is the operator's fixed prefix, invalid when none.
	Pinned netip.Prefix
	// Specificity counts label requirements from the top to this group;
	// the most specific admitting leaf wins a host.
	Specificity int
	// Index is the group's position in Tree.All.
	Index int
	// BGP is the effective BGP configuration of a bgp group: its own
	// block, else the nearest ancestor's, else the defaults. Nil for
	// groups that do not route by bgp.
	BGP *BGPConfig
}

// StaticHost is a host named in the topology rather than admitted by labels.
type StaticHost struct {
	Name string
	IP   netip.Addr
}

// IsLeaf reports whether hosts may belong to g directly.
func (g *Group) IsLeaf() bool { return len(g.Children) == 0 }

// Ancestors returns g's parents from the nearest up to the top.
func (g *Group) Ancestors() []*Group {
	var out []*Group
	for p := g.Parent; p != nil; p = p.Parent {
		out = append(out, p)
	}
	return out
}

// IsAncestorOf reports whether g is d or lies above it.
func (g *Group) IsAncestorOf(d *Group) bool {
	for x := d; x != nil; x = x.Parent {
		if x == g {
			return true
		}
	}
	return false
}

// Admits reports whether a host with these labels passes g's selector and
// every selector above it.
func (g *Group) Admits(labels map[string]string) bool {
	for x := g; x != nil; x = x.Parent {
		if !x.Selector.Matches(labels) {
			return false
		}
	}
	return true
}

// Network returns the named network, or nil.
func (t *Topology) Network(name string) *Network {
	for _, n := range t.Networks {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Group returns the group at path in tree, or nil.
func (tr *Tree) Group(path string) *Group {
	for _, g := range tr.All {
		if g.Path == path {
			return g
		}
	}
	return nil
}

// Allows reports whether namespace may use network n.
func (n *Network) Allows(namespace string) bool {
	return len(n.Namespaces) == 0 || slices.Contains(n.Namespaces, namespace)
}

// Mode is how a group's reachability is provided.
type Mode int

const (
	// ModeL2: hosts route directly to each other's blocks.
	ModeL2 Mode = iota
	// ModeBGP: hosts advertise to their ToR over BGP.
	ModeBGP
	// ModeVPC: a cloud route table carries the routes.
	ModeVPC
)

func (m Mode) String() string {
	switch m {
	case ModeBGP:
		return "bgp"
	case ModeVPC:
		return "vpc"
	default:
		return "l2"
	}
}

// ParseMode parses l2, bgp or vpc.
func ParseMode(s string) (Mode, bool) {
	switch s {
	case "l2":
		return ModeL2, true
	case "bgp":
		return ModeBGP, true
	case "vpc":
		return ModeVPC, true
	}
	return ModeL2, false
}

// Advertise is what hosts of a bgp group announce.
type Advertise int

const (
	// AdvertiseBlocks: each host announces its own blocks, merged.
	AdvertiseBlocks Advertise = iota
	// AdvertiseGroup: each host announces its group's prefixes (ECMP at the ToR).
	AdvertiseGroup
)

func (a Advertise) String() string {
	if a == AdvertiseGroup {
		return "group"
	}
	return "blocks"
}

// Segment is the L2 segment a host of leaf g sits on: the topmost group on
// g's path from which every group down to g routes by l2. Nil when g itself
// does not route by l2.
func (g *Group) Segment() *Group {
	if g.Mode != ModeL2 {
		return nil
	}
	seg := g
	for p := g.Parent; p != nil && p.Mode == ModeL2; p = p.Parent {
		seg = p
	}
	return seg
}

// StaticHost finds a host the tree places by name, and its group.
func (tr *Tree) StaticHost(name string) (*Group, StaticHost, bool) {
	for _, g := range tr.Leaves {
		for _, h := range g.Hosts {
			if h.Name == name {
				return g, h, true
			}
		}
	}
	return nil, StaticHost{}, false
}
