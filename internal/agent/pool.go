package agent

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
)

// pool is one network's addresses on this host: the blocks the host owns
// and which of their addresses are in use. It is pure and not safe for
// concurrent use; the agent holds its lock.
type pool struct {
	blocks map[netip.Prefix]*poolBlock
}

type poolBlock struct {
	prefix netip.Prefix
	used   map[netip.Addr]bool
	// open: new addresses may come from it. A block of a group the host
	// has left (drained), one being released, or one the server no longer
	// lists as ours while addresses in it are still in use is closed.
	open bool
}

func newPool() *pool { return &pool{blocks: map[netip.Prefix]*poolBlock{}} }

// setOwned makes the open blocks exactly owned; blocks that are no longer
// owned are dropped when empty and closed otherwise. It returns the
// prefixes dropped.
func (p *pool) setOwned(owned []netip.Prefix) (dropped []netip.Prefix) {
	want := map[netip.Prefix]bool{}
	for _, b := range owned {
		want[b] = true
		if pb := p.blocks[b]; pb != nil {
			pb.open = true
		} else {
			p.blocks[b] = &poolBlock{prefix: b, used: map[netip.Addr]bool{}, open: true}
		}
	}
	for _, b := range slices.SortedFunc(maps.Keys(p.blocks), netx.Less) {
		if want[b] {
			continue
		}
		if pb := p.blocks[b]; len(pb.used) == 0 {
			delete(p.blocks, b)
			dropped = append(dropped, b)
		} else {
			pb.open = false
		}
	}
	return dropped
}

// add opens block b (just claimed).
func (p *pool) add(b netip.Prefix) {
	if pb := p.blocks[b]; pb != nil {
		pb.open = true
		return
	}
	p.blocks[b] = &poolBlock{prefix: b, used: map[netip.Addr]bool{}, open: true}
}

// remove drops an empty block (released).
func (p *pool) remove(b netip.Prefix) { delete(p.blocks, b) }

// mark records addr as in use, in whichever block holds it (one the host
// no longer owns is kept, closed, until its last address is released). It
// reports the block.
func (p *pool) mark(addr netip.Addr, block netip.Prefix) {
	pb := p.blocks[block]
	if pb == nil {
		pb = &poolBlock{prefix: block, used: map[netip.Addr]bool{}}
		p.blocks[block] = pb
	}
	pb.used[addr] = true
}

// unmark frees addr.
func (p *pool) unmark(addr netip.Addr, block netip.Prefix) {
	if pb := p.blocks[block]; pb != nil {
		delete(pb.used, addr)
	}
}

// allocate takes the lowest free address of the fullest open block (so
// the emptiest blocks drain and can be given back), the lowest block on a
// tie. ok is false when no open block has room.
func (p *pool) allocate() (addr netip.Addr, block netip.Prefix, ok bool) {
	var best *poolBlock
	for _, pb := range p.blocks {
		if !pb.open || uint64(len(pb.used)) >= netx.Size(pb.prefix) {
			continue
		}
		if best == nil || len(pb.used) > len(best.used) || (len(pb.used) == len(best.used) && netx.Less(pb.prefix, best.prefix) < 0) {
			best = pb
		}
	}
	if best == nil {
		return netip.Addr{}, netip.Prefix{}, false
	}
	for a := best.prefix.Addr(); best.prefix.Contains(a); a = a.Next() {
		if !best.used[a] {
			best.used[a] = true
			return a, best.prefix, true
		}
	}
	return netip.Addr{}, netip.Prefix{}, false // unreachable: the block had room
}

// free counts the addresses open blocks still have.
func (p *pool) free() uint64 {
	var n uint64
	for _, pb := range p.blocks {
		if pb.open {
			n += netx.Size(pb.prefix) - uint64(len(pb.used))
		}
	}
	return n
}

// surplus lists empty open blocks that can be given back while at least
// keep free addresses stay and one empty block is kept as a spare
// (hysteresis: a pod deleted and re-created does not cost two store
// writes). Highest prefixes first, so allocations stay low and packed.
func (p *pool) surplus(keep uint64) []netip.Prefix {
	var empty []*poolBlock
	for _, pb := range p.blocks {
		if pb.open && len(pb.used) == 0 {
			empty = append(empty, pb)
		}
	}
	slices.SortFunc(empty, func(a, b *poolBlock) int { return cmp.Compare(0, netx.Less(a.prefix, b.prefix)) })
	free := p.free()
	var out []netip.Prefix
	for _, pb := range empty[:max(len(empty)-1, 0)] {
		size := netx.Size(pb.prefix)
		if free-size < keep {
			break
		}
		free -= size
		out = append(out, pb.prefix)
	}
	return out
}

// close stops new allocations from b (being released).
func (p *pool) close(b netip.Prefix) {
	if pb := p.blocks[b]; pb != nil {
		pb.open = false
	}
}

// empty reports whether b holds no address in use.
func (p *pool) empty(b netip.Prefix) bool {
	pb := p.blocks[b]
	return pb == nil || len(pb.used) == 0
}
