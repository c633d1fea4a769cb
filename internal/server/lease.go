package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/terrane-net/terrane/internal/store"
)

// A lease makes one server of several the active one for a job (the VPC
// reconciler). Its record leases/<name> names the holder; the holder
// renews it (a CAS on the revision it read) every TTL/3. Another server
// takes it over only when the record's revision has not moved for a whole
// TTL by its own clock, so servers need no synchronised clocks: expiry is
// measured from when a server first saw a revision, never from a time
// written in the record. The holder works only until TTL − TTL/10 after
// the start of its last successful renewal, which ends before any other
// server can have taken over; a renewal that conflicts means the lease was
// lost and work stops at once. A holder shutting down deletes the record
// so a standby takes over without waiting.
const keyLeases = "leases/"

type leaseRecord struct {
	Holder string `json:"holder"`
}

// Lease is one named lease as seen by one server.
type Lease struct {
	state  *State
	key    string
	holder string
	ttl    time.Duration
	log    *slog.Logger
	now    func() time.Time

	rev      int64     // revision of the record as last read or written
	seenRev  int64     // another holder's revision, and when we first saw it
	seenAt   time.Time //
	until    time.Time // we may work until then
	lastSeen string    // holder as last read
}

// NewLease prepares the lease name for holder.
func NewLease(state *State, name, holder string, ttl time.Duration, log *slog.Logger) *Lease {
	return &Lease{state: state, key: keyLeases + name, holder: holder, ttl: ttl, log: log, now: time.Now}
}

// Run keeps trying to hold the lease until ctx ends. While it holds it,
// work runs with a context that ends when the lease is lost. onChange
// hears every change of who holds it.
func (l *Lease) Run(ctx context.Context, onChange func(active bool, holder string), work func(ctx context.Context)) {
	tick := time.NewTicker(l.ttl / 3)
	defer tick.Stop()
	w := &worker{}
	defer func() {
		if w.running() {
			w.stop()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := l.state.st.Txn(ctx, store.Delete(l.key, l.rev)); err == nil {
				l.log.Info("released the lease", "lease", l.key)
			}
		}
	}()
	for {
		held, holder, err := l.try(ctx)
		if err != nil && ctx.Err() == nil {
			l.log.Warn("lease", "lease", l.key, "err", err)
		}
		switch {
		case held && !w.running():
			l.log.Info("holding the lease: this server is active", "lease", l.key)
			w.start(ctx, work)
			onChange(true, l.holder)
		case !held && w.running():
			l.log.Warn("lost the lease: this server stands by", "lease", l.key, "holder", holder)
			w.stop()
			onChange(false, holder)
		case !held:
			onChange(false, holder)
		}
		// Work stops when the lease runs out unrenewed (the store is
		// unreachable), even between ticks.
		expire := time.NewTimer(time.Hour)
		if w.running() {
			expire.Reset(max(l.until.Sub(l.now()), 0))
		}
		select {
		case <-ctx.Done():
			expire.Stop()
			return
		case <-tick.C:
		case <-expire.C:
			l.log.Warn("the lease ran out unrenewed: this server stands by", "lease", l.key)
			w.stop()
			onChange(false, l.lastSeen)
		}
		expire.Stop()
	}
}

// worker runs the leased work in its own goroutine.
type worker struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *worker) running() bool { return w.cancel != nil }

func (w *worker) start(ctx context.Context, work func(ctx context.Context)) {
	wctx, cancel := context.WithCancel(ctx)
	w.cancel, w.done = cancel, make(chan struct{})
	go func() { defer close(w.done); work(wctx) }()
}

// stop ends the work and waits for it.
func (w *worker) stop() {
	if w.cancel == nil {
		return
	}
	w.cancel()
	<-w.done
	w.cancel = nil
}

// try renews, acquires or observes the lease once. held says whether we
// may work now; holder names whoever holds it.
func (l *Lease) try(ctx context.Context) (held bool, holder string, err error) {
	start := l.now()
	stillValid := start.Before(l.until)
	kv, err := l.state.st.Get(ctx, l.key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return l.write(ctx, start, 0)
	case err != nil:
		return stillValid, l.lastSeen, fmt.Errorf("read lease: %w", err)
	}
	var rec leaseRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		rec.Holder = "?"
	}
	l.lastSeen = rec.Holder
	if rec.Holder == l.holder && kv.Revision == l.rev {
		return l.write(ctx, start, kv.Revision)
	}
	if rec.Holder == l.holder {
		// Our name at a revision we did not write: another process
		// with our name. Treat it as anyone else's.
		l.until = time.Time{}
	}
	if kv.Revision != l.seenRev {
		l.seenRev, l.seenAt = kv.Revision, start
		return false, rec.Holder, nil
	}
	if start.Sub(l.seenAt) < l.ttl {
		return false, rec.Holder, nil
	}
	l.log.Info("the lease expired; taking it over", "lease", l.key, "from", rec.Holder)
	return l.write(ctx, start, kv.Revision)
}

// write creates (rev 0) or renews the record at rev.
func (l *Lease) write(ctx context.Context, start time.Time, rev int64) (bool, string, error) {
	value, _ := json.Marshal(leaseRecord{Holder: l.holder})
	op := store.Create(l.key, value)
	if rev != 0 {
		op = store.Update(l.key, value, rev)
	}
	newRev, err := l.state.st.Txn(ctx, op)
	if err != nil {
		l.until = time.Time{}
		if errors.Is(err, store.ErrConflict) {
			return false, l.lastSeen, nil // someone else got there first
		}
		return false, l.lastSeen, fmt.Errorf("write lease: %w", err)
	}
	l.state.wroteOutsideState(newRev)
	l.rev, l.lastSeen = newRev, l.holder
	l.until = start.Add(l.ttl - l.ttl/10)
	return true, l.holder, nil
}
