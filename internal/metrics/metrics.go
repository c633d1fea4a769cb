// Package metrics is the catalogue of every metric Terrane exposes — on the
// server's /metrics and on each agent's metrics listener — and the few
// helpers both build them with. Each metric is defined once here (name,
// type, labels, help), so docs/metrics.md is checked against this list and
// this list against what a real scrape returns.
//
// Figures that describe state (addresses, blocks, routes, sessions) are
// read at scrape time by collectors in their owners' packages (const
// metrics built from a Def); events (claims, CNI requests, reports) are
// counted and timed where they happen with the vectors built here.
package metrics

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Type is a metric's Prometheus type.
type Type string

// The types Terrane uses.
const (
	Counter   Type = "counter"
	Gauge     Type = "gauge"
	Histogram Type = "histogram"
)

// Def defines one metric.
type Def struct {
	Name   string
	Type   Type
	Labels []string
	Help   string
	// Where is "server" or "agent": whose /metrics carries it.
	Where string
}

// Desc is the metric's descriptor for a collector.
func (d Def) Desc() *prometheus.Desc {
	return prometheus.NewDesc(d.Name, d.Help, d.Labels, nil)
}

// MustConst is one sample of a gauge or counter Def, for a collector.
// It panics when the labels do not match the Def: a programming error.
func (d Def) MustConst(v float64, labels ...string) prometheus.Metric {
	vt := prometheus.GaugeValue
	switch d.Type {
	case Counter:
		vt = prometheus.CounterValue
	case Gauge:
	default:
		panic(fmt.Sprintf("metrics: %s is a %s, not a constant", d.Name, d.Type))
	}
	return prometheus.MustNewConstMetric(d.Desc(), vt, v, labels...)
}

// LatencyBuckets bound request latencies: a CNI ADD served from
// node-local state takes milliseconds, a block claim one store
// transaction, a slow one seconds.
var LatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// LagBuckets bound the agent's report lag: a report goes out about a
// second after the host's addresses settle, at most ReportMax (10 s)
// after a change under churn; longer means the server does not answer.
var LagBuckets = []float64{.1, .25, .5, 1, 2, 5, 10, 20, 30, 60, 120, 300}

// NewHistogramVec builds the histogram d defines.
func (d Def) NewHistogramVec(buckets []float64) *prometheus.HistogramVec {
	if d.Type != Histogram {
		panic(fmt.Sprintf("metrics: %s is a %s, not a histogram", d.Name, d.Type))
	}
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: d.Name, Help: d.Help, Buckets: buckets}, d.Labels)
}

// NewCounterVec builds the counter d defines.
func (d Def) NewCounterVec() *prometheus.CounterVec {
	if d.Type != Counter {
		panic(fmt.Sprintf("metrics: %s is a %s, not a counter", d.Name, d.Type))
	}
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: d.Name, Help: d.Help}, d.Labels)
}

// NewRegistry is a private registry with the Go runtime's and the
// process's collectors (go_*, process_*) beside cs.
func NewRegistry(cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(cs...)
	return reg
}

// Handler serves reg in Prometheus' exposition formats. A collector that
// fails leaves its metrics out and the rest is served (a store that does
// not answer must not hide the counters).
func Handler(reg *prometheus.Registry) http.Handler {
	// One scrape at a time: the server's collectors read its whole state
	// under the state's lock, and the endpoint needs no credentials.
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 1})
}

// CollectorFunc is a collector whose Describe sends descs and whose
// Collect calls the func: state read at scrape time.
type CollectorFunc struct {
	Defs []Def
	Fn   func(ch chan<- prometheus.Metric)
}

var _ prometheus.Collector = CollectorFunc{}

// Describe implements prometheus.Collector.
func (c CollectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.Defs {
		ch <- d.Desc()
	}
}

// Collect implements prometheus.Collector.
func (c CollectorFunc) Collect(ch chan<- prometheus.Metric) { c.Fn(ch) }

// Lookup is the Def named name.
func Lookup(name string) (Def, bool) {
	for _, d := range All {
		if d.Name == name {
			return d, true
		}
	}
	return Def{}, false
}

// Markdown is the catalogue as the table docs/metrics.md carries between
// its markers, one row per metric, in catalogue order.
func Markdown(where string) string {
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n|---|---|---|---|\n")
	for _, d := range All {
		if d.Where != where {
			continue
		}
		labels := "—"
		if len(d.Labels) > 0 {
			labels = "`" + strings.Join(d.Labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", d.Name, d.Type, labels, d.Help)
	}
	return b.String()
}
