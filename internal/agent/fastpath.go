package agent

import (
	"context"
	"maps"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/dataplane"
)

// FastPath is the optional eBPF accelerator (cmd/terrane's adapter over
// internal/dataplane/ebpf). It only shortcuts what the routes already do:
// the routing table stays the source of truth, and a pod missing from the
// fast path is still reached through its route.
type FastPath interface {
	// AddPod sends addr straight to the pod behind hostVeth (interface
	// ifName in namespace netns); adding it again updates it.
	AddPod(addr netip.Addr, hostVeth, netns, ifName string) error
	// DelPod forgets addr.
	DelPod(addr netip.Addr) error
	// SetNetworks sets the Terrane networks (a pod's packet to one of them
	// that is not a local pod goes to the uplink).
	SetNetworks(prefixes []netip.Prefix) error
	// StandAside keeps addr's traffic, both ways, on the host's IP stack,
	// where nftables enforces its policy: for a pod that policy isolates.
	StandAside(addr netip.Addr) error
}

// fastPod is what the fast path was given for a pod; aside: stood aside for
// policy.
type fastPod struct {
	hostVeth, netns, ifName string
	aside                   bool
}

// fastState is owned by the sync loop.
type fastState struct {
	pods map[netip.Addr]fastPod
	nets []netip.Prefix
}

// syncFast brings the fast path in line with the endpoints and networks,
// after the routes were applied: a pod is added only once its route is in
// the table (a pod whose add fails is retried at the next sync), one
// released is removed.
func (a *Agent) syncFast(ctx context.Context, st dataplane.State, routesErr error) {
	fp := a.cfg.FastPath
	if fp == nil {
		return
	}
	if a.fast.pods == nil {
		a.fast.pods = map[netip.Addr]fastPod{}
	}
	// The policy enforcer must not change which pods are isolated while the
	// fast path is brought in line (it stands pods aside itself first).
	a.pol.mu.Lock()
	defer a.pol.mu.Unlock()
	isolated := a.isolatedLocked()
	a.mu.Lock()
	want := map[netip.Addr]fastPod{}
	for _, e := range a.eps {
		if e.Addr.Is4() {
			want[e.Addr] = fastPod{e.HostVeth, e.Netns, e.IfName, isolated[e.Addr]}
		}
	}
	var nets []netip.Prefix
	if a.topo != nil {
		for _, n := range a.topo.Networks {
			nets = append(nets, n.CIDR)
		}
	}
	a.mu.Unlock()

	if !slices.Equal(nets, a.fast.nets) {
		if err := fp.SetNetworks(nets); err != nil {
			a.log.Warn("ebpf fast path: networks", "err", err)
		} else {
			a.fast.nets = nets
		}
	}
	// Which pods' routes are in place: all the desired ones after a clean
	// sync, else those the table holds.
	routed := map[netip.Addr]bool{}
	if routesErr == nil {
		for _, r := range st.Routes {
			if r.Dev != "" && r.Dst.IsSingleIP() {
				routed[r.Dst.Addr()] = true
			}
		}
	} else if lister, ok := a.cfg.Dataplane.(interface {
		Routes(context.Context) ([]dataplane.Route, error)
	}); ok {
		rs, _ := lister.Routes(ctx)
		for _, r := range rs {
			if r.Dev != "" && r.Dst.IsSingleIP() {
				routed[r.Dst.Addr()] = true
			}
		}
	}
	for _, addr := range slices.SortedFunc(maps.Keys(a.fast.pods), netip.Addr.Compare) {
		if _, ok := want[addr]; ok {
			continue
		}
		if err := fp.DelPod(addr); err != nil {
			a.log.Warn("ebpf fast path: remove pod", "addr", addr, "err", err)
			continue
		}
		delete(a.fast.pods, addr)
	}
	for _, addr := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		p := want[addr]
		if old, ok := a.fast.pods[addr]; (ok && old == p) || (!routed[addr] && !p.aside) {
			continue
		}
		if p.aside {
			if err := fp.StandAside(addr); err != nil {
				a.log.Warn("ebpf fast path: stand aside for an isolated pod", "addr", addr, "err", err)
				continue
			}
			a.fast.pods[addr] = p
			continue
		}
		if err := fp.AddPod(addr, p.hostVeth, p.netns, p.ifName); err != nil {
			a.log.Warn("ebpf fast path: add pod", "addr", addr, "veth", p.hostVeth, "err", err)
			continue
		}
		a.fast.pods[addr] = p
	}
}
