package routing

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// randomInput builds a valid random state inside space: a group tree up to
// four levels deep whose children hold disjoint pieces of their parent's
// prefixes (some pieces stay with the parent, so covers fragment), modes
// mostly inherited but sometimes changed below a group, hosts in leaf groups
// with disjoint blocks from their leaf's prefixes, and endpoints inside
// their blocks.
func randomInput(r *rand.Rand, space netip.Prefix) Input {
	g := &generator{r: r, blockBits: space.Bits() + 3 + r.IntN(3), advertise: map[string]topology.Advertise{}}
	for i, ps := range g.carve([]netip.Prefix{space}, 1+r.IntN(3)) {
		g.group(fmt.Sprintf("t%d", i), "", g.mode(), ps, 1)
	}
	for _, leaf := range g.leaves {
		g.hosts(leaf)
	}
	return g.in
}

type generator struct {
	r         *rand.Rand
	blockBits int
	in        Input
	leaves    []Group
	advertise map[string]topology.Advertise
	nHosts    int
}

func (g *generator) mode() topology.Mode {
	return []topology.Mode{topology.ModeVPC, topology.ModeVPC, topology.ModeVPC, topology.ModeBGP, topology.ModeL2}[g.r.IntN(5)]
}

func (g *generator) group(path, parent string, mode topology.Mode, prefixes []netip.Prefix, depth int) {
	grp := Group{Path: path, Parent: parent, Mode: mode, Prefixes: prefixes}
	g.in.Groups = append(g.in.Groups, grp)
	g.advertise[path] = topology.Advertise(g.r.IntN(2))
	if depth < 4 && g.r.IntN(3) != 0 {
		if kids := g.carve(prefixes, 1+g.r.IntN(3)); len(kids) > 0 {
			for i, ps := range kids {
				child := mode
				if g.r.IntN(6) == 0 {
					child = g.mode()
				}
				g.group(fmt.Sprintf("%s/g%d", path, i), path, child, ps, depth+1)
			}
			return
		}
	}
	g.leaves = append(g.leaves, grp)
}

// carve splits prefixes into pieces no smaller than a block and deals them
// to at most n children, each getting at least one; a third of the rest
// stays with the parent.
func (g *generator) carve(prefixes []netip.Prefix, n int) [][]netip.Prefix {
	var pieces []netip.Prefix
	for _, p := range prefixes {
		k := min(1+g.r.IntN(2), g.blockBits-p.Bits())
		for i := range uint64(1) << k {
			if k > 0 {
				piece, _ := netx.Nth(p, p.Bits()+k, i)
				pieces = append(pieces, piece)
			}
		}
	}
	g.r.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
	n = min(n, len(pieces))
	kids := make([][]netip.Prefix, n)
	for i, p := range pieces {
		switch {
		case i < n:
			kids[i] = append(kids[i], p)
		case g.r.IntN(3) != 0:
			k := g.r.IntN(n)
			kids[k] = append(kids[k], p)
		}
	}
	for _, ps := range kids {
		netx.Sort(ps)
	}
	return kids
}

func (g *generator) hosts(leaf Group) {
	var free []netip.Prefix
	for _, p := range leaf.Prefixes {
		for i := range netx.Size(p) >> (p.Addr().BitLen() - g.blockBits) {
			b, _ := netx.Nth(p, g.blockBits, i)
			free = append(free, b)
		}
	}
	g.r.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	for range g.r.IntN(5) {
		g.nHosts++
		h := Host{
			Name:      fmt.Sprintf("h%02d", g.nHosts),
			IP:        netip.AddrFrom4([4]byte{192, 0, 2, byte(g.nHosts)}),
			Group:     leaf.Path,
			Mode:      leaf.Mode,
			Advertise: g.advertise[leaf.Path],
		}
		switch g.r.IntN(4) {
		case 0:
			h.Segment = "shared"
		case 1, 2:
			h.Segment = leaf.Path // a segment named by its group, as InputFrom does
		}
		nb := min(g.r.IntN(4), len(free))
		h.Blocks, free = free[:nb:nb], free[nb:]
		for _, b := range h.Blocks {
			size := int(netx.Size(b))
			for range g.r.IntN(3) {
				a := netx.AddOffset(b.Addr(), uint64(g.r.IntN(size)), 0)
				if !slices.Contains(h.Endpoints, a) {
					h.Endpoints = append(h.Endpoints, a)
				}
			}
		}
		g.in.Hosts = append(g.in.Hosts, h)
	}
}

// shuffled is in with every slice permuted and copied: routing must not
// care about input order.
func shuffled(r *rand.Rand, in Input) Input {
	perm := func(n int, swap func(i, j int)) { r.Shuffle(n, swap) }
	out := Input{Hosts: slices.Clone(in.Hosts), Groups: slices.Clone(in.Groups)}
	perm(len(out.Hosts), func(i, j int) { out.Hosts[i], out.Hosts[j] = out.Hosts[j], out.Hosts[i] })
	perm(len(out.Groups), func(i, j int) { out.Groups[i], out.Groups[j] = out.Groups[j], out.Groups[i] })
	for i := range out.Hosts {
		h := &out.Hosts[i]
		h.Blocks, h.Endpoints = slices.Clone(h.Blocks), slices.Clone(h.Endpoints)
		perm(len(h.Blocks), func(i, j int) { h.Blocks[i], h.Blocks[j] = h.Blocks[j], h.Blocks[i] })
		perm(len(h.Endpoints), func(i, j int) { h.Endpoints[i], h.Endpoints[j] = h.Endpoints[j], h.Endpoints[i] })
	}
	for i := range out.Groups {
		g := &out.Groups[i]
		g.Prefixes = slices.Clone(g.Prefixes)
		perm(len(g.Prefixes), func(i, j int) { g.Prefixes[i], g.Prefixes[j] = g.Prefixes[j], g.Prefixes[i] })
	}
	return out
}

// groupOf finds a group by path in the test's own way.
func groupOf(in Input, path string) (Group, bool) {
	for _, g := range in.Groups {
		if g.Path == path {
			return g, true
		}
	}
	return Group{}, false
}

// isAtOrUnder reports whether group path lies at or under ancestor.
func isAtOrUnder(in Input, path, ancestor string) bool {
	for p := path; p != ""; {
		if p == ancestor {
			return true
		}
		g, ok := groupOf(in, p)
		if !ok {
			return false
		}
		p = g.Parent
	}
	return false
}
