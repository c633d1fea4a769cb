package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/terrane-net/terrane/internal/store"
)

const (
	// A watch from a past revision starts at the newest commit in the
	// head's list at or before it. Only every commitStride-th commit is
	// listed (a watch then skips the few writes before its revision), and
	// only the last maxCommits: a watch from before the oldest gets
	// ErrCompacted. The head is read by every Get and Txn and written twice
	// per commit, so the list is kept short: 32 entries span 256 commits.
	commitStride = 8
	maxCommits   = 32
	// maxHeadAttempts bounds the commit attempts a Txn makes when other
	// writers keep moving the head (not revision conflicts: those fail at
	// once).
	maxHeadAttempts = 100
)

// errHeadContended is returned when a Txn could not commit in
// maxHeadAttempts attempts because the head kept moving.
var errHeadContended = errors.New("the store head kept changing under the transaction")

// Txn implements store.Store.
//
// 1. Read the head and the ops' records in one consistent list (the whole
// namespace when there are guards), the head's pending transaction, if any,
// overlaid.
// 2. Check every op against its record and every guard against the records
// under its prefix. A mismatch is the caller's conflict: nothing was written.
// 3. If a transaction is pending, apply it (rollForward) and start again:
// with none pending, records hold exactly the state at the head's revision.
// 4. Commit: CAS the head (on the resourceVersion read in 1) to revision+1
// with the transaction as pending, each op carrying the resourceVersion of
// its record object. If the head moved, start again from 1.
// 5. Apply the pending transaction to the records and clear it. The
// transaction is durable from 4 on; step 5 may be finished by anyone.
//
// Across processes the head's CAS is the only serialization. Within one,
// commitMu keeps goroutines from racing each other's CAS on the head (a lost
// CAS costs a write; waiting costs nothing); while another goroutine holds
// it, steps 1 and 2 run first without it, so a transaction that conflicts
// fails after one read instead of queueing, and one that passes runs them
// again under the lock.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	if err := store.CheckOps(ops); err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	if !s.commitMu.TryLock() {
		if _, err := s.commit(ctx, ops, true); err != nil {
			return 0, err
		}
		s.commitMu.Lock()
	}
	defer s.commitMu.Unlock()
	committed, err := s.commit(ctx, ops, false)
	if err != nil {
		return 0, err
	}
	// Failing to apply it now loses nothing: the next writer, or a
	// watcher, finishes it.
	_, _ = s.rollForward(ctx, committed)
	return committed.Spec.Revision, nil
}

// commit runs steps 1 to 4 of Txn and returns the head holding the
// committed transaction as pending. With checkOnly it stops after step 2,
// returning nil or the conflict.
func (s *Store) commit(ctx context.Context, ops []store.Op, checkOnly bool) (*object, error) {
	var keys []string
	guards := false
	for _, op := range ops {
		if op.Guard {
			guards = true
		} else {
			keys = append(keys, op.Key)
		}
	}
	var waited int64 // the pending revision already waited for once
	for attempt := 0; attempt < maxHeadAttempts; attempt++ {
		var (
			head *object
			recs map[string]*object
			err  error
		)
		if guards {
			head, recs, _, err = s.snapshot(ctx)
		} else {
			head, recs, err = s.read(ctx, keys)
		}
		if err != nil {
			return nil, fmt.Errorf("txn: read: %w", err)
		}
		pending, err := check(head, recs, ops)
		if err != nil || checkOnly {
			return nil, err
		}
		if p := head.Spec.Head.Pending; p != nil {
			// Its writer is most likely applying it right now: wait once
			// before doing the same work beside it.
			if waited != p.Revision {
				waited = p.Revision
				sleep(ctx, attempt+3)
				continue
			}
			if _, err := s.rollForward(ctx, head); err != nil {
				return nil, fmt.Errorf("txn: finish the pending transaction %d: %w", p.Revision, err)
			}
			continue
		}
		next := *head
		h := *head.Spec.Head
		h.Pending = pending
		next.Spec.Revision = pending.Revision
		next.Spec.Head = &h
		committed, err := s.update(ctx, &next)
		if apierrors.IsConflict(err) {
			// Another writer committed (or cleared) first: our reads are
			// stale. Back off a little so writers do not collide in lock
			// step.
			sleep(ctx, attempt)
			continue
		}
		if err != nil && (apierrors.IsRequestEntityTooLargeError(err) || strings.Contains(err.Error(), "request is too large")) {
			return nil, fmt.Errorf("txn: commit revision %d: the transaction is too large for one Kubernetes object "+
				"(its values total %d bytes; keep them under about 1 MiB): %w", pending.Revision, valueBytes(pending), err)
		}
		if err != nil {
			// The outcome is unknown when the request timed out; the
			// caller re-reads, as after any failed write.
			return nil, fmt.Errorf("txn: commit revision %d: %w", pending.Revision, err)
		}
		return committed, nil
	}
	return nil, fmt.Errorf("txn: %w (%d attempts)", errHeadContended, maxHeadAttempts)
}

func valueBytes(p *pendingTxn) int {
	n := 0
	for _, op := range p.Ops {
		n += len(op.Value)
	}
	return n
}

// check compares ops with recs (read with head, its pending transaction
// overlaid) and returns the transaction to commit after head, or the first
// conflict in op order.
func check(head *object, recs map[string]*object, ops []store.Op) (*pendingTxn, error) {
	p := &pendingTxn{Revision: head.Spec.Revision + 1}
	for _, op := range ops {
		if op.Guard {
			if ce := guardConflict(recs, op); ce != nil {
				return nil, ce
			}
			continue
		}
		o := recs[op.Key]
		var have int64
		if o != nil && !o.Spec.Deleted {
			have = o.Spec.Revision
		}
		if have != op.Revision {
			return nil, &store.ConflictError{Key: op.Key, Want: op.Revision, Have: have}
		}
		k, raw := keyFields(op.Key)
		po := pendingOp{Key: k, RawKey: raw, Delete: op.Delete}
		if !op.Delete {
			po.Value = clone(op.Value)
		}
		if o != nil {
			// An overlaid record carries the version from before its
			// op was applied, but nothing is committed from a read
			// with a transaction pending.
			po.ObjectVersion = o.Metadata.ResourceVersion
		}
		p.Ops = append(p.Ops, po)
	}
	return p, nil
}

// guardConflict returns a conflict naming the first key (in key order) under
// the guard's prefix written after its revision, or nil.
func guardConflict(recs map[string]*object, op store.Op) *store.ConflictError {
	var ce *store.ConflictError
	for key, o := range recs {
		if o.Spec.Deleted || !strings.HasPrefix(key, op.Key) || o.Spec.Revision <= op.Revision {
			continue
		}
		if ce == nil || key < ce.Key {
			ce = &store.ConflictError{Key: key, Want: op.Revision, Have: o.Spec.Revision}
		}
	}
	return ce
}

// rollForward applies head's pending transaction to the records, in op
// order, and clears it. It returns the cleared head, or nil when another
// process cleared it first. Any number of processes may run it at once for the
// same transaction: each record write is fenced by the resourceVersion the
// commit read, so it lands exactly once, and a fence that no longer holds
// means that op is already applied (only this transaction can move a record
// while it is pending).
func (s *Store) rollForward(ctx context.Context, head *object) (*object, error) {
	p := head.Spec.Head.Pending
	for _, op := range p.Ops {
		if err := s.apply(ctx, op, p.Revision); err != nil {
			return nil, fmt.Errorf("apply %q: %w", op.key(), err)
		}
	}
	next := *head
	h := *head.Spec.Head
	h.Pending = nil
	if p.Revision%commitStride == 0 {
		h.Commits = append(append([]commit(nil), h.Commits...),
			commit{Revision: p.Revision, ResourceVersion: head.Metadata.ResourceVersion})
	}
	if len(h.Commits) > maxCommits {
		h.Commits = h.Commits[len(h.Commits)-maxCommits:]
	}
	next.Spec.Head = &h
	cleared, err := s.update(ctx, &next)
	if apierrors.IsConflict(err) {
		// Someone else cleared it already.
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("clear pending transaction %d: %w", p.Revision, err)
	}
	return cleared, nil
}

// apply writes one op of the pending transaction at rev. A delete leaves a
// tombstone, so the object never disappears and a later create of the same
// key is fenced by the tombstone's resourceVersion like any update.
func (s *Store) apply(ctx context.Context, op pendingOp, rev int64) error {
	o := recordFor(s.ns, op, rev)
	if op.ObjectVersion != "" {
		_, err := s.update(ctx, o)
		switch {
		case err == nil, apierrors.IsConflict(err):
			return nil
		case !apierrors.IsNotFound(err):
			return err
		}
		// Compact removed the tombstone this op was to overwrite:
		// create the record instead.
		o.Metadata.ResourceVersion = ""
	}
	_, err := s.create(ctx, o)
	if err == nil || apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// Compact implements storetest.Compactor: watches from below rev fail with
// store.ErrCompacted afterwards, and tombstones older than rev are removed.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	for attempt := 0; ; attempt++ {
		if attempt == maxHeadAttempts {
			return fmt.Errorf("compact to %d: %w", rev, errHeadContended)
		}
		head, err := s.head(ctx)
		if err != nil {
			return fmt.Errorf("compact to %d: %w", rev, err)
		}
		if rev > head.Spec.Revision {
			return fmt.Errorf("compact to revision %d: the store is only at %d", rev, head.Spec.Revision)
		}
		next := *head
		h := *head.Spec.Head
		if rev <= h.Compacted {
			return nil
		}
		h.Compacted = rev
		// Keep the newest commit at or below rev: a watch from rev starts
		// there.
		keep := 0
		for i, c := range h.Commits {
			if c.Revision <= rev {
				keep = i
			}
		}
		h.Commits = append([]commit(nil), h.Commits[keep:]...)
		next.Spec.Head = &h
		_, err = s.update(ctx, &next)
		if apierrors.IsConflict(err) {
			sleep(ctx, attempt)
			continue
		}
		if err != nil {
			return fmt.Errorf("compact to %d: %w", rev, err)
		}
		break
	}
	_, recs, _, err := s.snapshot(ctx)
	if err != nil {
		return fmt.Errorf("compact to %d: %w", rev, err)
	}
	for _, o := range recs {
		if !o.Spec.Deleted || o.Spec.Revision >= rev || o.Metadata.ResourceVersion == "" {
			continue
		}
		rv := o.Metadata.ResourceVersion
		err := s.res.Delete(ctx, o.Metadata.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("compact to %d: remove tombstone of %q: %w", rev, o.key(), err)
		}
	}
	return nil
}

// sleep backs off before commit attempt n+1: up to 2^n ms, at most 100 ms,
// with jitter.
func sleep(ctx context.Context, n int) {
	limit := time.Millisecond << min(n, 7)
	limit = min(limit, 100*time.Millisecond)
	t := time.NewTimer(time.Duration(rand.Int64N(int64(limit)) + 1))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
