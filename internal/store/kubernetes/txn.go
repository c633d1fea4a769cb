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
	// maxCommits bounds the head's list of recent commits: a watch from a
	// revision older than the oldest kept gets ErrCompacted.
	maxCommits = 128
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
// 1. Read the head; if it holds a pending transaction, apply it first.
// 2. Check every op against its record (and guards against the records under
// their prefix). With no transaction pending, records hold exactly the state
// at the head's revision.
// 3. Commit: CAS the head (on the resourceVersion read in 1) to revision+1
// with the transaction as pending, each op carrying the resourceVersion of
// its record object. If the head moved, start again from 1.
// 4. Apply the pending transaction to the records and clear it (rollForward).
// The transaction is durable from 3 on; step 4 may be finished by anyone.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	if err := store.CheckOps(ops); err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	s.txnMu.Lock()
	defer s.txnMu.Unlock()
	committed, err := s.commit(ctx, ops)
	if err != nil {
		return 0, err
	}
	// Failing to apply it now loses nothing: the next writer, or a
	// watcher, finishes it.
	if cleared, err := s.rollForward(ctx, committed); err == nil {
		s.lastHead = cleared
	}
	return committed.Spec.Revision, nil
}

// commit runs steps 1 to 3 of Txn and returns the head holding the
// committed transaction as pending.
func (s *Store) commit(ctx context.Context, ops []store.Op) (*object, error) {
	for attempt := 0; attempt < maxHeadAttempts; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("txn: %w", err)
		}
		// The head this process left after its last commit saves a read
		// when no other process wrote since; if one did, the CAS below
		// fails and the next attempt reads the head afresh.
		head, cached := s.lastHead, s.lastHead != nil
		s.lastHead = nil
		if !cached {
			var err error
			if head, err = s.head(ctx); err != nil {
				return nil, fmt.Errorf("txn: %w", err)
			}
		}
		if head.Spec.Head.Pending != nil {
			if _, err := s.rollForward(ctx, head); err != nil {
				return nil, fmt.Errorf("txn: finish the pending transaction %d: %w", head.Spec.Head.Pending.Revision, err)
			}
			continue
		}
		pending, err := s.check(ctx, head.Spec.Revision+1, ops)
		if cached && errors.Is(err, store.ErrConflict) {
			// Records checked against a stale head may be half way
			// through another process's transaction: confirm the
			// conflict with a fresh read.
			continue
		}
		if err != nil {
			return nil, err
		}
		next := *head
		h := *head.Spec.Head
		h.Pending = pending
		next.Spec.Revision = pending.Revision
		next.Spec.Head = &h
		committed, err := s.update(ctx, &next)
		if apierrors.IsConflict(err) {
			// Another writer committed (or cleared) first: our reads may
			// be stale. Back off a little so writers in other processes
			// do not collide in lock step.
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

// check compares ops with the records and returns the transaction to commit
// at rev, or the first conflict in op order.
func (s *Store) check(ctx context.Context, rev int64, ops []store.Op) (*pendingTxn, error) {
	p := &pendingTxn{Revision: rev}
	var all map[string]*object // the snapshot guards read, listed at most once
	for _, op := range ops {
		if op.Guard {
			if all == nil {
				var err error
				if _, all, _, err = s.snapshot(ctx); err != nil {
					return nil, fmt.Errorf("txn: guard %q: %w", op.Key, err)
				}
			}
			if ce := guardConflict(all, op); ce != nil {
				return nil, ce
			}
			continue
		}
		o, err := s.record(ctx, op.Key)
		if err != nil {
			return nil, fmt.Errorf("txn: read %q: %w", op.Key, err)
		}
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
	h.Commits = append(append([]commit(nil), h.Commits...),
		commit{Revision: p.Revision, ResourceVersion: head.Metadata.ResourceVersion})
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
	s.txnMu.Lock()
	defer s.txnMu.Unlock()
	s.lastHead = nil
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
