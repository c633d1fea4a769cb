package vpc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// memCloud is an in-memory Cloud: one table, a route limit, and a number
// of calls to throttle.
type memCloud struct {
	mu       sync.Mutex
	routes   map[netip.Prefix]CloudRoute
	limit    int
	throttle int
	checks   map[string]int
}

func newMemCloud(limit int) *memCloud {
	return &memCloud{routes: map[netip.Prefix]CloudRoute{pfx("172.31.0.0/16"): {Dst: pfx("172.31.0.0/16"), Target: "local", Origin: "CreateRouteTable"}}, limit: limit, checks: map[string]int{}}
}

func (m *memCloud) throttled() error {
	if m.throttle > 0 {
		m.throttle--
		return fmt.Errorf("call: %w", ErrThrottled)
	}
	return nil
}

func (m *memCloud) RouteTable(_ context.Context, _ string) ([]CloudRoute, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.throttled(); err != nil {
		return nil, err
	}
	var out []CloudRoute
	for _, r := range m.routes {
		out = append(out, r)
	}
	return out, nil
}

func (m *memCloud) CreateRoute(_ context.Context, _ string, dst netip.Prefix, inst string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.throttled(); err != nil {
		return err
	}
	if len(m.routes)-1 >= m.limit {
		return fmt.Errorf("create: %w", ErrRouteLimit)
	}
	m.routes[dst] = CloudRoute{Dst: dst, Instance: inst, Origin: OriginCreateRoute}
	return nil
}

func (m *memCloud) ReplaceRoute(_ context.Context, _ string, dst netip.Prefix, inst string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.throttled(); err != nil {
		return err
	}
	m.routes[dst] = CloudRoute{Dst: dst, Instance: inst, Origin: OriginCreateRoute}
	return nil
}

func (m *memCloud) DeleteRoute(_ context.Context, _ string, dst netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.throttled(); err != nil {
		return err
	}
	delete(m.routes, dst)
	return nil
}

func (m *memCloud) DisableSourceDestCheck(_ context.Context, inst string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.throttled(); err != nil {
		return err
	}
	m.checks[inst]++
	return nil
}

func testReconciler(cloud Cloud, budget int, logs io.Writer) (*Reconciler, *[]time.Duration) {
	cfg := &Config{Tables: []TableSpec{{ID: "rtb-1", Budget4: budget, Budget6: budget}}, Interval: time.Second}
	r := New(cfg, cloud, slog.New(slog.NewTextHandler(logs, nil)))
	var slept []time.Duration
	r.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	r.jitter = func() float64 { return 0.5 }
	return r, &slept
}

func TestReconcileBacksOffOnThrottling(t *testing.T) {
	cloud := newMemCloud(50)
	cloud.throttle = 3
	r, slept := testReconciler(cloud, 50, io.Discard)
	if err := r.Reconcile(context.Background(), zoneSnap("a", "b")); err != nil {
		t.Fatal(err)
	}
	// Three throttled attempts: delays drawn from [d/2, d) with d
	// doubling from 200 ms; jitter 0.5 puts each at 3/4 d.
	want := []time.Duration{150 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond}
	if fmt.Sprint(*slept) != fmt.Sprint(want) {
		t.Errorf("slept %v, want %v", *slept, want)
	}
	st := r.Status()
	if st.Throttled != 3 || st.Calls["DescribeRouteTables"] != 4 || st.LastError != "" {
		t.Errorf("status: %+v", st)
	}
	if len(cloud.routes) != 3 || cloud.checks["i-a"] != 1 || cloud.checks["i-b"] != 1 {
		t.Errorf("routes %v, checks %v", cloud.routes, cloud.checks)
	}
	// A second pass changes nothing and does not touch the instances again.
	if err := r.Reconcile(context.Background(), zoneSnap("a", "b")); err != nil {
		t.Fatal(err)
	}
	if cloud.checks["i-a"] != 1 || r.Status().Tables[0].Ops != 0 {
		t.Errorf("second pass: checks %v, ops %d", cloud.checks, r.Status().Tables[0].Ops)
	}
	// Throttled past maxAttempts: the pass fails and says why.
	cloud.throttle = maxAttempts
	err := r.Reconcile(context.Background(), zoneSnap("a", "b"))
	if err == nil || !strings.Contains(err.Error(), "gave up after 8 attempts") {
		t.Errorf("err = %v", err)
	}
	if d := r.backoff(20); d < backoffCap/2 || d > backoffCap {
		t.Errorf("backoff(20) = %v, want within [cap/2, cap]", d)
	}
}

func TestReconcileReportsRouteLimit(t *testing.T) {
	// The cloud's limit (2) is below the budget (10): the third route is
	// refused, reported in the status, the log and the metrics.
	cloud := newMemCloud(2)
	var logs bytes.Buffer
	r, _ := testReconciler(cloud, 10, &logs)
	err := r.Reconcile(context.Background(), zoneSnap("a", "b", "c"))
	if err == nil {
		t.Fatal("no error")
	}
	st := r.Status()
	ts := st.Tables[0]
	if !ts.RouteLimitHit || ts.Families[0].Routes != 2 || ts.Families[0].Needed != 3 || !strings.Contains(st.LastError, "route limit") {
		t.Errorf("status: %+v", st)
	}
	if !strings.Contains(logs.String(), "route limit") {
		t.Errorf("log: %s", logs.String())
	}
	c := r.Counters()
	if c.RouteLimitHits["rtb-1"] != 1 || c.Passes != 1 || c.Failures != 1 {
		t.Errorf("counters: %+v, want one pass, failed, one route refused for the limit of rtb-1", c)
	}
	if got := r.Status().Calls["CreateRoute"]; got != 3 {
		t.Errorf("CreateRoute calls: %d, want 3", got)
	}
}

// stubSource serves one snapshot and counts passes.
type stubSource struct {
	snap  Snapshot
	waits chan struct{}
}

func (s *stubSource) Snapshot(context.Context) (Snapshot, error) { return s.snap, nil }
func (s *stubSource) WaitChange(ctx context.Context, _ int64, _ time.Duration) {
	select {
	case s.waits <- struct{}{}:
	case <-ctx.Done():
	}
}

func TestRunReconcilesUntilCancelled(t *testing.T) {
	cloud := newMemCloud(50)
	r, _ := testReconciler(cloud, 50, io.Discard)
	src := &stubSource{snap: zoneSnap("a"), waits: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, src); close(done) }()
	<-src.waits // one pass done
	<-src.waits // and a second
	cancel()
	<-done
	if len(cloud.routes) != 2 {
		t.Errorf("routes = %v", cloud.routes)
	}
}
