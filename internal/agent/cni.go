package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane"
	"github.com/terrane-net/terrane/internal/ipam"
)

var _ cniapi.Agent = (*Agent)(nil)

func cniErr(code uint, format string, args ...any) error {
	return &cniapi.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Status reports whether ADDs can be served.
func (a *Agent) Status(context.Context) cniapi.StatusResponse {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ready != "" {
		return cniapi.StatusResponse{Reason: a.ready}
	}
	return cniapi.StatusResponse{Ready: true}
}

// Add gives the attachment an address from a block the host owns, routes
// it to the host veth and records it; the same attachment again gets the
// same address.
func (a *Agent) Add(ctx context.Context, req cniapi.AddRequest) (cniapi.AddResponse, error) {
	switch {
	case req.ContainerID == "" || req.IfName == "":
		return cniapi.AddResponse{}, cniErr(cniapi.CodeInvalid, "containerID and ifName are required")
	case req.HostVeth != cniapi.HostVeth(req.ContainerID, req.IfName):
		return cniapi.AddResponse{}, cniErr(cniapi.CodeInvalid, "hostVeth %q: want %q (cniapi.HostVeth) for %s", req.HostVeth, cniapi.HostVeth(req.ContainerID, req.IfName), req.ID())
	}
	if st := a.Status(ctx); !st.Ready {
		return cniapi.AddResponse{}, cniErr(cniapi.CodeTryAgainLater, "the terrane agent is not ready: %s", st.Reason)
	}
	if err := a.prepareVeth(req.HostVeth); err != nil {
		return cniapi.AddResponse{}, err
	}
	e, created, err := a.allocate(ctx, req)
	if err != nil {
		return cniapi.AddResponse{}, err
	}
	if err := a.enforceBeforeReachable(ctx, e); err != nil {
		if created {
			if rerr := a.release(ctx, e); rerr != nil {
				a.log.Error("undoing a failed ADD", "attachment", e.ID(), "err", rerr)
			}
		}
		return cniapi.AddResponse{}, cniErr(cniapi.CodeTryAgainLater, "%s: policy not in place: %v", e.ID(), err)
	}
	if err := a.routed(ctx, e); err != nil {
		if created {
			if rerr := a.release(ctx, e); rerr != nil {
				a.log.Error("undoing a failed ADD", "attachment", e.ID(), "err", rerr)
			}
		}
		return cniapi.AddResponse{}, err
	}
	a.mu.Lock()
	bg, gso := a.runCtx, a.gso
	a.mu.Unlock()
	if bg != nil {
		a.ensureFreeAsync(bg, e.Network)
	}
	return cniapi.AddResponse{Network: e.Network, Addr: netip.PrefixFrom(e.Addr, e.Addr.BitLen()), Gateway: cniapi.GatewayV4, GSOMaxSize: gso}, nil
}

// allocate finds the attachment's endpoint or makes and records a new one:
// from the first candidate network (ipam.CandidateNetworks), claiming a
// block there when the claim ahead did not keep up, and from the next only
// when that network grants none.
func (a *Agent) allocate(ctx context.Context, req cniapi.AddRequest) (e *endpoint, created bool, err error) {
	a.mu.Lock()
	e, changed, nets, err := a.lookupLocked(req)
	a.mu.Unlock()
	switch {
	case err != nil:
		return nil, false, err
	case e != nil && changed:
		if err := a.local.put(ctx, e); err != nil {
			return nil, false, err
		}
		fallthrough
	case e != nil:
		return e, false, nil
	}
	var errs []error
	for _, n := range nets {
		for attempt := 0; e == nil; attempt++ {
			a.mu.Lock()
			e, created = a.takeLocked(req, n)
			a.mu.Unlock()
			if e != nil || attempt > 0 {
				break
			}
			if err := a.claim(ctx, n); err != nil {
				errs = append(errs, err)
				break
			}
		}
		if e != nil {
			break
		}
	}
	if e == nil {
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("no free address in network %s even after a claim", strings.Join(nets, " or ")))
		}
		return nil, false, cniErr(cniapi.CodeTryAgainLater, "host %s has no free address: %v", a.cfg.Host, errors.Join(errs...))
	}
	if !created {
		return e, false, nil // a concurrent ADD of the same attachment made it
	}
	if err := a.local.put(ctx, e); err != nil {
		a.mu.Lock()
		a.forgetLocked(e)
		a.mu.Unlock()
		return nil, false, err
	}
	return e, true, nil
}

// lookupLocked is the attachment's endpoint if it has one (changed: its
// netns or veth moved, to record), else the candidate networks for a new
// one. a.mu is held.
func (a *Agent) lookupLocked(req cniapi.AddRequest) (e *endpoint, changed bool, nets []string, err error) {
	if old := a.eps[req.ID()]; old != nil {
		if req.Network != "" && req.Network != old.Network {
			return nil, false, nil, cniErr(cniapi.CodeInvalid, "%s already has %s in network %s; delete it before asking for network %s", req.ID(), old.Addr, old.Network, req.Network)
		}
		changed = old.Netns != req.Netns || old.HostVeth != req.HostVeth
		old.Netns, old.HostVeth = req.Netns, req.HostVeth
		return old, changed, nil, nil
	}
	nets, err = a.chooseNetworks(req)
	return nil, false, nets, err
}

// takeLocked gives the attachment an address of network n from the pool
// (created), or returns the endpoint a concurrent ADD of it made, or nil
// when n's blocks are full. a.mu is held.
func (a *Agent) takeLocked(req cniapi.AddRequest, n string) (e *endpoint, created bool) {
	if old := a.eps[req.ID()]; old != nil {
		return old, false
	}
	addr, block, ok := a.pool(n).Allocate()
	if !ok {
		return nil, false
	}
	e = &endpoint{Attachment: req.Attachment, Network: n, Addr: addr, Block: block, Netns: req.Netns,
		HostVeth: req.HostVeth, PodNamespace: req.PodNamespace, PodName: req.PodName, PodUID: req.PodUID, Since: time.Now(),
		policyPending: a.enforcing() && req.PodName != ""}
	a.eps[e.ID()] = e
	a.touchLocked()
	return e, true
}

// forgetLocked drops e and frees its address. a.mu is held.
func (a *Agent) forgetLocked(e *endpoint) {
	a.touchLocked()
	delete(a.eps, e.ID())
	delete(a.rep.orphaned, e.ID())
	a.pool(e.Network).Unmark(e.Addr, e.Block)
}

// chooseNetworks lists the networks a new attachment may get its address
// from, in order (ipam.CandidateNetworks, the one network choice), keeping
// those pods can be wired in: IPv4 only so far. a.mu is held.
func (a *Agent) chooseNetworks(req cniapi.AddRequest) ([]string, error) {
	var nsDefault string
	if a.snap != nil {
		nsDefault = a.snap.Namespaces[req.PodNamespace]
	}
	nets, err := ipam.CandidateNetworks(a.topo, ipam.NetworkChoice{Requested: req.Network, Namespace: req.PodNamespace, NamespaceDefault: nsDefault, HostGroups: a.self.Groups})
	if err != nil {
		return nil, cniErr(cniapi.CodeInvalid, "host %s: %v", a.cfg.Host, err)
	}
	var out []string
	for _, n := range nets {
		if n.CIDR.Addr().Is4() {
			out = append(out, n.Name)
		}
	}
	if len(out) == 0 {
		return nil, cniErr(cniapi.CodeInvalid, "network %s is IPv6: pods are wired for IPv4 networks only so far", nets[0].Name)
	}
	return out, nil
}

// routed programs the endpoint's route and waits until it is in place.
func (a *Agent) routed(ctx context.Context, e *endpoint) error {
	diff, err := a.syncRoutes(ctx)
	if err == nil {
		return nil
	}
	dst := netip.PrefixFrom(e.Addr, e.Addr.BitLen())
	if slices.ContainsFunc(diff.Added, func(r dataplane.Route) bool { return r.Dst == dst }) {
		return nil // another route failed, not this one
	}
	return fmt.Errorf("route %s to %s: %w", dst, e.HostVeth, err)
}

// Del releases the attachment's address; one the agent does not hold is
// not an error.
func (a *Agent) Del(ctx context.Context, at cniapi.Attachment) error {
	a.mu.Lock()
	e := a.eps[at.ID()]
	a.mu.Unlock()
	if e == nil {
		return nil
	}
	return a.release(ctx, e)
}

// release forgets e, frees its address and removes its route.
func (a *Agent) release(ctx context.Context, e *endpoint) error {
	if err := a.local.remove(ctx, e); err != nil {
		return err
	}
	a.mu.Lock()
	a.forgetLocked(e)
	a.mu.Unlock()
	a.requestSync()
	a.kickPolicy()
	a.log.Info("endpoint released", "attachment", e.ID(), "addr", e.Addr)
	return nil
}

// Check returns what the agent holds for an attachment.
func (a *Agent) Check(_ context.Context, at cniapi.Attachment) (cniapi.CheckResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.eps[at.ID()]
	if e == nil {
		return cniapi.CheckResponse{}, cniErr(cniapi.CodeNotFound, "the terrane agent holds no address for %s", at.ID())
	}
	return cniapi.CheckResponse{Network: e.Network, Addr: netip.PrefixFrom(e.Addr, e.Addr.BitLen()), Gateway: cniapi.GatewayV4, HostVeth: e.HostVeth, Netns: e.Netns}, nil
}

// GC releases every attachment the runtime no longer has, and deletes
// their host veths.
func (a *Agent) GC(ctx context.Context, req cniapi.GCRequest) (cniapi.GCResponse, error) {
	valid := map[string]bool{}
	for _, v := range req.Valid {
		valid[v.ID()] = true
	}
	a.mu.Lock()
	var stale []*endpoint
	for _, e := range a.eps {
		if !valid[e.ID()] {
			stale = append(stale, e)
		}
	}
	a.mu.Unlock()
	slices.SortFunc(stale, func(x, y *endpoint) int { return strings.Compare(x.ID(), y.ID()) })
	resp := cniapi.GCResponse{Released: []cniapi.Attachment{}}
	var errs []error
	for _, e := range stale {
		if err := a.cfg.HostOps.DeleteLink(e.HostVeth); err != nil {
			errs = append(errs, err)
		}
		if err := a.release(ctx, e); err != nil {
			errs = append(errs, err)
			continue
		}
		resp.Released = append(resp.Released, e.Attachment)
	}
	return resp, errors.Join(errs...)
}

// reconcile releases endpoints whose pod is gone: its network namespace no
// longer exists (the runtime deleted the pod while the agent was down and
// the plugin's DEL never reached it, or the host rebooted).
func (a *Agent) reconcile(ctx context.Context) {
	a.mu.Lock()
	var gone []*endpoint
	for _, e := range a.eps {
		if e.Netns == "" || !a.cfg.NetnsExists(e.Netns) {
			gone = append(gone, e)
		}
	}
	a.mu.Unlock()
	for _, e := range gone {
		if err := a.cfg.HostOps.DeleteLink(e.HostVeth); err != nil {
			a.log.Warn("deleting the veth of a gone pod", "attachment", e.ID(), "err", err)
		}
		if err := a.release(ctx, e); err != nil {
			a.log.Warn("releasing a gone pod", "attachment", e.ID(), "err", err)
			a.mu.Lock()
			if _, ok := a.rep.orphaned[e.ID()]; !ok {
				a.rep.orphaned[e.ID()] = time.Now().UTC().Truncate(time.Second)
			}
			a.mu.Unlock()
			continue
		}
		a.log.Info("released the address of a pod whose netns is gone", "attachment", e.ID(), "netns", e.Netns, "addr", e.Addr)
	}
}

func netnsExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
