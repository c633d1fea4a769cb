// Package ipam is Terrane's topology-aware address allocator: it plans each
// group's prefixes, places hosts in leaf groups by their labels, hands out
// blocks to hosts from their group's prefixes and endpoint addresses from
// their hosts' blocks. It is pure: no I/O, clock, goroutines or logging.
// Every operation returns the state changes it made, so a store can persist
// exactly those, and a failed operation changes nothing.
package ipam

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// Errors callers branch on.
var (
	// ErrExhausted: no address space is left where the request may be served.
	ErrExhausted = errors.New("address space exhausted")
	// ErrRouteBudget: serving the request would need more routes than a
	// route budget allows.
	ErrRouteBudget = errors.New("route budget exceeded")
	// ErrNoGroup: no group of a tree admits the host.
	ErrNoGroup = errors.New("no group admits the host")
	// ErrNotFound: the named host, endpoint or network does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request itself is wrong (address outside the host's
	// group, network not allowed for the namespace, ...).
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the request is well formed but the state holds
	// something else (the address is taken, the ID is in use elsewhere,
	// the block still holds endpoints).
	ErrConflict = errors.New("conflict")
)

// PlanMode chooses how group prefixes are planned.
type PlanMode int

const (
	// Elastic groups start at their hinted size and grow on demand,
	// preferring the buddy of a prefix they hold.
	Elastic PlanMode = iota
	// Static groups own their home prefix (Romana's split) and never grow.
	Static
)

func (m PlanMode) String() string {
	if m == Static {
		return "static"
	}
	return "elastic"
}

// ParsePlanMode parses "elastic" or "static".
func ParsePlanMode(s string) (PlanMode, error) {
	switch s {
	case "elastic", "":
		return Elastic, nil
	case "static":
		return Static, nil
	}
	return Elastic, fmt.Errorf("mode %q: use elastic or static", s)
}

// Budgets bounds the routes targets may receive; 0 means no bound.
type Budgets struct {
	// VPC is the route table limit per network (AWS: 50 by default).
	VPC int `json:"vpc"`
	// BGP is the most routes one ToR may receive from one group's hosts.
	BGP int `json:"bgp"`
}

// Options configure an Allocator.
type Options struct {
	Mode    PlanMode
	Budgets Budgets
}

// Allocator holds one cluster's allocation state. It is not safe for
// concurrent use: callers serialise operations (one goroutine owns it).
type Allocator struct {
	s    *state
	opts Options
	// reports are the agents' last reports, and reported counts the
	// addresses they hold per network and block (audit.go). Not state.
	reports  map[string]HostReport
	reported map[string]map[netip.Prefix]int
}

// New plans the initial group prefixes of every network and returns the
// allocator with the changes that plan consists of.
func New(t *topology.Topology, opts Options) (*Allocator, []Change, error) {
	a := &Allocator{s: newState(t), opts: opts}
	for _, ns := range a.s.nets {
		ns.homes = ns.net.Homes
		if opts.Mode == Elastic {
			ns.homes = elasticHomes(ns.net)
		}
	}
	tx := &tx{s: a.s}
	for _, n := range t.Networks {
		for _, g := range n.Tree.All {
			for _, p := range a.initialPrefixes(n, g) {
				if err := tx.do(Change{Kind: GroupPrefixAdded, Network: n.Name, Group: g.Path, Prefix: p}); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	return a, tx.changes, nil
}

// Topology returns the topology the allocator was built for.
func (a *Allocator) Topology() *topology.Topology { return a.s.topo }

// Options returns the allocator's options.
func (a *Allocator) Options() Options { return a.opts }

// initialPrefixes is a group's first ownership. Static: the home prefix.
// Elastic: interior groups own their home prefix (their aggregate); leaves
// start with a prefix sized for their expected hosts at the start of their
// home. Reservations are cut out either way.
func (a *Allocator) initialPrefixes(n *topology.Network, g *topology.Group) []netip.Prefix {
	ns := a.s.nets[n.Name]
	home := ns.homes[g]
	if a.opts.Mode == Static || !g.IsLeaf() || g.Pinned.IsValid() {
		return netx.Subtract([]netip.Prefix{home}, ns.reserved...)
	}
	bits := n.BlockBits
	for bits > home.Bits() && uint64(1)<<(n.BlockBits-bits) < initialBlocks(g) {
		bits--
	}
	free := netx.Subtract([]netip.Prefix{home}, ns.reserved...)
	for ; bits <= n.BlockBits; bits++ {
		for _, f := range free {
			if f.Bits() <= bits {
				return []netip.Prefix{netip.PrefixFrom(f.Addr(), bits)}
			}
		}
	}
	return nil
}

// HostSpec describes a host joining or changing.
type HostSpec struct {
	Name string
	IP   netip.Addr
	// IP6 is the host's IPv6 address beside an IPv4 IP (a dual-stack
	// underlay): its L2 peers route IPv6 blocks via it.
	IP6    netip.Addr
	Labels map[string]string
}

// AddHost registers a host, or updates it when it is known: a host whose
// labels changed moves to its new leaf groups; blocks it holds in its old
// groups stay until they are empty.
func (a *Allocator) AddHost(h HostSpec) ([]Change, error) {
	if h.Name == "" {
		return nil, fmt.Errorf("add host: %w: name is required", ErrInvalid)
	}
	if h.IP6.IsValid() && !h.IP6.Is6() {
		return nil, fmt.Errorf("add host %s: %w: ip6 %s: want an IPv6 address", h.Name, ErrInvalid, h.IP6)
	}
	groups, ip, err := a.place(h)
	if err != nil {
		return nil, err
	}
	tx := &tx{s: a.s}
	old := a.s.hosts[h.Name]
	if old == nil {
		err = tx.do(Change{Kind: HostJoined, Host: h.Name, IP: ip, IP6: h.IP6, Labels: maps.Clone(h.Labels), Groups: groups})
	} else {
		prev := HostState{IP: old.ip, IP6: old.ip6, Labels: maps.Clone(old.labels), Groups: leafPaths(old)}
		if prev.IP == ip && prev.IP6 == h.IP6 && maps.Equal(prev.Labels, h.Labels) && maps.Equal(prev.Groups, groups) {
			return nil, nil
		}
		err = tx.do(Change{Kind: HostUpdated, Host: h.Name, IP: ip, IP6: h.IP6, Labels: maps.Clone(h.Labels), Groups: groups, Old: &prev})
		if err == nil {
			err = a.releaseDrained(tx, h.Name)
		}
	}
	if err != nil {
		tx.rollback()
		return nil, err
	}
	return tx.changes, nil
}

func leafPaths(h *host) map[string]string {
	out := make(map[string]string, len(h.leaf))
	for n, g := range h.leaf {
		out[n] = g.Path
	}
	return out
}

// place picks the host's leaf group in every network: the group that names
// it statically, else the most specific admitting leaf (most label
// requirements from the top), ties to the one with fewest hosts, then to
// file order. A host no group admits is an error, never a silent placement.
func (a *Allocator) place(h HostSpec) (map[string]string, netip.Addr, error) {
	groups := map[string]string{}
	ip := h.IP
	for _, tr := range a.s.topo.Trees {
		var leaf *topology.Group
		if g, sh, ok := tr.StaticHost(h.Name); ok {
			if ip.IsValid() && ip != sh.IP {
				return nil, ip, fmt.Errorf("add host %s: %w: the topology places it at %s with IP %s, not %s", h.Name, ErrInvalid, g.SrcPath, sh.IP, ip)
			}
			leaf, ip = g, sh.IP
		} else {
			leaf = a.bestLeaf(tr, h)
		}
		if leaf == nil {
			return nil, ip, fmt.Errorf("add host %s: %w of topologies[%d] (networks %s): its labels {%s} match none of %s",
				h.Name, ErrNoGroup, tr.Index, networkNames(tr), formatLabels(h.Labels), describeLeaves(tr))
		}
		for _, n := range tr.Networks {
			groups[n.Name] = leaf.Path
		}
	}
	return groups, ip, nil
}

// bestLeaf is the most specific admitting leaf of tr; among equals the host
// keeps its current group, else the one with fewest hosts, else file order.
func (a *Allocator) bestLeaf(tr *topology.Tree, h HostSpec) *topology.Group {
	var best []*topology.Group
	for _, g := range tr.Leaves {
		switch {
		case !g.Admits(h.Labels):
		case len(best) == 0 || g.Specificity > best[0].Specificity:
			best = []*topology.Group{g}
		case g.Specificity == best[0].Specificity:
			best = append(best, g)
		}
	}
	if len(best) == 0 {
		return nil
	}
	if old := a.s.hosts[h.Name]; old != nil {
		if cur := old.leaf[tr.Networks[0].Name]; slices.Contains(best, cur) {
			return cur
		}
	}
	leaf := best[0]
	for _, g := range best[1:] {
		if a.s.members[g] < a.s.members[leaf] {
			leaf = g
		}
	}
	return leaf
}

func networkNames(tr *topology.Tree) string {
	names := make([]string, len(tr.Networks))
	for i, n := range tr.Networks {
		names[i] = n.Name
	}
	return strings.Join(names, ", ")
}

func formatLabels(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

func describeLeaves(tr *topology.Tree) string {
	parts := make([]string, 0, len(tr.Leaves))
	for _, g := range tr.Leaves {
		var sel []string
		for x := g; x != nil; x = x.Parent {
			if s := x.Selector.String(); s != "" {
				sel = append([]string{s}, sel...)
			}
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", g.Path, strings.Join(sel, ",")))
	}
	if len(parts) > 8 {
		parts = append(parts[:8], fmt.Sprintf("and %d more", len(parts)-8))
	}
	return strings.Join(parts, "; ")
}

// RemoveHost releases every endpoint and block of the host and forgets it.
func (a *Allocator) RemoveHost(name string) ([]Change, error) {
	h := a.s.hosts[name]
	if h == nil {
		return nil, fmt.Errorf("remove host %s: %w", name, ErrNotFound)
	}
	tx := &tx{s: a.s}
	err := func() error {
		for _, id := range slices.Sorted(maps.Keys(a.s.endpoints)) {
			if e := a.s.endpoints[id]; e.host == name {
				if err := tx.do(releaseChange(e)); err != nil {
					return err
				}
			}
		}
		for _, net := range slices.Sorted(maps.Keys(h.blocks)) {
			for _, p := range sortedPrefixes(h.blocks[net]) {
				b := h.blocks[net][p]
				if err := tx.do(blockRelease(b, net)); err != nil {
					return err
				}
			}
		}
		return tx.do(Change{Kind: HostLeft, Host: name, IP: h.ip, Labels: maps.Clone(h.labels), Groups: leafPaths(h)})
	}()
	if err != nil {
		tx.rollback()
		return nil, err
	}
	return tx.changes, nil
}

func sortedPrefixes[V any](m map[netip.Prefix]V) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	return netx.Sort(out)
}

// Apply replays changes made elsewhere (read from a store) onto this
// allocator. It stops at the first change that does not fit and undoes the
// ones it applied, so the state stays consistent.
func (a *Allocator) Apply(changes []Change) error {
	tx := &tx{s: a.s}
	for _, c := range changes {
		if err := a.s.apply(c); err != nil {
			tx.rollback()
			return fmt.Errorf("apply %s: %w", c, err)
		}
		tx.changes = append(tx.changes, c)
	}
	return nil
}
