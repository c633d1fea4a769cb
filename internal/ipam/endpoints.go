package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/terrane-net/terrane/internal/netx"
)

// EndpointRequest asks for one address.
type EndpointRequest struct {
	// ID identifies the endpoint (pod interface or VM port); asking again
	// with the same ID returns the same address.
	ID        string
	Host      string
	Namespace string
	// Network is an explicit choice; empty lets the allocator select.
	Network string
	// Addr asks for a specific address; it must lie in the host's group.
	Addr netip.Addr
	// Since is the time of the request, recorded with the endpoint.
	Since time.Time
}

// Endpoint is an allocated address.
type Endpoint struct {
	ID        string       `json:"id"`
	Network   string       `json:"network"`
	Host      string       `json:"host"`
	Namespace string       `json:"namespace,omitempty"`
	Addr      netip.Addr   `json:"addr"`
	Block     netip.Prefix `json:"block"`
	Since     time.Time    `json:"since,omitzero"`
}

// AllocateEndpoint gives the endpoint an address on its host. The network is
// the one requested, else the namespace's default network, else the first
// network the namespace may use that has room.
func (a *Allocator) AllocateEndpoint(req EndpointRequest) (Endpoint, []Change, error) {
	if req.ID == "" {
		return Endpoint{}, nil, fmt.Errorf("allocate endpoint: %w: id is required", ErrInvalid)
	}
	if e := a.s.endpoints[req.ID]; e != nil {
		return a.existing(e, req)
	}
	h := a.s.hosts[req.Host]
	if h == nil {
		return Endpoint{}, nil, fmt.Errorf("allocate endpoint %s: %w: host %q has not joined", req.ID, ErrNotFound, req.Host)
	}
	nets, err := a.candidateNetworks(req, h)
	if err != nil {
		return Endpoint{}, nil, fmt.Errorf("allocate endpoint %s: %w", req.ID, err)
	}
	var errs []error
	for _, ns := range nets {
		tx := &tx{s: a.s}
		ep, err := a.allocateIn(tx, ns, h, req)
		if err == nil {
			return ep, tx.changes, nil
		}
		tx.rollback()
		errs = append(errs, fmt.Errorf("network %s: %w", ns.net.Name, err))
		if !errors.Is(err, ErrExhausted) && !errors.Is(err, ErrRouteBudget) {
			break
		}
	}
	return Endpoint{}, nil, fmt.Errorf("allocate endpoint %s on %s: %w", req.ID, req.Host, errors.Join(errs...))
}

func (a *Allocator) existing(e *endpoint, req EndpointRequest) (Endpoint, []Change, error) {
	ep := e.public()
	if (req.Host != "" && req.Host != e.host) || (req.Network != "" && req.Network != e.network) || (req.Addr.IsValid() && req.Addr != e.addr) {
		return Endpoint{}, nil, fmt.Errorf("allocate endpoint %s: %w: it already has %s on host %s in network %s; release it first", req.ID, ErrConflict, e.addr, e.host, e.network)
	}
	return ep, nil, nil
}

func (e *endpoint) public() Endpoint {
	return Endpoint{ID: e.id, Network: e.network, Host: e.host, Namespace: e.namespace, Addr: e.addr, Block: e.block.prefix, Since: e.since}
}

func (a *Allocator) candidateNetworks(req EndpointRequest, h *host) ([]*netState, error) {
	nets, err := CandidateNetworks(a.s.topo, NetworkChoice{Requested: req.Network, Namespace: req.Namespace, NamespaceDefault: a.s.nsNetworks[req.Namespace], HostGroups: leafPaths(h)})
	if err != nil {
		return nil, err
	}
	out := make([]*netState, len(nets))
	for i, n := range nets {
		out[i] = a.s.nets[n.Name]
	}
	return out, nil
}

func (a *Allocator) allocateIn(tx *tx, ns *netState, h *host, req EndpointRequest) (Endpoint, error) {
	var b *block
	var addr netip.Addr
	if req.Addr.IsValid() {
		var err error
		if b, err = a.blockFor(tx, ns, h, req.Addr.Unmap()); err != nil {
			return Endpoint{}, err
		}
		addr = req.Addr.Unmap()
	} else {
		var ok bool
		if addr, b, ok = h.pool(ns.net.Name).next(); !ok {
			if _, err := a.claimBlock(tx, ns, h, IssuerServer); err != nil {
				return Endpoint{}, err
			}
			if addr, b, ok = h.pool(ns.net.Name).next(); !ok {
				return Endpoint{}, fmt.Errorf("internal error: host %s has no room after claiming a block", h.name)
			}
		}
	}
	c := Change{Kind: EndpointAdded, Network: ns.net.Name, Host: h.name, Endpoint: req.ID, Namespace: req.Namespace, Addr: addr, Prefix: b.prefix, Since: req.Since}
	if err := tx.do(c); err != nil {
		return Endpoint{}, err
	}
	return a.s.endpoints[req.ID].public(), nil
}

// blockFor finds or claims the block that holds a requested address.
func (a *Allocator) blockFor(tx *tx, ns *netState, h *host, addr netip.Addr) (*block, error) {
	leaf := h.leaf[ns.net.Name]
	bp := netip.PrefixFrom(addr, ns.net.BlockBits).Masked()
	if !ns.net.CIDR.Contains(addr) {
		return nil, fmt.Errorf("%w: address %s is outside network %s (%s)", ErrInvalid, addr, ns.net.Name, ns.net.CIDR)
	}
	if b := ns.blocks[bp]; b != nil {
		if b.host != h.name {
			return nil, fmt.Errorf("%w: address %s is in block %s of host %s", ErrConflict, addr, bp, b.host)
		}
		if b.issuer != IssuerServer {
			return nil, fmt.Errorf("%w: address %s is in block %s, from which host %s's agent gives pods addresses; ask for an address in a free block or in one of the server's blocks", ErrConflict, addr, bp, h.name)
		}
		if b.group != leaf {
			// A drained block only empties: new endpoints go to the
			// host's current group.
			return nil, fmt.Errorf("%w: address %s is in block %s of group %s, which host %s has left for %s", ErrInvalid, addr, bp, b.group.Path, h.name, leaf.Path)
		}
		if b.isUsed(addr) {
			return nil, fmt.Errorf("%w: address %s is already allocated", ErrConflict, addr)
		}
		return b, nil
	}
	if !netx.CoveredBy(bp, ns.owned[leaf]) {
		return nil, fmt.Errorf("%w: address %s is outside group %s of host %s (its prefixes: %s)", ErrInvalid, addr, leaf.Path, h.name, prefixList(ns.owned[leaf]))
	}
	if err := a.claim(tx, ns, leaf, Change{Kind: BlockClaimed, Network: ns.net.Name, Group: leaf.Path, Host: h.name, Prefix: bp, Issuer: IssuerServer}); err != nil {
		return nil, err
	}
	return ns.blocks[bp], nil
}

// ReleaseEndpoint frees the endpoint's address. Releasing an unknown
// endpoint is not an error and changes nothing, so releases can be retried.
// A block it leaves empty is released unless it is the host's last empty
// block in its group.
func (a *Allocator) ReleaseEndpoint(id string) ([]Change, error) {
	e := a.s.endpoints[id]
	if e == nil {
		return nil, nil
	}
	tx := &tx{s: a.s}
	b := e.block
	err := tx.do(releaseChange(e))
	if err == nil {
		err = a.releaseEmpty(tx, e.network, b)
	}
	if err != nil {
		tx.rollback()
		return nil, err
	}
	return tx.changes, nil
}

func releaseChange(e *endpoint) Change {
	return Change{Kind: EndpointReleased, Network: e.network, Host: e.host, Endpoint: e.id, Namespace: e.namespace, Addr: e.addr, Prefix: e.block.prefix, Since: e.since}
}
