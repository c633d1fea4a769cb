package agent

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/ipam"
)

// reportState is what the server holds of the host's addresses, as of the
// generation it last accepted from this agent. a.mu guards it.
type reportState struct {
	full   bool // the next report replaces everything (start, or a stale base)
	base   uint64
	held   map[ipam.AddressKey]ipam.ReportedAddress
	blocks []ipam.ReportedBlock
	ports  []ipam.ReportedPort
	logged string // the last failure logged, so a broken server is not logged every tick
	// orphaned: pods whose netns is gone but whose release failed, since
	// when (reconcile keeps it).
	orphaned map[string]time.Time
}

// reportLoop tells the server, every Report (0: 2 s) and only when
// something changed, the addresses the agent has handed out: one store
// write per interval at most, whatever the pod churn.
func (a *Agent) reportLoop(ctx context.Context) {
	every := a.cfg.Report
	if every == 0 {
		every = 2 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		err := a.report(ctx)
		a.mu.Lock()
		switch {
		case err != nil && ctx.Err() == nil && err.Error() != a.rep.logged:
			a.log.Warn("address report", "err", err)
			a.rep.logged = err.Error()
		case err == nil:
			a.rep.logged = ""
		}
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// report sends what changed since the server's generation, if anything did.
func (a *Agent) report(ctx context.Context) error {
	a.mu.Lock()
	held, blocks, ports := a.reportedLocked()
	rep := api.AddressReport{Full: a.rep.full, Base: a.rep.base, Blocks: blocks, Ports: ports, Added: []ipam.ReportedAddress{}, Removed: []ipam.AddressKey{}}
	for _, k := range slices.SortedFunc(maps.Keys(held), compareKeys) {
		if old, ok := a.rep.held[k]; rep.Full || !ok || old != held[k] {
			rep.Added = append(rep.Added, held[k])
		}
	}
	if !rep.Full {
		for _, k := range slices.SortedFunc(maps.Keys(a.rep.held), compareKeys) {
			if _, ok := held[k]; !ok {
				rep.Removed = append(rep.Removed, k)
			}
		}
	}
	unchanged := !rep.Full && len(rep.Added)+len(rep.Removed) == 0 && slices.Equal(blocks, a.rep.blocks) && slices.Equal(ports, a.rep.ports)
	a.mu.Unlock()
	if unchanged {
		return nil
	}
	res, err := a.cfg.Server.ReportAddresses(ctx, a.cfg.Host, rep)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == 409 {
			a.rep.full = true // the server lost our base: send everything next
		}
		return err
	}
	a.rep.full, a.rep.base, a.rep.held, a.rep.blocks, a.rep.ports = false, res.Generation, held, blocks, ports
	return nil
}

// reportedLocked is the host's addresses, pool blocks and VM ports as a
// report states them. a.mu is held.
func (a *Agent) reportedLocked() (map[ipam.AddressKey]ipam.ReportedAddress, []ipam.ReportedBlock, []ipam.ReportedPort) {
	held := make(map[ipam.AddressKey]ipam.ReportedAddress, len(a.eps))
	for _, e := range a.eps {
		ad := ipam.ReportedAddress{Network: e.Network, Addr: e.Addr, Block: e.Block, Attachment: e.ID(), Since: e.Since.UTC().Truncate(time.Second)}
		if e.PodName != "" {
			ad.Pod = e.PodNamespace + "/" + e.PodName
		}
		if t, ok := a.rep.orphaned[e.ID()]; ok {
			ad.Orphaned, ad.OrphanedSince = true, t
		}
		held[ad.Key()] = ad
	}
	var blocks []ipam.ReportedBlock
	for _, n := range slices.Sorted(maps.Keys(a.pools)) {
		p := a.pools[n]
		for _, b := range p.Blocks() {
			blocks = append(blocks, ipam.ReportedBlock{Network: n, Prefix: b, Used: p.Used(b), Open: p.IsOpen(b)})
		}
	}
	var ports []ipam.ReportedPort
	for _, id := range slices.Sorted(maps.Keys(a.ports)) {
		vp := a.ports[id]
		ports = append(ports, ipam.ReportedPort{ID: id, Device: vp.dev, Wired: vp.wired, Since: vp.since})
	}
	return held, blocks, ports
}

func compareKeys(x, y ipam.AddressKey) int {
	return cmp.Or(cmp.Compare(x.Network, y.Network), x.Addr.Compare(y.Addr))
}
