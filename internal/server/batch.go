package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/store"
)

// Group commit. Operations arriving while a commit is in flight queue up;
// the caller that finds no commit running starts a leader that commits the
// queue in batches until it is empty: each operation runs on the allocator in turn and
// the records they touched go to the store in one transaction, so one fsync
// (or one etcd round trip) serves many callers. An operation that fails in
// the allocator fails alone; a conflict reloads and reruns the batch.

// maxBatch bounds how many operations share a transaction.
const maxBatch = 32

// commitTimeout bounds a batch's store round trips: the leader commits for
// callers whose contexts it does not hold.
const commitTimeout = 30 * time.Second

type opFunc func(a *ipam.Allocator) ([]ipam.Change, error)

type request struct {
	ctx     context.Context // the caller's: a request it gave up on is skipped
	op      opFunc
	changes []ipam.Change
	err     error
	done    chan struct{}
}

// Do runs an allocator operation and persists the records it changed with
// compare-and-swap writes, batched with concurrent operations (see above).
// It returns the committed changes.
func (s *State) Do(ctx context.Context, op func(a *ipam.Allocator) ([]ipam.Change, error)) ([]ipam.Change, error) {
	r := &request{ctx: ctx, op: op, done: make(chan struct{})}
	s.qmu.Lock()
	s.queue = append(s.queue, r)
	lead := !s.leading
	s.leading = true
	s.qmu.Unlock()
	if lead {
		// A goroutine of its own, so that under steady load no caller
		// is kept committing everyone else's operations.
		go s.lead()
	}
	select {
	case <-r.done:
		return r.changes, r.err
	case <-ctx.Done():
		// The operation may still commit: like any request whose answer
		// is lost, its outcome is unknown to this caller.
		return nil, ctx.Err()
	}
}

// lead commits queued operations until the queue is empty.
func (s *State) lead() {
	for {
		s.qmu.Lock()
		n := min(len(s.queue), maxBatch)
		batch := s.queue[:n:n]
		s.queue = s.queue[n:]
		if n == 0 {
			s.leading = false
		}
		s.qmu.Unlock()
		if n == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		s.mu.Lock()
		s.commitBatch(ctx, batch)
		s.mu.Unlock()
		cancel()
		for _, r := range batch {
			close(r.done)
		}
	}
}

// commitBatch runs the batch's operations and commits them; mu is held.
func (s *State) commitBatch(ctx context.Context, batch []*request) {
	pending := batch
	for attempt := 0; len(pending) > 0; attempt++ {
		if s.stale || (s.alloc == nil && attempt == 0) {
			if err := s.reload(ctx); err != nil {
				fail(pending, err)
				return
			}
		}
		if s.alloc == nil {
			fail(pending, ErrNoTopology)
			return
		}
		var all []ipam.Change
		var ran []*request
		for _, r := range pending {
			if err := r.ctx.Err(); err != nil {
				r.changes, r.err = nil, err // the caller gave up: do not act for it
				continue
			}
			r.changes, r.err = r.op(s.alloc)
			if r.err == nil && len(r.changes) > 0 {
				all = append(all, r.changes...)
				ran = append(ran, r)
			}
		}
		if attempt < maxConflictRetries && s.behind(ctx, pending) {
			continue // reload and rerun: another server wrote what we lack
		}
		if len(all) == 0 {
			return
		}
		ops, err := s.opsFor(all)
		if err != nil {
			s.stale = true
			fail(ran, err)
			return
		}
		if len(ops) > store.MaxTxnOps {
			// Too much for one transaction: drop this run and commit the
			// operations one transaction each.
			s.stale = true
			if len(pending) == 1 {
				fail(ran, fmt.Errorf("%w: the operation writes %d records, more than one store transaction may hold (%d)", ipam.ErrInvalid, len(ops), store.MaxTxnOps))
				return
			}
			// Every answer of this run came from state now discarded.
			for _, r := range pending {
				s.commitBatch(ctx, []*request{r})
			}
			return
		}
		rev, err := s.st.Txn(ctx, ops...)
		if err == nil {
			s.committed(ops, rev)
			return
		}
		// The allocator is now ahead of the store: rebuild it and rerun.
		s.stale = true
		if !errors.Is(err, store.ErrConflict) || attempt >= maxConflictRetries {
			fail(ran, fmt.Errorf("commit %d record writes: %w", len(ops), err))
			return
		}
		s.retries++
		backoff(attempt)
		// Rerun every request, not only those that wrote: the answers of
		// the others (an error, an existing endpoint) came from discarded
		// state too.
	}
}

// behind reports whether a request failed for want of something another
// server may have written (a host or endpoint we do not know yet) while
// the store has moved past our state: then the state is reloaded and the
// batch rerun, so a client that registered through one server can claim
// through another at once.
func (s *State) behind(ctx context.Context, rs []*request) bool {
	missing := false
	for _, r := range rs {
		missing = missing || errors.Is(r.err, ipam.ErrNotFound)
	}
	if !missing {
		return false
	}
	_, rev, err := s.st.List(ctx, keySchema)
	if err != nil || rev <= s.contiguous {
		return false
	}
	s.stale = true
	return true
}

func fail(rs []*request, err error) {
	for _, r := range rs {
		r.changes, r.err = nil, err
	}
}
