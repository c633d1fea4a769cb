package server

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/terrane-net/terrane/internal/ipam"
)

// Host operations shared by the API (PUT and DELETE /v1/hosts/{host}) and
// the controllers that drive the state from outside it (internal/kube's
// Node controller): the same allocator operations, the same commits.

// Hosts lists the registered hosts (none before a topology is applied).
func (s *State) Hosts(ctx context.Context) ([]ipam.HostInfo, error) {
	var hosts []ipam.HostInfo
	err := s.View(ctx, func(al *ipam.Allocator, _ *topologyRecord) error {
		if al != nil {
			hosts = al.Hosts()
		}
		return nil
	})
	return hosts, err
}

// RegisterHost registers a host or updates its address and labels: a host
// whose labels changed moves to its new leaf groups as ipam.AddHost allows
// (ipam.ErrNoGroup when none admits it: it then stays where it is).
func (s *State) RegisterHost(ctx context.Context, h ipam.HostSpec) ([]ipam.Change, error) {
	h.IP = h.IP.Unmap()
	return s.Do(ctx, func(al *ipam.Allocator) ([]ipam.Change, error) { return al.AddHost(h) })
}

// AddressesInUse counts what the host's agent last reported in use on it:
// addresses of live pods (not those whose network namespace it found gone)
// and VM ports it wired. A host with any is not removed by a controller.
func (s *State) AddressesInUse(ctx context.Context, host string) (int, error) {
	reports, err := s.Reports(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range reports {
		if r.Host != host {
			continue
		}
		for _, ad := range r.Addresses {
			if !ad.Orphaned {
				n++
			}
		}
		for _, p := range r.Ports {
			if p.Wired {
				n++
			}
		}
	}
	return n, nil
}

// RemoveHost releases the host's endpoints, then its blocks, one
// transaction each (a host with many VM ports would not fit one store
// transaction), then forgets the host.
func (s *State) RemoveHost(ctx context.Context, host string) ([]ipam.Change, error) {
	var ids []string
	if err := s.View(ctx, func(al *ipam.Allocator, _ *topologyRecord) error {
		if al != nil {
			for _, e := range al.Endpoints() {
				if e.Host == host {
					ids = append(ids, e.ID)
				}
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var changes []ipam.Change
	for _, id := range ids {
		ch, err := s.Do(ctx, func(al *ipam.Allocator) ([]ipam.Change, error) {
			if e, ok := al.Endpoint(id); !ok || e.Host != host {
				return nil, nil // already gone
			}
			return al.ReleaseEndpoint(id)
		})
		if err != nil {
			return changes, fmt.Errorf("remove host %s: %w", host, err)
		}
		changes = append(changes, ch...)
	}
	type blockRef struct {
		network string
		prefix  netip.Prefix
	}
	var blocks []blockRef
	if err := s.View(ctx, func(al *ipam.Allocator, _ *topologyRecord) error {
		if al != nil {
			for _, n := range al.Topology().Networks {
				for _, b := range al.Blocks(n.Name) {
					if b.Host == host {
						blocks = append(blocks, blockRef{n.Name, b.Prefix})
					}
				}
			}
		}
		return nil
	}); err != nil {
		return changes, err
	}
	for _, b := range blocks {
		ch, err := s.Do(ctx, func(al *ipam.Allocator) ([]ipam.Change, error) {
			if bi, ok := al.Block(b.network, b.prefix); !ok || bi.Host != host {
				return nil, nil // already gone
			}
			return al.ReleaseBlock(host, b.network, b.prefix)
		})
		if err != nil {
			return changes, fmt.Errorf("remove host %s: %w", host, err)
		}
		changes = append(changes, ch...)
	}
	ch, err := s.Do(ctx, func(al *ipam.Allocator) ([]ipam.Change, error) {
		return al.RemoveHost(host)
	})
	if err != nil {
		return changes, err
	}
	return append(changes, ch...), nil
}
