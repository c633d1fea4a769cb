package ipam

import (
	"cmp"
	"fmt"
	"maps"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
)

// Issuer names who hands out a block's addresses. Every block has exactly
// one issuer for its whole life, so two allocators never draw from the same
// block: the host's agent (pods, through CNI, from node-local state with no
// control-plane write) or the server (VM ports, through the API, each a
// store write). Both kinds of block belong to the host and are routed to it
// alike; they differ only in who may allocate inside them.
type Issuer string

const (
	// IssuerAgent blocks are claimed by the host's agent ahead of demand
	// (POST /v1/hosts/{host}/blocks); the server never allocates in them.
	IssuerAgent Issuer = "agent"
	// IssuerServer blocks are claimed by the server when an endpoint is
	// allocated through its API; the agent never allocates in them.
	IssuerServer Issuer = "server"
)

// ParseIssuer parses "agent" or "server".
func ParseIssuer(s string) (Issuer, error) {
	switch Issuer(s) {
	case IssuerAgent, IssuerServer:
		return Issuer(s), nil
	}
	return "", fmt.Errorf("issuer %q: want agent or server", s)
}

// Pool is the per-host allocator: one host's addresses in one network, from
// the blocks one issuer holds, and which of them are in use. The agent keeps
// one per network for its pods; the Allocator keeps one per host and network
// for the server's VM ports; the planner allocates through the Allocator. So
// every address in Terrane is picked by Pool.Next.
//
// Blocks are open (new addresses may come from them) or closed (a block of
// a group the host has left, or one being released: its addresses in use
// stay until they are released). A Pool is pure and not safe for concurrent
// use.
type Pool struct {
	blocks map[netip.Prefix]*block
	// roomy holds the open blocks with a free address, so Next never scans
	// the full ones.
	roomy map[*block]bool
}

// NewPool returns an empty pool.
func NewPool() *Pool {
	return &Pool{blocks: map[netip.Prefix]*block{}, roomy: map[*block]bool{}}
}

func newBlock(p netip.Prefix) *block {
	return &block{prefix: p, used: make([]uint64, (netx.Size(p)+63)/64)}
}

// adopt puts b (claimed by the Allocator) in the pool.
func (p *Pool) adopt(b *block, open bool) {
	p.blocks[b.prefix] = b
	p.setOpen(b, open)
}

func (p *Pool) setOpen(b *block, open bool) {
	b.open = open
	p.refresh(b)
}

// refresh keeps roomy in step with b's fill and state.
func (p *Pool) refresh(b *block) {
	if b.open && b.hasRoom() && p.blocks[b.prefix] == b {
		p.roomy[b] = true
	} else {
		delete(p.roomy, b)
	}
}

// Open adds block b (just claimed) or opens it again.
func (p *Pool) Open(b netip.Prefix) {
	pb := p.blocks[b]
	if pb == nil {
		pb = newBlock(b)
		p.blocks[b] = pb
	}
	p.setOpen(pb, true)
}

// Close stops new addresses from block b (being released, or drained).
func (p *Pool) Close(b netip.Prefix) {
	if pb := p.blocks[b]; pb != nil {
		p.setOpen(pb, false)
	}
}

// Remove drops block b; it must hold no address in use.
func (p *Pool) Remove(b netip.Prefix) {
	if pb := p.blocks[b]; pb != nil && pb.count == 0 {
		delete(p.roomy, pb)
		delete(p.blocks, b)
	}
}

// SetOwned makes the open blocks exactly owned: blocks no longer owned are
// dropped when empty and closed otherwise. It returns the prefixes dropped.
func (p *Pool) SetOwned(owned []netip.Prefix) (dropped []netip.Prefix) {
	want := map[netip.Prefix]bool{}
	for _, b := range owned {
		want[b] = true
		p.Open(b)
	}
	for _, b := range slices.SortedFunc(maps.Keys(p.blocks), netx.Less) {
		if want[b] {
			continue
		}
		if pb := p.blocks[b]; pb.count == 0 {
			p.Remove(b)
			dropped = append(dropped, b)
		} else {
			p.Close(b)
		}
	}
	return dropped
}

// Mark records addr in block as in use (an allocation made before, read
// back after a restart). A block the pool does not hold is added closed: it
// stays until its last address is released.
func (p *Pool) Mark(addr netip.Addr, block netip.Prefix) error {
	if !block.Contains(addr) {
		return fmt.Errorf("address %s is not in block %s", addr, block)
	}
	pb := p.blocks[block]
	if pb == nil {
		pb = newBlock(block)
		p.blocks[block] = pb
	}
	if pb.isUsed(addr) {
		return fmt.Errorf("address %s is already in use", addr)
	}
	p.take(pb, addr)
	return nil
}

// Unmark frees addr in block; freeing a free address does nothing.
func (p *Pool) Unmark(addr netip.Addr, block netip.Prefix) {
	if pb := p.blocks[block]; pb != nil && block.Contains(addr) && pb.isUsed(addr) {
		p.give(pb, addr)
	}
}

func (p *Pool) take(b *block, addr netip.Addr) {
	i := netx.Offset(b.prefix.Addr(), addr, 0)
	b.used[i/64] |= 1 << (i % 64)
	b.count++
	p.refresh(b)
}

func (p *Pool) give(b *block, addr netip.Addr) {
	i := netx.Offset(b.prefix.Addr(), addr, 0)
	b.used[i/64] &^= 1 << (i % 64)
	b.count--
	p.refresh(b)
}

// next is the address the pool hands out next, without taking it: the
// lowest free address of the fullest open block with room (the lowest
// block among equals). Filling the fullest block first lets the emptiest
// ones drain, so they can be given back.
func (p *Pool) next() (netip.Addr, *block, bool) {
	var best *block
	for b := range p.roomy {
		if best == nil || b.count > best.count || (b.count == best.count && netx.Less(b.prefix, best.prefix) < 0) {
			best = b
		}
	}
	if best == nil {
		return netip.Addr{}, nil, false
	}
	return best.firstFree(), best, true
}

// Allocate takes the next address (see next); ok is false when no open
// block has room.
func (p *Pool) Allocate() (addr netip.Addr, block netip.Prefix, ok bool) {
	addr, b, ok := p.next()
	if !ok {
		return netip.Addr{}, netip.Prefix{}, false
	}
	p.take(b, addr)
	return addr, b.prefix, true
}

// Free counts the addresses the open blocks still have.
func (p *Pool) Free() uint64 {
	var n uint64
	for b := range p.roomy {
		n += netx.Size(b.prefix) - uint64(b.count)
	}
	return n
}

// Used counts the addresses in use in block b.
func (p *Pool) Used(b netip.Prefix) int {
	if pb := p.blocks[b]; pb != nil {
		return pb.count
	}
	return 0
}

// Empty reports whether block b holds no address in use.
func (p *Pool) Empty(b netip.Prefix) bool { return p.Used(b) == 0 }

// Blocks lists the pool's blocks, sorted.
func (p *Pool) Blocks() []netip.Prefix { return slices.SortedFunc(maps.Keys(p.blocks), netx.Less) }

// IsOpen reports whether new addresses may come from block b.
func (p *Pool) IsOpen(b netip.Prefix) bool {
	pb := p.blocks[b]
	return pb != nil && pb.open
}

// Surplus lists empty open blocks that can be given back while at least
// keep free addresses stay and one empty block is kept as a spare
// (hysteresis: a pod deleted and re-created costs no store write). Highest
// prefixes first, so allocations stay low and packed.
func (p *Pool) Surplus(keep uint64) []netip.Prefix {
	var empty []*block
	for _, b := range p.blocks {
		if b.open && b.count == 0 {
			empty = append(empty, b)
		}
	}
	slices.SortFunc(empty, func(x, y *block) int { return cmp.Compare(0, netx.Less(x.prefix, y.prefix)) })
	free := p.Free()
	var out []netip.Prefix
	for _, b := range empty[:max(len(empty)-1, 0)] {
		size := netx.Size(b.prefix)
		if free-size < keep {
			break
		}
		free -= size
		out = append(out, b.prefix)
	}
	return out
}

func (b *block) hasRoom() bool { return uint64(b.count) < netx.Size(b.prefix) }

func (b *block) isUsed(addr netip.Addr) bool {
	i := netx.Offset(b.prefix.Addr(), addr, 0)
	return b.used[i/64]&(1<<(i%64)) != 0
}

func (b *block) firstFree() netip.Addr {
	size := netx.Size(b.prefix)
	for w, word := range b.used {
		if ^word == 0 {
			continue
		}
		i := uint64(w)*64 + uint64(bits.TrailingZeros64(^word))
		if i < size {
			return netx.AddOffset(b.prefix.Addr(), i, 0)
		}
	}
	return netip.Addr{}
}
