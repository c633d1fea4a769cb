package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/metrics"
)

// agentMetrics are the agent's event metrics; the host's figures (blocks,
// addresses, BGP sessions) are read at scrape time (collect).
type agentMetrics struct {
	cni          *prometheus.HistogramVec
	claims       *prometheus.CounterVec
	claimSeconds *prometheus.HistogramVec
	reportLag    *prometheus.HistogramVec
	reports      *prometheus.CounterVec
	reg          *prometheus.Registry
}

func newAgentMetrics(a *Agent) *agentMetrics {
	m := &agentMetrics{
		cni:          metrics.AgentCNISeconds.NewHistogramVec(metrics.LatencyBuckets),
		claims:       metrics.AgentBlockClaims.NewCounterVec(),
		claimSeconds: metrics.AgentBlockClaimSeconds.NewHistogramVec(metrics.LatencyBuckets),
		reportLag:    metrics.AgentReportLag.NewHistogramVec(metrics.LagBuckets),
		reports:      metrics.AgentReports.NewCounterVec(),
	}
	state := metrics.CollectorFunc{Fn: a.collect, Defs: []metrics.Def{
		metrics.AgentReady, metrics.AgentBlocks, metrics.AgentAddressesAllocated, metrics.AgentAddressesFree,
		metrics.AgentReportPending, metrics.AgentBGPSessionUp, metrics.AgentBGPSessionState, metrics.AgentBGPAnnounced,
	}}
	m.reg = metrics.NewRegistry(m.cni, m.claims, m.claimSeconds, m.reportLag, m.reports, state)
	return m
}

// observeCNI times one answer to the plugin.
func (m *agentMetrics) observeCNI(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.cni.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}

// observeClaim counts a block claim and times the server's answer.
func (m *agentMetrics) observeClaim(network string, start time.Time, err error) {
	result := "ok"
	var ae *client.APIError
	switch {
	case err == nil:
	case errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500:
		result = "refused"
	default:
		result = "error"
	}
	m.claims.WithLabelValues(network, result).Inc()
	m.claimSeconds.WithLabelValues(network).Observe(time.Since(start).Seconds())
}

// Add implements cniapi.Agent; it times add.
func (a *Agent) Add(ctx context.Context, req cniapi.AddRequest) (cniapi.AddResponse, error) {
	start := time.Now()
	resp, err := a.add(ctx, req)
	a.met.observeCNI("add", start, err)
	return resp, err
}

// Del implements cniapi.Agent; it times del.
func (a *Agent) Del(ctx context.Context, at cniapi.Attachment) error {
	start := time.Now()
	err := a.del(ctx, at)
	a.met.observeCNI("del", start, err)
	return err
}

// Check implements cniapi.Agent; it times check.
func (a *Agent) Check(ctx context.Context, at cniapi.Attachment) (cniapi.CheckResponse, error) {
	start := time.Now()
	resp, err := a.check(ctx, at)
	a.met.observeCNI("check", start, err)
	return resp, err
}

// collect sends the host's figures as they stand.
func (a *Agent) collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	ch <- metrics.AgentReady.MustConst(bool01(a.ready == ""))
	for _, n := range slices.Sorted(maps.Keys(a.pools)) {
		p := a.pools[n]
		used := 0
		for _, b := range p.Blocks() {
			used += p.Used(b)
		}
		ch <- metrics.AgentBlocks.MustConst(float64(len(p.Blocks())), n)
		ch <- metrics.AgentAddressesAllocated.MustConst(float64(used), n)
		ch <- metrics.AgentAddressesFree.MustConst(float64(p.Free()), n)
	}
	pending, unreachable := 0.0, 0.0
	if !a.rep.dirtySince.IsZero() {
		pending = time.Since(a.rep.dirtySince).Seconds()
	}
	if !a.off.since.IsZero() {
		unreachable = time.Since(a.off.since).Seconds()
	}
	a.mu.Unlock()
	ch <- metrics.AgentReportPending.MustConst(pending)
	ch <- metrics.AgentServerUnreachable.MustConst(unreachable)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, ok := a.bgpStatus(ctx)
	if !ok {
		return
	}
	ch <- metrics.AgentBGPAnnounced.MustConst(float64(len(st.Announced)))
	for _, p := range st.Peers {
		peer := p.Address.String()
		ch <- metrics.AgentBGPSessionUp.MustConst(bool01(p.State == "established"), peer)
		for _, s := range metrics.BGPStates {
			ch <- metrics.AgentBGPSessionState.MustConst(bool01(p.State == s), peer, s)
		}
	}
}

// MetricsHandler serves the agent's metrics in Prometheus' formats.
func (a *Agent) MetricsHandler() http.Handler { return metrics.Handler(a.met.reg) }

// ServeMetrics serves GET /metrics on addr (host:port) until ctx ends.
// ready, if set, is called with the address listened on (port 0 picks
// one).
func (a *Agent) ServeMetrics(ctx context.Context, addr string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.MetricsHandler())
	a.log.Info("serving metrics", "address", ln.Addr().String())
	return a.serveUntil(ctx, ln, mux, func() {
		if ready != nil {
			ready(ln.Addr())
		}
	})
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
