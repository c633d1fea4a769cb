package server

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/metrics"
	"github.com/terrane-net/terrane/internal/ui"
	"github.com/terrane-net/terrane/internal/usage"
)

// scrapeTimeout bounds the store reads of one scrape.
const scrapeTimeout = 10 * time.Second

// leakKinds are the audit's findings about addresses and blocks in use,
// always exposed (0 when there are none) so an alert's expression has a
// series to compare before the first finding.
var leakKinds = []string{"address-outside-blocks", "address-twice", "block-count-mismatch", "block-of-gone-host", "leak", "orphan-pod"}

// serverMetrics are the server's event metrics; the state's figures are
// read at scrape time (collect).
type serverMetrics struct {
	claims       *prometheus.CounterVec
	claimSeconds *prometheus.HistogramVec
}

func newServerMetrics() *serverMetrics {
	return &serverMetrics{
		claims:       metrics.BlockClaims.NewCounterVec(),
		claimSeconds: metrics.BlockClaimSeconds.NewHistogramVec(metrics.LatencyBuckets),
	}
}

// registry is the server's metrics: the event metrics, the state read at
// scrape time, Go's and the process's.
func (a *API) registry() *prometheus.Registry {
	state := metrics.CollectorFunc{Fn: a.collect, Defs: []metrics.Def{
		metrics.StoreCommits, metrics.StoreWrites, metrics.StoreRetries, metrics.StoreOtherWrites, metrics.StateReloads,
		metrics.PodOrphansReleased, metrics.StoreRevision, metrics.StateLoadError,
		metrics.AddressesAllocated, metrics.AddressesCapacity, metrics.AddressesFree, metrics.AddressesInBlocks, metrics.Blocks, metrics.Hosts,
		metrics.GroupCapacity, metrics.GroupAllocated, metrics.GroupFree, metrics.GroupBlocks, metrics.GroupHosts,
		metrics.ToRRoutes, metrics.ToRRouteBudget, metrics.VPCTableRoutes, metrics.VPCTableRouteBudget,
		metrics.CheckFindings, metrics.BGPSessionUp, metrics.BGPReportAge,
		metrics.VPCActive, metrics.VPCPasses, metrics.VPCPassErrors, metrics.VPCPassSeconds, metrics.VPCAPICalls,
		metrics.VPCThrottled, metrics.VPCRouteLimitExceeded, metrics.VPCRoutes, metrics.VPCRouteBudget,
		metrics.VPCOverBudget, metrics.VPCDirectShare,
	}}
	return metrics.NewRegistry(a.met.claims, a.met.claimSeconds, state)
}

// observeClaim counts a block claim and its time. known is whether the
// network exists: a claim for a name the topology lacks is counted under
// network="" so a caller's typos cannot grow the label set.
func (m *serverMetrics) observeClaim(network string, known bool, start time.Time, err error) {
	if !known {
		network = ""
	}
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ipam.ErrExhausted):
		result = "exhausted"
	case errors.Is(err, ipam.ErrRouteBudget):
		result = "route_budget"
	default:
		result = "error"
	}
	m.claims.WithLabelValues(network, result).Inc()
	m.claimSeconds.WithLabelValues(network).Observe(time.Since(start).Seconds())
}

// collect sends the state's figures. What cannot be read (the store does
// not answer) is logged and left out; the counters are always sent.
func (a *API) collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	st := a.state.Stats()
	for _, c := range []struct {
		d metrics.Def
		v int64
	}{
		{metrics.StoreCommits, st.Commits}, {metrics.StoreWrites, st.Writes}, {metrics.StoreRetries, st.Retries},
		{metrics.StoreOtherWrites, st.OtherWrites}, {metrics.StateReloads, st.Reloads},
		{metrics.PodOrphansReleased, st.OrphanReleases}, {metrics.StoreRevision, st.Revision},
	} {
		ch <- c.d.MustConst(float64(c.v))
	}
	ch <- metrics.StateLoadError.MustConst(bool01(st.LoadErr != nil))
	a.collectVPC(ch)
	reports, err := a.bgpReports(ctx)
	if err != nil {
		a.log.Warn("metrics without the BGP status", "err", err)
	}
	now := time.Now()
	// A host silent as long as the topology page calls it silent has its
	// sessions down: its last report says nothing of them now.
	seen, err := a.state.Heartbeats(ctx)
	if err != nil {
		a.log.Warn("metrics without the hosts' signs of life", "err", err)
	}
	err = a.state.ViewCounted(ctx, func(al *ipam.Allocator, tr *topologyRecord, o ipam.AuditOptions) error {
		if al == nil {
			return nil
		}
		ch <- metrics.Hosts.MustConst(float64(len(al.Hosts())))
		for _, n := range al.Topology().Networks {
			u := al.Usage(n.Name)
			ch <- metrics.AddressesAllocated.MustConst(float64(u.Allocated), n.Name)
			ch <- metrics.AddressesCapacity.MustConst(float64(u.Capacity), n.Name)
			ch <- metrics.AddressesFree.MustConst(float64(u.Capacity-min(u.Allocated, u.Capacity)), n.Name)
			ch <- metrics.AddressesInBlocks.MustConst(float64(u.InBlocks), n.Name)
			ch <- metrics.Blocks.MustConst(float64(len(al.Blocks(n.Name))), n.Name)
			for _, g := range usage.Groups(al, n) {
				ch <- metrics.GroupCapacity.MustConst(float64(g.Assignable), n.Name, g.Path)
				ch <- metrics.GroupAllocated.MustConst(float64(g.Allocated), n.Name, g.Path)
				ch <- metrics.GroupFree.MustConst(float64(g.Assignable-min(g.Allocated, g.Assignable)), n.Name, g.Path)
				ch <- metrics.GroupBlocks.MustConst(float64(g.Blocks), n.Name, g.Path)
				ch <- metrics.GroupHosts.MustConst(float64(g.Hosts), n.Name, g.Path)
			}
			f := usage.Fabric(al, n, tr.Budget)
			for _, t := range f.ToRs {
				ch <- metrics.ToRRoutes.MustConst(float64(t.Routes), n.Name, t.Group)
				if f.BGPBudget > 0 {
					ch <- metrics.ToRRouteBudget.MustConst(float64(f.BGPBudget), n.Name, t.Group)
				}
			}
			if f.VPC {
				ch <- metrics.VPCTableRoutes.MustConst(float64(f.VPCRoutes), n.Name)
				if f.VPCBudget > 0 {
					ch <- metrics.VPCTableRouteBudget.MustConst(float64(f.VPCBudget), n.Name)
				}
			}
		}
		kinds := map[string]int{}
		for _, k := range leakKinds {
			kinds[k] = 0
		}
		for _, f := range al.Audit(o) {
			kinds[f.Kind]++
		}
		for _, k := range slices.Sorted(maps.Keys(kinds)) {
			ch <- metrics.CheckFindings.MustConst(float64(kinds[k]), k)
		}
		// BGP sessions of registered hosts only, as ctl bgp shows them.
		for _, h := range al.Hosts() {
			r := reports[h.Name]
			if r == nil {
				continue
			}
			if !r.ReportedAt.IsZero() {
				ch <- metrics.BGPReportAge.MustConst(max(now.Sub(r.ReportedAt).Seconds(), 0), h.Name)
			}
			at, ok := seen[h.Name]
			silent := ok && now.Sub(at) >= ui.SilentAfter
			for _, p := range r.Peers {
				ch <- metrics.BGPSessionUp.MustConst(bool01(p.State == "established" && !silent), h.Name, p.Address.String())
			}
		}
		return nil
	})
	if err != nil {
		a.log.Warn("metrics without the allocation state", "err", err)
	}
}

// bgpReports are the hosts' last BGP status reports, by host.
func (a *API) bgpReports(ctx context.Context) (map[string]*api.BGPStatus, error) {
	kvs, _, err := a.state.st.List(ctx, keyBGPStatus)
	if err != nil {
		return nil, err
	}
	out := map[string]*api.BGPStatus{}
	for _, kv := range kvs {
		var st api.BGPStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			continue // getBGP logs it
		}
		out[strings.TrimPrefix(kv.Key, keyBGPStatus)] = &st
	}
	return out, nil
}

// collectVPC sends the VPC reconciler's figures, when it is configured.
func (a *API) collectVPC(ch chan<- prometheus.Metric) {
	if a.vpc == nil {
		return
	}
	s, c := a.vpc.Status(), a.vpc.Counters()
	ch <- metrics.VPCActive.MustConst(bool01(s.Active))
	ch <- metrics.VPCPasses.MustConst(float64(c.Passes))
	ch <- metrics.VPCPassErrors.MustConst(float64(c.Failures))
	ch <- metrics.VPCPassSeconds.MustConst(s.Duration)
	for _, action := range slices.Sorted(maps.Keys(s.Calls)) {
		ch <- metrics.VPCAPICalls.MustConst(float64(s.Calls[action]), action)
	}
	ch <- metrics.VPCThrottled.MustConst(float64(s.Throttled))
	for _, table := range slices.Sorted(maps.Keys(c.RouteLimitHits)) {
		ch <- metrics.VPCRouteLimitExceeded.MustConst(float64(c.RouteLimitHits[table]), table)
	}
	for _, t := range s.Tables {
		for _, f := range t.Families {
			ch <- metrics.VPCRoutes.MustConst(float64(f.Routes), t.ID, f.Family)
			ch <- metrics.VPCRouteBudget.MustConst(float64(f.Budget), t.ID, f.Family)
			ch <- metrics.VPCOverBudget.MustConst(bool01(!f.Fits), t.ID, f.Family)
			ch <- metrics.VPCDirectShare.MustConst(f.DirectShare, t.ID, f.Family)
		}
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
