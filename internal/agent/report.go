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
	// changes counts changes to what a report carries (touchLocked).
	changes int
	// orphaned: pods whose netns is gone but whose release failed, since
	// when (reconcile keeps it).
	orphaned map[string]time.Time
	// dirtySince is when the oldest change the server has not
	// acknowledged was made (zero: none); nextSince the first change
	// made since the report in flight was read (touchLocked), which
	// becomes dirtySince when that report is acknowledged.
	dirtySince, nextSince time.Time
}

// reportBurst is how many reports may go out back to back before the
// rate of one per ReportMax applies.
const reportBurst = 3

// reportLoop tells the server the addresses the agent has handed out, in
// batches. A change is reported once nothing has changed for Report, while
// the budget allows (reportBurst reports, refilled at one per ReportMax),
// and at the latest ReportMax after it was first seen. So a burst of pods
// is counted by the server about a second after it ends, and a node writes
// about one report per ReportMax however slowly or fast its pods churn.
func (a *Agent) reportLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Report)
	defer t.Stop()
	tokens, refilled := float64(reportBurst), time.Now()
	var pending time.Time // when unreported changes were first seen
	last, sent := -1, -1  // a.rep.changes at the previous tick, at the last report
	for {
		a.mu.Lock()
		changes := a.rep.changes
		a.mu.Unlock()
		now := time.Now()
		tokens = min(reportBurst, tokens+now.Sub(refilled).Seconds()/a.cfg.ReportMax.Seconds())
		refilled = now
		if changes != sent && pending.IsZero() {
			pending = now
		}
		settled := changes == last
		var err error
		if !pending.IsZero() && ((settled && tokens >= 1) || now.Sub(pending) >= a.cfg.ReportMax) {
			var wrote bool
			if wrote, err = a.report(ctx); err == nil {
				pending, sent = time.Time{}, changes
				if wrote {
					tokens = max(tokens-1, 0)
				}
			}
		}
		last = changes
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

// touchLocked notes a change a report must carry (an endpoint, a VM
// port, a pool block); reportLoop sends nothing it was not told of. a.mu
// is held.
func (a *Agent) touchLocked() {
	a.rep.changes++
	now := time.Now()
	if a.rep.dirtySince.IsZero() {
		a.rep.dirtySince = now
	}
	if a.rep.nextSince.IsZero() {
		a.rep.nextSince = now
	}
}

// acknowledgedLocked notes that the server holds what a report read at
// since's time carried: the lag of its oldest change is observed (when it
// was sent), and the changes made after it was read wait for the next.
// a.mu is held.
func (a *Agent) acknowledgedLocked(since time.Time, sent bool) {
	if sent && !since.IsZero() {
		a.met.reportLag.WithLabelValues().Observe(time.Since(since).Seconds())
	}
	a.rep.dirtySince = a.rep.nextSince
}

// report sends what changed since the server's generation, if anything
// did; sent is false when nothing had.
func (a *Agent) report(ctx context.Context) (sent bool, err error) {
	a.mu.Lock()
	since := a.rep.dirtySince
	a.rep.nextSince = time.Time{}
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
	if unchanged {
		a.acknowledgedLocked(since, false) // the server holds it already
		a.mu.Unlock()
		return false, nil
	}
	a.mu.Unlock()
	res, err := a.cfg.Server.ReportAddresses(ctx, a.cfg.Host, rep)
	if ctx.Err() == nil {
		a.contact(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.met.reports.WithLabelValues("error").Inc()
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == 409 {
			a.rep.full = true // the server lost our base: send everything next
		}
		return false, err
	}
	a.rep.full, a.rep.base, a.rep.held, a.rep.blocks, a.rep.ports = false, res.Generation, held, blocks, ports
	a.met.reports.WithLabelValues("ok").Inc()
	a.acknowledgedLocked(since, true)
	return true, nil
}

// reportedLocked is the host's addresses, pool blocks and VM ports as a
// report states them. a.mu is held.
func (a *Agent) reportedLocked() (map[ipam.AddressKey]ipam.ReportedAddress, []ipam.ReportedBlock, []ipam.ReportedPort) {
	held := make(map[ipam.AddressKey]ipam.ReportedAddress, len(a.eps))
	for _, e := range a.eps {
		for _, x := range e.addresses() {
			ad := ipam.ReportedAddress{Network: x.Network, Addr: x.Addr, Block: x.Block, Attachment: e.ID(), Since: e.Since.UTC().Truncate(time.Second)}
			if e.PodName != "" {
				ad.Pod, ad.PodUID = e.PodNamespace+"/"+e.PodName, e.PodUID
			}
			if t, ok := a.rep.orphaned[e.ID()]; ok {
				ad.Orphaned, ad.OrphanedSince = true, t
			}
			held[ad.Key()] = ad
		}
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
