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

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
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

// add gives the attachment an address from a block the host owns, routes
// it to the host veth and records it; the same attachment again gets the
// same address.
func (a *Agent) add(ctx context.Context, req cniapi.AddRequest) (cniapi.AddResponse, error) {
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
	if err := a.prepareVeth6(e); err != nil {
		if created {
			if rerr := a.release(ctx, e); rerr != nil {
				a.log.Error("undoing a failed ADD", "attachment", e.ID(), "err", rerr)
			}
		}
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
		for _, ad := range e.addresses() {
			a.ensureFreeAsync(bg, ad.Network)
		}
	}
	resp := cniapi.AddResponse{Network: e.Network, Addr: hostPrefix(e.Addr), Gateway: cniapi.Gateway(e.Addr), Second: e.second(), GSOMaxSize: gso}
	return resp, nil
}

// fullOffline is the error of an ADD that found the host's blocks of
// networks full while no server could be reached to claim another: the
// runtime retries it (CNI code 11), and the operator learns how to keep
// more room for the next outage.
func (a *Agent) fullOffline(networks []string, errs []error) error {
	slices.Sort(networks)
	networks = slices.Compact(networks)
	a.mu.Lock()
	var kept []string
	for _, n := range networks {
		kept = append(kept, fmt.Sprintf("%d in %s", a.keep(n), n))
	}
	a.mu.Unlock()
	msg := fmt.Sprintf("try again later: the server is unreachable and this host's blocks are full (host %s, network %s; the agent keeps %s free ahead of demand: raise its --claim-ahead to ride out longer outages)",
		a.cfg.Host, strings.Join(networks, ", "), strings.Join(kept, ", "))
	if err := errors.Join(errs...); err != nil {
		msg += ": " + err.Error()
	}
	return cniErr(cniapi.CodeTryAgainLater, "%s", msg)
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// second is e's second address as the plugin gets it (nil: none).
func (e *endpoint) second() *cniapi.Address {
	if e.Second == nil {
		return nil
	}
	return &cniapi.Address{Network: e.Second.Network, Addr: hostPrefix(e.Second.Addr), Gateway: cniapi.Gateway(e.Second.Addr)}
}

// prepareVeth6 sets what IPv6 routing through the host veth of e needs,
// when e has an IPv6 address.
func (a *Agent) prepareVeth6(e *endpoint) error {
	if !slices.ContainsFunc(e.addresses(), func(ad address) bool { return ad.Addr.Is6() }) {
		return nil
	}
	for _, kv := range cniapi.HostSideSysctlsV6(e.HostVeth) {
		if err := a.cfg.HostOps.SetSysctl("net/"+kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// allocate finds the attachment's endpoint or makes and records a new one:
// from the first candidate network (ipam.CandidateNetworks), claiming a
// block there when the claim ahead did not keep up, and from the next only
// when that network grants none. A dual-stack pod gets its second address
// in the same step, from the one second network: both or neither.
func (a *Agent) allocate(ctx context.Context, req cniapi.AddRequest) (e *endpoint, created bool, err error) {
	a.mu.Lock()
	e, changed, nets, second, err := a.lookupLocked(req)
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
	var full []string // networks short of room while the server is unreachable
	for _, n := range nets {
		for attempt := 0; e == nil; attempt++ {
			a.mu.Lock()
			var short []string
			e, created, short = a.takeLocked(req, n, second)
			offline := a.offlineLocked()
			a.mu.Unlock()
			if e != nil || attempt > 0 {
				break
			}
			if offline {
				// No claim can succeed: fail now, not after the claim's
				// timeout.
				full = append(full, short...)
				break
			}
			claimed := true
			for _, m := range short {
				if err := a.claim(ctx, m); err != nil {
					if client.Unreachable(err) && ctx.Err() == nil {
						full = append(full, m)
					}
					errs = append(errs, err)
					claimed = false
				}
			}
			if !claimed {
				break
			}
		}
		if e != nil {
			break
		}
	}
	if e == nil && len(full) > 0 {
		return nil, false, a.fullOffline(full, errs)
	}
	if e == nil {
		if len(errs) == 0 {
			what := strings.Join(nets, " or ")
			if second != "" {
				what += " and " + second
			}
			errs = append(errs, fmt.Errorf("no free address in network %s even after a claim", what))
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
// one and, for a dual-stack pod, its second network. a.mu is held.
func (a *Agent) lookupLocked(req cniapi.AddRequest) (e *endpoint, changed bool, nets []string, second string, err error) {
	if old := a.eps[req.ID()]; old != nil {
		if req.Network != "" && !sameNetworks(req.Network, old) {
			var held []string
			for _, ad := range old.addresses() {
				held = append(held, ad.Addr.String()+" in network "+ad.Network)
			}
			return nil, false, nil, "", cniErr(cniapi.CodeInvalid, "%s already has %s; delete it before asking for network %s", req.ID(), strings.Join(held, " and "), req.Network)
		}
		changed = old.Netns != req.Netns || old.HostVeth != req.HostVeth
		old.Netns, old.HostVeth = req.Netns, req.HostVeth
		return old, changed, nil, "", nil
	}
	nets, second, err = a.chooseNetworks(req)
	return nil, false, nets, second, err
}

// sameNetworks reports whether the network choice asks for the networks e
// holds addresses in, in any order.
func sameNetworks(choice string, e *endpoint) bool {
	names, err := cniapi.SplitNetworks(choice)
	if err != nil || len(names) != len(e.addresses()) {
		return false
	}
	for _, ad := range e.addresses() {
		if !slices.Contains(names, ad.Network) {
			return false
		}
	}
	return true
}

// takeLocked gives the attachment an address of network n from the pool,
// and one of network second too when second is set (created), or returns
// the endpoint a concurrent ADD of it made, or nil and the networks whose
// blocks are full: then it has taken nothing. a.mu is held.
func (a *Agent) takeLocked(req cniapi.AddRequest, n, second string) (e *endpoint, created bool, short []string) {
	if old := a.eps[req.ID()]; old != nil {
		return old, false, nil
	}
	addr, block, ok := a.pool(n).Allocate()
	if !ok {
		short = append(short, n)
	}
	var extra *address
	if second != "" {
		if addr2, block2, ok2 := a.pool(second).Allocate(); ok2 {
			extra = &address{Network: second, Addr: addr2, Block: block2}
		} else {
			short = append(short, second)
		}
	}
	if len(short) > 0 {
		if ok {
			a.pool(n).Unmark(addr, block)
		}
		if extra != nil {
			a.pool(second).Unmark(extra.Addr, extra.Block)
		}
		return nil, false, short
	}
	e = &endpoint{Attachment: req.Attachment, Network: n, Addr: addr, Block: block, Second: extra, Netns: req.Netns,
		HostVeth: req.HostVeth, PodNamespace: req.PodNamespace, PodName: req.PodName, PodUID: req.PodUID, Since: time.Now(),
		policyPending: a.enforcing() && req.PodName != ""}
	a.eps[e.ID()] = e
	a.touchLocked()
	return e, true, nil
}

// forgetLocked drops e and frees its address. a.mu is held.
func (a *Agent) forgetLocked(e *endpoint) {
	a.touchLocked()
	delete(a.eps, e.ID())
	delete(a.rep.orphaned, e.ID())
	for _, ad := range e.addresses() {
		a.pool(ad.Network).Unmark(ad.Addr, ad.Block)
	}
}

// chooseNetworks lists the networks a new attachment may get its address
// from, in order, and its second network when it is dual-stack.
//
// A choice (the request's network, else the namespace's default) that
// names two networks, "v4net,v6net", makes a dual-stack pod: the first
// network named gives the first address, the second the other family's,
// and neither falls back to another network. Otherwise the candidates are
// ipam.CandidateNetworks' (the one network choice), of the first
// candidate's family: a pod does not change family because its network is
// full. a.mu is held.
func (a *Agent) chooseNetworks(req cniapi.AddRequest) (nets []string, second string, err error) {
	var nsDefault string
	if a.snap != nil {
		nsDefault = a.snap.Namespaces[req.PodNamespace]
	}
	choice, from := req.Network, "network"
	if choice == "" && strings.Contains(nsDefault, ",") {
		choice, from = nsDefault, "the default network of namespace "+req.PodNamespace
	}
	names, err := cniapi.SplitNetworks(choice)
	if err != nil {
		return nil, "", cniErr(cniapi.CodeInvalid, "host %s: %s: %v", a.cfg.Host, from, err)
	}
	if len(names) == 2 {
		var pair [2]*topology.Network
		for i, name := range names {
			ns, err := ipam.CandidateNetworks(a.topo, ipam.NetworkChoice{Requested: name, Namespace: req.PodNamespace, HostGroups: a.self.Groups})
			if err != nil {
				return nil, "", cniErr(cniapi.CodeInvalid, "host %s: %s %q: %v", a.cfg.Host, from, choice, err)
			}
			pair[i] = ns[0]
		}
		if pair[0].CIDR.Addr().Is4() == pair[1].CIDR.Addr().Is4() {
			return nil, "", cniErr(cniapi.CodeInvalid, "host %s: %s %q: networks %s and %s are both IPv%d; a dual-stack pod takes one IPv4 and one IPv6 network", a.cfg.Host, from, choice, pair[0].Name, pair[1].Name, family(pair[0].CIDR.Addr()))
		}
		return []string{pair[0].Name}, pair[1].Name, nil
	}
	if strings.Contains(nsDefault, ",") {
		nsDefault = "" // a single network asked for: the pair is not a default for it
	}
	all, err := ipam.CandidateNetworks(a.topo, ipam.NetworkChoice{Requested: choice, Namespace: req.PodNamespace, NamespaceDefault: nsDefault, HostGroups: a.self.Groups})
	if err != nil {
		return nil, "", cniErr(cniapi.CodeInvalid, "host %s: %v", a.cfg.Host, err)
	}
	for _, n := range all {
		if n.CIDR.Addr().Is4() == all[0].CIDR.Addr().Is4() {
			nets = append(nets, n.Name)
		}
	}
	return nets, "", nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// routed programs the endpoint's routes and waits until they are in place.
func (a *Agent) routed(ctx context.Context, e *endpoint) error {
	diff, err := a.syncRoutes(ctx)
	if err == nil {
		return nil
	}
	for _, ad := range e.addresses() {
		dst := hostPrefix(ad.Addr)
		if !slices.ContainsFunc(diff.Added, func(r dataplane.Route) bool { return r.Dst == dst }) {
			return fmt.Errorf("route %s to %s: %w", dst, e.HostVeth, err)
		}
	}
	return nil // another route failed, not these
}

// del releases the attachment's address; one the agent does not hold is
// not an error.
func (a *Agent) del(ctx context.Context, at cniapi.Attachment) error {
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

// check returns what the agent holds for an attachment.
func (a *Agent) check(_ context.Context, at cniapi.Attachment) (cniapi.CheckResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.eps[at.ID()]
	if e == nil {
		return cniapi.CheckResponse{}, cniErr(cniapi.CodeNotFound, "the terrane agent holds no address for %s", at.ID())
	}
	return cniapi.CheckResponse{Network: e.Network, Addr: hostPrefix(e.Addr), Gateway: cniapi.Gateway(e.Addr), Second: e.second(), HostVeth: e.HostVeth, Netns: e.Netns}, nil
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
