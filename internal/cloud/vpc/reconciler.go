package vpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/api"
)

// Backoff on throttling: the delay before retry n is drawn from
// [d/2, d) with d = min(backoffBase·2ⁿ, backoffCap) ("equal jitter", so
// reconcilers that were throttled together do not retry together).
const (
	backoffBase = 200 * time.Millisecond
	backoffCap  = 20 * time.Second
	maxAttempts = 8
	// settle lets a burst of state changes land before a pass starts.
	settle = 500 * time.Millisecond
)

// Source is where the reconciler reads the cluster state: the server's.
type Source interface {
	// Snapshot reads the state as it is now.
	Snapshot(ctx context.Context) (Snapshot, error)
	// WaitChange returns when the state's revision passes after, when
	// max has passed, or when ctx ends.
	WaitChange(ctx context.Context, after int64, max time.Duration)
}

// Reconciler keeps the configured route tables equal to the plan. One
// pass (Reconcile) reads each table, plans, and applies the calls; Run
// repeats passes on state changes and on a period. Safe for concurrent
// use; passes do not overlap.
type Reconciler struct {
	cfg   *Config
	cloud Cloud
	log   *slog.Logger
	// sleep and jitter are the clock and randomness of the backoff, for
	// tests.
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func() float64
	now    func() time.Time

	pass sync.Mutex // one pass at a time

	mu        sync.Mutex
	status    api.VPCStatus
	checked   map[string]bool // instances whose source/destination check is off
	calls     map[string]int64
	throttled int64
	limitHits map[string]int64  // by table
	logged    map[string]string // problems last logged, by table
	passes    int64
	failures  int64
}

// New builds a reconciler over a cloud adapter.
func New(cfg *Config, cloud Cloud, log *slog.Logger) *Reconciler {
	return &Reconciler{
		cfg: cfg, cloud: cloud, log: log,
		sleep:   sleepCtx,
		jitter:  rand.Float64,
		now:     time.Now,
		status:  api.VPCStatus{Configured: true, Tables: []api.VPCTableStatus{}, Calls: map[string]int64{}},
		checked: map[string]bool{}, calls: map[string]int64{}, limitHits: map[string]int64{}, logged: map[string]string{},
	}
}

// Config is the reconciler's configuration.
func (r *Reconciler) Config() *Config { return r.cfg }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Run reconciles until ctx ends: a pass, then the next one when the state
// changes (after a short settle) or Interval has passed. A failed pass is
// retried with backoff.
func (r *Reconciler) Run(ctx context.Context, src Source) {
	failures := 0
	var rev int64
	for ctx.Err() == nil {
		snap, err := src.Snapshot(ctx)
		if err == nil {
			rev = snap.Revision
			err = r.Reconcile(ctx, snap)
		} else {
			r.setError(fmt.Errorf("read the state: %w", err))
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			r.log.Warn("vpc reconcile failed", "err", err, "failures", failures)
			_ = r.sleep(ctx, min(r.backoff(failures-1), r.cfg.Interval))
			continue
		}
		failures = 0
		src.WaitChange(ctx, rev, r.cfg.Interval)
		_ = r.sleep(ctx, settle)
	}
}

// SetActive records whether this server holds the reconciler lease and
// who does.
func (r *Reconciler) SetActive(active bool, holder string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.Active, r.status.Holder = active, holder
}

func (r *Reconciler) setError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.LastError = err.Error()
}

// backoff is the delay before retry number attempt (0-based).
func (r *Reconciler) backoff(attempt int) time.Duration {
	d := backoffCap
	if attempt < 16 {
		d = min(backoffBase<<attempt, backoffCap)
	}
	return d/2 + time.Duration(r.jitter()*float64(d/2))
}

// call runs one cloud call, retrying it with backoff while it is
// throttled, at most maxAttempts times.
func (r *Reconciler) call(ctx context.Context, action string, fn func() error) error {
	for attempt := 0; ; attempt++ {
		r.mu.Lock()
		r.calls[action]++
		r.mu.Unlock()
		err := fn()
		if !errors.Is(err, ErrThrottled) {
			return err
		}
		r.mu.Lock()
		r.throttled++
		r.mu.Unlock()
		if attempt+1 >= maxAttempts {
			return fmt.Errorf("%w (gave up after %d attempts)", err, maxAttempts)
		}
		d := r.backoff(attempt)
		r.log.Debug("throttled; backing off", "action", action, "attempt", attempt+1, "delay", d)
		if err := r.sleep(ctx, d); err != nil {
			return err
		}
	}
}

// Reconcile runs one pass over every configured table and returns the
// first table's error (all tables are tried).
func (r *Reconciler) Reconcile(ctx context.Context, snap Snapshot) error {
	r.pass.Lock()
	defer r.pass.Unlock()
	start := r.now()
	var first error
	tables := make([]api.VPCTableStatus, 0, len(r.cfg.Tables))
	for _, spec := range r.cfg.Tables {
		ts, err := r.reconcileTable(ctx, spec, snap)
		if err != nil {
			ts.LastError = err.Error()
			if first == nil {
				first = fmt.Errorf("route table %s: %w", spec.ID, err)
			}
		}
		tables = append(tables, ts)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.passes++
	r.status.Tables = tables
	r.status.Revision = snap.Revision
	r.status.LastReconcile = start
	r.status.Duration = r.now().Sub(start).Seconds()
	r.status.LastError = ""
	if first != nil {
		r.failures++
		r.status.LastError = first.Error()
	}
	return first
}

func (r *Reconciler) reconcileTable(ctx context.Context, spec TableSpec, snap Snapshot) (api.VPCTableStatus, error) {
	ts := api.VPCTableStatus{ID: spec.ID, Groups: slices.Clone(spec.Groups), Families: []api.VPCFamilyStatus{}}
	if ts.Groups == nil {
		ts.Groups = []string{}
	}
	var actual []CloudRoute
	err := r.call(ctx, "DescribeRouteTables", func() error {
		var err error
		actual, err = r.cloud.RouteTable(ctx, spec.ID)
		return err
	})
	if err != nil {
		return ts, err
	}
	plan := Desired(spec, snap, actual)
	ts.Problems = plan.Problems
	ts.Instances = len(plan.Instances)
	r.mu.Lock()
	said := r.logged[spec.ID]
	r.logged[spec.ID] = strings.Join(plan.Problems, "\n")
	r.mu.Unlock()
	if said != strings.Join(plan.Problems, "\n") { // log problems when they change, not every pass
		for _, p := range plan.Problems {
			r.log.Warn("vpc route table", "table", spec.ID, "problem", p)
		}
	}
	// Route targets first: a route never points at an instance that
	// drops pod traffic.
	targets := map[string]bool{}
	for _, fp := range plan.Families {
		for _, d := range fp.Routes {
			targets[d.Instance] = true
		}
	}
	var errs []error
	errs = append(errs, r.disableChecks(ctx, slices.Sorted(maps.Keys(targets)))...)
	ops := Diff(plan, actual)
	counts := map[int]int{}
	for _, a := range actual {
		if Owned(a, plan.Networks) {
			counts[family(a.Dst)]++
		}
	}
	var desired []netip.Prefix
	for _, fp := range plan.Families {
		for _, d := range fp.Routes {
			desired = append(desired, d.Dst)
		}
	}
	limitHit := false
	for _, op := range ops {
		if limitHit && (op.Kind == OpCreate || (op.Kind == OpDelete && overlapsAny(op.Dst, desired))) {
			// Past the cloud's limit, only deletes of released space
			// go on: removing a route waiting for its aggregate would
			// cut traffic the aggregate never picks up.
			continue
		}
		err := r.call(ctx, string(op.Kind), func() error {
			switch op.Kind {
			case OpCreate:
				return r.cloud.CreateRoute(ctx, spec.ID, op.Dst, op.Instance)
			case OpReplace:
				return r.cloud.ReplaceRoute(ctx, spec.ID, op.Dst, op.Instance)
			default:
				return r.cloud.DeleteRoute(ctx, spec.ID, op.Dst)
			}
		})
		switch {
		case err == nil:
			ts.Ops++
			switch op.Kind {
			case OpCreate:
				counts[family(op.Dst)]++
			case OpDelete:
				counts[family(op.Dst)]--
			}
			r.log.Info("vpc route", "table", spec.ID, "op", string(op.Kind), "dst", op.Dst.String(), "instance", op.Instance)
		case errors.Is(err, ErrRouteLimit):
			limitHit = true
			ts.RouteLimitHit = true
			r.mu.Lock()
			r.limitHits[spec.ID]++
			r.mu.Unlock()
			r.log.Error("vpc route table is at the cloud's route limit: routes left out until room is made or the quota raised",
				"table", spec.ID, "routes", counts[family(op.Dst)], "budget", spec.Budget(family(op.Dst)), "err", err)
			errs = append(errs, err)
		case op.Kind == OpDelete && errors.Is(err, ErrNotFound):
			counts[family(op.Dst)]-- // already gone
		case errors.Is(err, ErrThrottled), ctx.Err() != nil:
			return r.tableStatus(ts, plan, counts), err
		default:
			errs = append(errs, err)
		}
	}
	// Every other host of the table sends pod traffic too.
	errs = append(errs, r.disableChecks(ctx, plan.Instances)...)
	r.mu.Lock()
	for _, i := range plan.Instances {
		if r.checked[i] {
			ts.Checked++
		}
	}
	r.mu.Unlock()
	return r.tableStatus(ts, plan, counts), errors.Join(errs...)
}

func (r *Reconciler) tableStatus(ts api.VPCTableStatus, plan TablePlan, counts map[int]int) api.VPCTableStatus {
	for _, fp := range plan.Families {
		ts.Families = append(ts.Families, api.VPCFamilyStatus{
			Family: fmt.Sprintf("ipv%d", fp.Family), Routes: counts[fp.Family], Budget: fp.Budget,
			Needed: fp.Needed, Fits: fp.Fits, DirectShare: fp.DirectShare, DirectBlockShare: fp.DirectBlockShare,
		})
	}
	return ts
}

// disableChecks turns the source/destination check off on instances not
// yet done by this reconciler.
func (r *Reconciler) disableChecks(ctx context.Context, instances []string) []error {
	var errs []error
	for _, inst := range instances {
		r.mu.Lock()
		done := r.checked[inst]
		r.mu.Unlock()
		if done {
			continue
		}
		err := r.call(ctx, "ModifyInstanceAttribute", func() error { return r.cloud.DisableSourceDestCheck(ctx, inst) })
		if err != nil {
			errs = append(errs, err)
			if errors.Is(err, ErrThrottled) || ctx.Err() != nil {
				return errs
			}
			continue
		}
		r.mu.Lock()
		r.checked[inst] = true
		r.mu.Unlock()
	}
	return errs
}

func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 4
	}
	return 6
}

// Status is the reconciler as of its last pass.
func (r *Reconciler) Status() api.VPCStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Tables = slices.Clone(s.Tables)
	s.Calls = maps.Clone(r.calls)
	s.Throttled = r.throttled
	return s
}

// Counters are the reconciler's counts since it started.
type Counters struct {
	// Passes and Failures count reconcile passes, and those that ended
	// with an error.
	Passes, Failures int64
	// RouteLimitHits counts routes the cloud refused for a table's route
	// limit, by table ID: every configured table has a key.
	RouteLimitHits map[string]int64
}

// Counters returns the reconciler's counts.
func (r *Reconciler) Counters() Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := Counters{Passes: r.passes, Failures: r.failures, RouteLimitHits: map[string]int64{}}
	for _, t := range r.cfg.Tables {
		c.RouteLimitHits[t.ID] = r.limitHits[t.ID]
	}
	return c
}
