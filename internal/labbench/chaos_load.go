package labbench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
)

// pace hands out rate tokens per second until ctx ends; nil for rate 0.
func pace(ctx context.Context, rate float64) <-chan struct{} {
	if rate <= 0 {
		return nil
	}
	ch := make(chan struct{})
	go func() {
		interval := time.Duration(float64(time.Second) / rate)
		next := time.Now()
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			select {
			case ch <- struct{}{}:
			case <-ctx.Done():
				return
			}
			next = next.Add(interval)
			t.Reset(time.Until(next))
		}
	}()
	return ch
}

// availability tracks the gaps between successful operations: per fault
// (from its injection until the next) and over the whole run.
type availability struct {
	mu      sync.Mutex
	start   time.Time
	last    time.Time // last success
	cur     int       // current fault, -1 before the first
	curAt   time.Time
	gaps    []time.Duration
	longest time.Duration
}

func (a *availability) succeeded(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closeGap(now)
	if now.After(a.last) {
		a.last = now
	}
}

// closeGap accounts the time since the last success (or the current
// fault) up to now.
func (a *availability) closeGap(now time.Time) {
	gap := now.Sub(a.last)
	a.longest = max(a.longest, gap)
	if a.cur >= 0 {
		from := a.last
		if a.curAt.After(from) {
			from = a.curAt
		}
		a.gaps[a.cur] = max(a.gaps[a.cur], now.Sub(from))
	}
}

func (a *availability) fault(at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur >= 0 {
		a.closeGap(at)
	}
	a.gaps = append(a.gaps, 0)
	a.cur, a.curAt = len(a.gaps)-1, at
}

func (a *availability) end(at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closeGap(at)
}

// retrier calls the servers through one client of them all (which moves
// to the next server when one gives no answer) and repeats an operation
// until it succeeds, is refused for good, or its context ends.
type retrier struct {
	c       *client.Client
	retries int
}

// retrier is a client of every server, server first in its list.
func (c *chaosLab) retrier(first int, timeout time.Duration) (*retrier, error) {
	cl, err := c.clientOf(c.serverURLs(first), timeout)
	if err != nil {
		return nil, err
	}
	return &retrier{c: cl}, nil
}

// chaosWorker acts as one host: it allocates and releases endpoints on it
// through the servers' API and remembers what they acknowledged.
type chaosWorker struct {
	*retrier
	host string
	live int
	seq  int
	// held are acknowledged, unreleased endpoints (ID → address) and order
	// their allocation order; released counts acknowledged releases.
	held        map[string]netip.Addr
	order       []string
	released    map[string]bool
	allocations int
	releases    int
	inDoubt     []string
	errs        []error
}

func newChaosWorker(c *chaosLab, w int) (*chaosWorker, error) {
	r, err := c.retrier(w, c.o.Timeout)
	if err != nil {
		return nil, err
	}
	return &chaosWorker{retrier: r, host: fmt.Sprintf("chaos-w%02d", w), live: c.o.Live, held: map[string]netip.Addr{}, released: map[string]bool{}}, nil
}

func (w *chaosWorker) register(ctx context.Context) error {
	return w.do(ctx, func(cl *client.Client) error {
		_, err := cl.RegisterHost(ctx, w.host, api.HostRequest{Labels: map[string]string{"chaos": "yes"}})
		if err != nil {
			return err
		}
		_, err = cl.ClaimBlock(ctx, w.host, "pods")
		return err
	})
}

// permanent is an answer that no other server would change.
func permanent(err error) bool {
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case 400, 401, 403, 404, 422:
			return true
		}
	}
	return false
}

// do runs op and, on an error that a server might not give a moment
// later (none answered, or one failed), again until it succeeds or ctx
// ends; the client picks the server.
func (r *retrier) do(ctx context.Context, op func(*client.Client) error) error {
	for {
		err := op(r.c)
		if err == nil || permanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		r.retries++
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// run allocates and releases until loadCtx ends; an operation begun is
// finished (retried) under ctx so that every one is acknowledged.
func (w *chaosWorker) run(loadCtx, ctx context.Context, tokens <-chan struct{}, av *availability, allocated func()) {
	for loadCtx.Err() == nil {
		if tokens != nil {
			select {
			case <-tokens:
			case <-loadCtx.Done():
				return
			}
		}
		// Finish a begun operation within a minute of the load's end.
		opCtx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(loadCtx, func() {
			time.AfterFunc(time.Minute, cancel)
		})
		if len(w.order) < w.live {
			w.allocate(opCtx, av, allocated)
		} else {
			w.release(opCtx, av)
		}
		stop()
		cancel()
	}
}

func (w *chaosWorker) allocate(ctx context.Context, av *availability, allocated func()) {
	w.seq++
	id := fmt.Sprintf("%s-%d", w.host, w.seq)
	var res *api.EndpointResult
	err := w.do(ctx, func(cl *client.Client) error {
		var err error
		res, err = cl.AllocateEndpoint(ctx, api.EndpointRequest{ID: id, Host: w.host})
		return err
	})
	if err != nil {
		w.inDoubt = append(w.inDoubt, id)
		w.errs = append(w.errs, fmt.Errorf("allocate %s: %w", id, err))
		return
	}
	av.succeeded(time.Now())
	w.held[id] = res.Endpoint.Addr
	w.order = append(w.order, id)
	w.allocations++
	allocated()
}

func (w *chaosWorker) release(ctx context.Context, av *availability) {
	id := w.order[0]
	err := w.do(ctx, func(cl *client.Client) error {
		_, err := cl.ReleaseEndpoint(ctx, id)
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == 404 {
			// An earlier attempt released it and its answer was lost.
			return nil
		}
		return err
	})
	if err != nil {
		w.inDoubt = append(w.inDoubt, id)
		w.errs = append(w.errs, fmt.Errorf("release %s: %w", id, err))
		return
	}
	av.succeeded(time.Now())
	w.order = w.order[1:]
	delete(w.held, id)
	w.released[id] = true
	w.releases++
}
