package agent

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
)

// VM ports are endpoints the server allocated for this host (through its
// API, e.g. for an OpenStack Neutron port). Whoever plugs the VM in creates
// the port's host-side device under the name api.VMPortDevice(id); the
// agent finds it, prepares it like a pod's veth and routes the port's
// address to it. The address lies in one of the server's blocks on this
// host, so peers already route it here.
type vmPort struct {
	ep    ipam.Endpoint
	dev   string
	wired bool
	// since is when wired last changed (or the port appeared).
	since time.Time
}

// setPortsLocked takes the host's VM ports from a snapshot. a.mu is held.
func (a *Agent) setPortsLocked(eps []ipam.Endpoint) {
	want := map[string]bool{}
	for _, e := range eps {
		want[e.ID] = true
		if vp := a.ports[e.ID]; vp != nil && vp.ep == e {
			continue
		}
		a.ports[e.ID] = &vmPort{ep: e, dev: api.VMPortDevice(e.ID), since: time.Now().UTC().Truncate(time.Second)}
		a.touchLocked()
	}
	for id := range a.ports {
		if !want[id] {
			delete(a.ports, id)
			a.touchLocked()
		}
	}
}

// checkPorts looks for each VM port's device; a port whose device appeared
// is prepared and routed, one whose device went is unrouted.
func (a *Agent) checkPorts(ctx context.Context) {
	a.mu.Lock()
	ports := slices.Collect(maps.Values(a.ports))
	a.mu.Unlock()
	changed := false
	for _, vp := range ports {
		ok, err := a.cfg.HostOps.LinkExists(vp.dev)
		if err != nil {
			a.log.Warn("looking for a VM port's device", "port", vp.ep.ID, "device", vp.dev, "err", err)
			continue
		}
		if ok && !vp.wired {
			if err := a.prepareVeth(vp.dev); err != nil {
				a.log.Warn("preparing a VM port's device", "port", vp.ep.ID, "device", vp.dev, "err", err)
				continue
			}
		}
		a.mu.Lock()
		if cur := a.ports[vp.ep.ID]; cur == vp && vp.wired != ok {
			vp.wired, vp.since, changed = ok, time.Now().UTC().Truncate(time.Second), true
			a.touchLocked()
			a.log.Info("VM port", "port", vp.ep.ID, "addr", vp.ep.Addr, "device", vp.dev, "wired", ok)
		}
		a.mu.Unlock()
	}
	if changed {
		if _, err := a.syncRoutes(ctx); err != nil {
			a.log.Warn("routing VM ports", "err", err)
		}
	}
}

// portLoop checks the VM ports' devices every second while the host has
// any: a VM plugged in is routed within about a second.
func (a *Agent) portLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		n := len(a.ports)
		a.mu.Unlock()
		if n > 0 {
			a.checkPorts(ctx)
		}
	}
}
