package topology

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// APIVersion is the native format's version string.
const APIVersion = "terrane.io/v1"

// maxBlockHostBits bounds a block to 65,536 addresses so per-block
// bookkeeping stays small.
const maxBlockHostBits = 16

var nameRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,126}[A-Za-z0-9])?$`)

// Load parses and compiles a topology file.
func Load(data []byte) (*Topology, error) {
	s, unknown, err := parse(data)
	if err != nil {
		return nil, err
	}
	t, err := Compile(s)
	if len(unknown) == 0 {
		return t, err
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		unknown = append(unknown, ve.Errors...)
	}
	return nil, unknown.err()
}

// Compile checks a spec and builds the model. It reports every problem at
// once as a *ValidationError and returns no model when there is any.
func Compile(s *Spec) (*Topology, error) {
	c := &compiler{spec: s, top: &Topology{Format: s.format}, netByName: map[string]*Network{}, brokenNet: map[*Network]bool{}, brokenTree: map[*Tree]bool{}}
	c.header()
	c.networks()
	c.reservations()
	c.trees()
	c.layout()
	if err := c.errs.err(); err != nil {
		return nil, err
	}
	return c.top, nil
}

type compiler struct {
	spec      *Spec
	top       *Topology
	netByName map[string]*Network
	netIndex  prefixIndex // the networks' CIDRs by index
	errs      errorList
	// broken marks networks and trees with errors of their own: layout
	// skips them and still checks the rest, so every problem is reported
	// in one pass.
	brokenNet  map[*Network]bool
	brokenTree map[*Tree]bool
	// ownBGP holds the bgp blocks groups set themselves, for their
	// descendants to inherit.
	ownBGP map[*Group]*BGPConfig
}

func (c *compiler) header() {
	if v := c.spec.APIVersion; v != "" && v != APIVersion {
		c.errs.add("apiVersion", "%q is not supported; use %q", v, APIVersion)
	}
	if k := c.spec.Kind; k != "" && k != "Topology" {
		c.errs.add("kind", "%q is not a topology; use \"Topology\"", k)
	}
}

// parsePrefix parses a CIDR and insists on a masked one, naming the fix.
func (c *compiler) parsePrefix(path, s string) (netip.Prefix, bool) {
	if s == "" {
		c.errs.add(path, "required: a CIDR such as 10.0.0.0/16 or fd00::/48")
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		c.errs.add(path, "%q is not a CIDR (want e.g. 10.0.0.0/16 or fd00::/48)", s)
		return netip.Prefix{}, false
	}
	if p.Addr().Zone() != "" {
		c.errs.add(path, "%q has a zone; remove it", s)
		return netip.Prefix{}, false
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-bitsIf(p.Addr().Is4In6(), 96))
	if m := p.Masked(); m != p {
		c.errs.add(path, "%q has host bits set; did you mean %s?", s, m)
		return netip.Prefix{}, false
	}
	return p, true
}

func bitsIf(cond bool, n int) int {
	if cond {
		return n
	}
	return 0
}

func (c *compiler) networks() {
	if len(c.spec.Networks) == 0 {
		c.errs.add("networks", "at least one network is required")
	}
	for i, ns := range c.spec.Networks {
		path := fmt.Sprintf("networks[%d]", i)
		n := &Network{Name: ns.Name, BlockBits: ns.BlockSize, Namespaces: ns.Namespaces, Default: ns.Default, Homes: map[*Group]netip.Prefix{}}
		errsBefore := len(c.errs)
		ok := true
		switch {
		case ns.Name == "":
			c.errs.add(path+".name", "required")
			ok = false
		case !nameRe.MatchString(ns.Name):
			c.errs.add(path+".name", "%q: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit", ns.Name)
			ok = false
		case c.netByName[ns.Name] != nil:
			c.errs.add(path+".name", "network %q is defined twice", ns.Name)
			ok = false
		}
		cidr, cok := c.parsePrefix(path+".cidr", ns.CIDR)
		n.CIDR = cidr
		if cok {
			blockKey := c.blockKey()
			bits := cidr.Addr().BitLen()
			switch {
			case ns.BlockSize == 0:
				c.errs.add(path+"."+blockKey, "required: the prefix length of a block, e.g. %d", min(bits, max(cidr.Bits(), bits-6)))
			case ns.BlockSize < cidr.Bits():
				c.errs.add(path+"."+blockKey, "block size /%d is shorter than the network prefix /%d; use /%d or longer", ns.BlockSize, cidr.Bits(), cidr.Bits())
			case ns.BlockSize > bits:
				c.errs.add(path+"."+blockKey, "block size /%d is longer than an address (/%d)", ns.BlockSize, bits)
			case bits-ns.BlockSize > maxBlockHostBits:
				c.errs.add(path+"."+blockKey, "block size /%d holds more than %d addresses; use /%d or longer", ns.BlockSize, 1<<maxBlockHostBits, bits-maxBlockHostBits)
			}
			if j, ok := c.netIndex.firstOverlap(cidr); ok {
				o := c.top.Networks[j]
				c.errs.add(path+".cidr", "%s overlaps network %q (%s, networks[%d])", cidr, o.Name, o.CIDR, j)
			}
			c.netIndex.add(cidr, i)
		}
		for j, nsName := range ns.Namespaces {
			if nsName == "" {
				c.errs.add(fmt.Sprintf("%s.%s[%d]", path, c.namespacesKey(), j), "empty name")
			}
		}
		if ok {
			c.netByName[ns.Name] = n
		}
		c.brokenNet[n] = len(c.errs) > errsBefore
		c.top.Networks = append(c.top.Networks, n)
	}
	// At most one default per namespace: each default network clashes with
	// the first earlier default serving one of its namespaces (an empty
	// list serves every namespace). Linear, as a file may list thousands.
	firstDefault, firstAll := -1, -1
	owner := map[string]int{}
	for j, b := range c.top.Networks {
		if !b.Default {
			continue
		}
		i := firstAll
		if len(b.Namespaces) == 0 {
			i = firstDefault
		}
		for _, ns := range b.Namespaces {
			if k, ok := owner[ns]; ok && (i < 0 || k < i) {
				i = k
			}
		}
		if i >= 0 {
			a := c.top.Networks[i]
			c.errs.add(fmt.Sprintf("networks[%d].default", j), "network %q is also a default for namespaces network %q (networks[%d]) serves; give them disjoint namespaces or keep one default", b.Name, a.Name, i)
		}
		if firstDefault < 0 {
			firstDefault = j
		}
		if firstAll < 0 && len(b.Namespaces) == 0 {
			firstAll = j
		}
		for _, ns := range b.Namespaces {
			if _, ok := owner[ns]; !ok {
				owner[ns] = j
			}
		}
	}
}

// prefixIndex finds the first added prefix that overlaps a given one in
// O(address bits), where comparing with every network would make a file
// of thousands of networks take minutes.
type prefixIndex struct {
	self   map[netip.Prefix]int // prefix: first index added
	inside map[netip.Prefix]int // prefix: first index added strictly inside it
}

func (x *prefixIndex) add(p netip.Prefix, i int) {
	if x.self == nil {
		x.self, x.inside = map[netip.Prefix]int{}, map[netip.Prefix]int{}
	}
	if _, ok := x.self[p]; !ok {
		x.self[p] = i
	}
	for l := p.Bits() - 1; l >= 0; l-- {
		a := netip.PrefixFrom(p.Addr(), l).Masked()
		if _, ok := x.inside[a]; ok {
			break // set before, with every shorter prefix above it
		}
		x.inside[a] = i
	}
}

// firstOverlap is the first added prefix that contains p or lies inside it.
func (x *prefixIndex) firstOverlap(p netip.Prefix) (int, bool) {
	best, found := x.inside[p]
	for l := p.Bits(); l >= 0; l-- {
		if j, ok := x.self[netip.PrefixFrom(p.Addr(), l).Masked()]; ok && (!found || j < best) {
			best, found = j, true
		}
	}
	return best, found
}

func (c *compiler) blockKey() string {
	if c.spec.format == Romana {
		return "block_mask"
	}
	return "blockSize"
}

func (c *compiler) namespacesKey() string {
	if c.spec.format == Romana {
		return "tenants"
	}
	return "namespaces"
}

func (c *compiler) reservations() {
	for i, r := range c.spec.Reservations {
		if p, ok := c.parsePrefix(fmt.Sprintf("reservations[%d]", i), r); ok {
			c.top.Reservations = append(c.top.Reservations, p)
		}
	}
	for i, r := range c.spec.ServiceCIDRs {
		path := fmt.Sprintf("serviceCIDRs[%d]", i)
		p, ok := c.parsePrefix(path, r)
		if !ok {
			continue
		}
		if j, ok := c.netIndex.firstOverlap(p); ok {
			n := c.top.Networks[j]
			c.errs.add(path, "service CIDR %s overlaps network %q (%s, networks[%d]); pod and service addresses must not mix", p, n.Name, n.CIDR, j)
		}
		c.top.ServiceCIDRs = append(c.top.ServiceCIDRs, p)
	}
}

func (c *compiler) trees() {
	if len(c.spec.Topologies) == 0 {
		c.errs.add("topologies", "at least one topology is required: it says which groups hosts of each network join")
	}
	usedBy := map[string]int{}
	known := "" // the defined networks, listed once: a file may name thousands
	for ti, ts := range c.spec.Topologies {
		path := fmt.Sprintf("topologies[%d]", ti)
		tr := &Tree{Index: ti}
		errsBefore := len(c.errs)
		if len(ts.Networks) == 0 {
			c.errs.add(path+".networks", "required: name the networks this group tree applies to")
		}
		for ni, name := range ts.Networks {
			np := fmt.Sprintf("%s.networks[%d]", path, ni)
			n := c.netByName[name]
			switch {
			case n == nil:
				if known == "" {
					known = listSome(slices.Sorted(maps.Keys(c.netByName)), 10)
				}
				c.errs.add(np, "unknown network %q; defined networks: %s", name, known)
				continue
			case n.Tree != nil && n.Tree == tr:
				c.errs.add(np, "network %q is listed twice", name)
				continue
			case n.Tree != nil:
				c.errs.add(np, "network %q already belongs to topologies[%d]; a network follows one group tree", name, usedBy[name])
				continue
			}
			n.Tree = tr
			usedBy[name] = ti
			tr.Networks = append(tr.Networks, n)
		}
		gkey := "groups"
		if c.spec.format == Romana {
			gkey = "map"
		}
		if len(ts.Groups) == 0 {
			c.errs.add(path+"."+gkey, "at least one group is required; hosts join groups")
		}
		hosts := map[string]string{}
		ips := map[netip.Addr]string{}
		seen := map[string]string{}
		for gi := range ts.Groups {
			gp := fmt.Sprintf("%s.%s[%d]", path, gkey, gi)
			g := c.group(tr, nil, &ts.Groups[gi], gp, hosts, ips)
			if prev, dup := seen[g.Name]; dup {
				c.errs.add(gp+".name", "group %q is already defined at %s", g.Name, prev)
			}
			seen[g.Name] = g.SrcPath
			tr.Groups = append(tr.Groups, g)
		}
		c.brokenTree[tr] = len(c.errs) > errsBefore
		c.top.Trees = append(c.top.Trees, tr)
	}
	for i, n := range c.top.Networks {
		if n.Tree == nil && c.netByName[n.Name] == n {
			c.errs.add(fmt.Sprintf("networks[%d]", i), "network %q is in no topology; add it to a topologies[].networks list", n.Name)
		}
	}
}

func (c *compiler) group(tr *Tree, parent *Group, gs *GroupSpec, path string, hosts map[string]string, ips map[netip.Addr]string) *Group {
	if gs.path != "" {
		path = gs.path
	}
	g := &Group{Name: gs.Name, SrcPath: path, Tree: tr, Parent: parent, ExpectedHosts: gs.ExpectedHosts, Weight: gs.Weight, Index: len(tr.All)}
	tr.All = append(tr.All, g)
	switch {
	case gs.Name == "":
		c.errs.add(path+".name", "required")
	case !nameRe.MatchString(gs.Name):
		c.errs.add(path+".name", "%q: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit", gs.Name)
	}
	g.Path = gs.Name
	if parent != nil {
		g.Path = parent.Path + "/" + gs.Name
		g.Mode, g.Advertise = parent.Mode, parent.Advertise
		g.Specificity = parent.Specificity
	}
	if gs.Routing != "" {
		m, ok := ParseMode(gs.Routing)
		if !ok {
			c.errs.add(path+".routing", "%q is not a routing mode; use l2, bgp or vpc", gs.Routing)
		}
		g.Mode = m
	}
	switch gs.Advertise {
	case "":
	case "blocks":
		g.Advertise = AdvertiseBlocks
	case "group":
		g.Advertise = AdvertiseGroup
	default:
		c.errs.add(path+".advertise", "%q: use blocks (each host announces its blocks) or group (the group's prefixes)", gs.Advertise)
	}
	if gs.Advertise != "" && g.Mode != ModeBGP {
		c.errs.add(path+".advertise", "applies only to bgp groups; this group routes by %s", g.Mode)
	}
	c.bgp(g, gs.BGP, path)
	if gs.ExpectedHosts < 0 {
		c.errs.add(path+".expectedHosts", "must not be negative")
	}
	if gs.Weight < 0 {
		c.errs.add(path+".weight", "must not be negative")
	}
	g.Selector = compileSelector(gs.Assignment, path+".assignment", &c.errs)
	g.Specificity += len(g.Selector.Requirements)
	if gs.Prefix != "" {
		if p, ok := c.parsePrefix(path+pinnedKey(path), gs.Prefix); ok {
			g.Pinned = p
		}
	}
	if len(gs.Groups) > 0 && len(gs.Hosts) > 0 {
		c.errs.add(path, "a group holds either child groups or hosts, not both; move the hosts into a child group")
	}
	for hi, hs := range gs.Hosts {
		hp := fmt.Sprintf("%s.hosts[%d]", path, hi)
		if hs.path != "" {
			hp = hs.path
		}
		h := StaticHost{Name: hs.Name}
		if hs.Name == "" {
			c.errs.add(hp+".name", "required")
		} else if prev, dup := hosts[hs.Name]; dup {
			c.errs.add(hp+".name", "host %q is already placed at %s; a host belongs to one group per tree", hs.Name, prev)
		} else {
			hosts[hs.Name] = hp
		}
		ip, err := netip.ParseAddr(hs.IP)
		switch {
		case hs.IP == "":
			c.errs.add(hp+".ip", "required: the host's own address")
		case err != nil:
			c.errs.add(hp+".ip", "%q is not an IP address", hs.IP)
		default:
			h.IP = ip.Unmap()
			if prev, dup := ips[h.IP]; dup {
				c.errs.add(hp+".ip", "%s is already the address of the host at %s", h.IP, prev)
			}
			ips[h.IP] = hp
		}
		g.Hosts = append(g.Hosts, h)
	}
	seen := map[string]string{}
	for ci := range gs.Groups {
		cp := fmt.Sprintf("%s.groups[%d]", path, ci)
		ch := c.group(tr, g, &gs.Groups[ci], cp, hosts, ips)
		if prev, dup := seen[ch.Name]; dup {
			c.errs.add(ch.SrcPath+".name", "group %q is already defined at %s", ch.Name, prev)
		}
		seen[ch.Name] = ch.SrcPath
		g.Children = append(g.Children, ch)
	}
	if g.IsLeaf() {
		tr.Leaves = append(tr.Leaves, g)
	}
	g.Weight = effectiveWeight(gs)
	return g
}

// effectiveWeight: the explicit weight, else the expected hosts below, else 1.
func effectiveWeight(gs *GroupSpec) int {
	if gs.Weight > 0 {
		return gs.Weight
	}
	if n := expectedBelow(gs); n > 0 {
		return n
	}
	return 1
}

func expectedBelow(gs *GroupSpec) int {
	if gs.ExpectedHosts > 0 {
		return gs.ExpectedHosts
	}
	n := 0
	for i := range gs.Groups {
		n += expectedBelow(&gs.Groups[i])
	}
	return n
}

// listSome joins at most n names, saying how many were left out.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// pinnedInTree reports whether g's pinned prefix starts inside one of its
// tree's networks (Layout checks that it also ends there).
func pinnedInTree(g *Group) bool {
	for _, n := range g.Tree.Networks {
		if n.CIDR.Contains(g.Pinned.Addr()) {
			return true
		}
	}
	return false
}

// layout places every group's home prefix in every network of its tree.
func (c *compiler) layout() {
	for _, tr := range c.top.Trees {
		if c.brokenTree[tr] || slices.ContainsFunc(tr.Networks, func(n *Network) bool { return c.brokenNet[n] }) {
			continue // a broken tree has no meaningful layout
		}
		for _, n := range tr.Networks {
			c.layoutLevel(n, n.CIDR, tr.Groups, "", len(tr.Networks) > 1)
		}
	}
}

func (c *compiler) layoutLevel(n *Network, parent netip.Prefix, groups []*Group, parentPath string, multi bool) {
	if len(groups) == 0 {
		return
	}
	levelPath := parentPath
	if levelPath == "" {
		levelPath = fmt.Sprintf("topologies[%d]", groups[0].Tree.Index)
	}
	inNet := ""
	if multi {
		inNet = fmt.Sprintf(" in network %q", n.Name)
	}
	room := n.BlockBits - parent.Bits() // address bits between parent and a block
	if room < 0 {
		room = 0
	}
	if room < 62 && uint64(len(groups)) > 1<<room {
		need := 0
		for 1<<need < len(groups) {
			need++
		}
		c.errs.add(levelPath, "%d groups need %d address bits%s but only %d remain between %s and block size /%d; use a larger network, a longer block size or fewer groups", len(groups), need, inNet, room, parent, n.BlockBits)
		return
	}
	homes, errs := Layout(parent, n.BlockBits, groups, func(g *Group) netip.Prefix {
		if g.Pinned.IsValid() && g.Pinned.Addr().BitLen() == parent.Addr().BitLen() && n.CIDR.Contains(g.Pinned.Addr()) {
			return g.Pinned
		}
		return netip.Prefix{}
	})
	for _, e := range errs {
		e.Msg += inNet
		c.errs = append(c.errs, e)
	}
	if len(errs) > 0 {
		return
	}
	for _, g := range groups {
		if g.Pinned.IsValid() && !pinnedInTree(g) {
			// Report once, from the tree's first network.
			switch {
			case n != g.Tree.Networks[0]:
			case len(g.Tree.Networks) == 1:
				c.errs.add(g.SrcPath+pinnedKey(g.SrcPath), "%s is not inside network %q (%s)", g.Pinned, n.Name, n.CIDR)
			default:
				names := make([]string, len(g.Tree.Networks))
				for i, m := range g.Tree.Networks {
					names[i] = m.Name
				}
				c.errs.add(g.SrcPath+pinnedKey(g.SrcPath), "%s is not inside any network of its topology (%s)", g.Pinned, strings.Join(names, ", "))
			}
			continue
		}
		h := homes[g]
		n.Homes[g] = h
		c.layoutLevel(n, h, g.Children, g.SrcPath+".groups", multi)
	}
}
