// Package store is the one small interface Terrane keeps its shared state
// behind: records by key, read, listed by prefix, written only by
// compare-and-swap on a revision, and watched from a revision. Backends: an
// embedded bbolt file (internal/store/bolt, the default), etcd v3
// (internal/store/etcd) and the Kubernetes API (internal/store/kubernetes).
// storetest holds the conformance suite every backend must pass.
package store

import (
	"context"
	"errors"
	"fmt"
)

// KV is one record.
type KV struct {
	Key   string
	Value []byte
	// Revision is the store revision of the record's last write; a CAS
	// names it to say "the record as I read it".
	Revision int64
}

// Op is one write of a transaction. Every write is a compare-and-swap:
//
//   - Revision 0: create; the key must not exist.
//   - Revision > 0: update (or delete); the key's current revision must be
//     exactly this.
//
// A guard (Guard set) writes nothing: it fails the transaction unless no key
// under the prefix Key was written after Revision. It lets a caller that
// listed a whole prefix at a revision commit only if nothing under it moved
// since — keys created after the listing included.
type Op struct {
	Key      string
	Value    []byte // ignored for Delete
	Delete   bool
	Guard    bool
	Revision int64
}

// Unchanged is a guard: nothing under prefix written after rev.
func Unchanged(prefix string, rev int64) Op { return Op{Key: prefix, Guard: true, Revision: rev} }

// Create is an Op that writes a new key.
func Create(key string, value []byte) Op { return Op{Key: key, Value: value} }

// Update is an Op that overwrites a key last written at rev.
func Update(key string, value []byte, rev int64) Op {
	return Op{Key: key, Value: value, Revision: rev}
}

// Delete is an Op that removes a key last written at rev.
func Delete(key string, rev int64) Op { return Op{Key: key, Delete: true, Revision: rev} }

// EventType says what happened to a key.
type EventType int

const (
	// EventPut: the key was created or updated.
	EventPut EventType = iota
	// EventDelete: the key was deleted.
	EventDelete
)

func (t EventType) String() string {
	if t == EventDelete {
		return "delete"
	}
	return "put"
}

// Event is one change seen by a watch. For deletes, KV.Value is empty and
// KV.Revision is the revision of the delete.
type Event struct {
	Type EventType
	KV   KV
}

// Store is what Terrane needs from a datastore.
type Store interface {
	// Get reads one key; ErrNotFound when it does not exist.
	Get(ctx context.Context, key string) (KV, error)
	// List reads every key with the prefix, sorted by key, and the store
	// revision the listing is consistent at (watch from rev+1 to follow).
	List(ctx context.Context, prefix string) (kvs []KV, rev int64, err error)
	// Txn applies all ops atomically or none of them. When a revision does
	// not match it fails with a *ConflictError (errors.Is ErrConflict)
	// naming the key. It returns the revision of the commit.
	Txn(ctx context.Context, ops ...Op) (rev int64, err error)
	// Watch streams every change under prefix from revision fromRev on
	// (fromRev 0: from now), in revision order, until ctx ends or the watch
	// fails. A failure is delivered as the last value on errs; ErrCompacted
	// when fromRev is older than the history the store keeps — the caller
	// lists again and watches from the listing's revision.
	Watch(ctx context.Context, prefix string, fromRev int64) (events <-chan Event, errs <-chan error)
	// Close releases the store.
	Close() error
}

// Errors callers branch on.
var (
	ErrNotFound  = errors.New("store: key not found")
	ErrConflict  = errors.New("store: revision conflict")
	ErrCompacted = errors.New("store: revision compacted")
)

// ConflictError names the key whose revision did not match.
type ConflictError struct {
	Key string
	// Want is the revision the caller expected (0: absent); Have the
	// current one (0: absent).
	Want, Have int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("store: revision conflict on %q: expected %d, found %d", e.Key, e.Want, e.Have)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
