// Package bolt is Terrane's embedded store: one bbolt file, owned by one
// process, that implements store.Store with a global revision counter like
// etcd's.
//
// File layout: bucket "kv" maps each key to an 8-byte big-endian revision of
// its last write followed by the value; bucket "meta" holds "rev", the
// revision of the last commit, and "format", the layout version. Every Txn
// is one bbolt read-write transaction, fsynced before it returns, so a crash
// loses no acknowledged write and never exposes half a Txn. Watch history is
// kept in memory only: the only watchers are in this process, and after a
// restart a watch from before the restart reports store.ErrCompacted.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/internal/eventlog"
)

// Options tune a store; the zero value is right for production.
type Options struct {
	// LockTimeout bounds the wait for the file lock another process holds;
	// 0 means 1 s.
	LockTimeout time.Duration
	// HistoryEvents and HistoryBytes bound the in-memory history that
	// Watch(fromRev) replays from; 0 means 10000 events and 64 MiB.
	HistoryEvents int
	HistoryBytes  int
	// NoSync skips fsync on commit: a crash may lose acknowledged writes or
	// corrupt the file. For throwaway test and benchmark stores only.
	NoSync bool
}

const (
	defaultLockTimeout   = time.Second
	defaultHistoryEvents = 10000
	defaultHistoryBytes  = 64 << 20
	format               = "1"
)

var (
	kvBucket   = []byte("kv")
	metaBucket = []byte("meta")
	revKey     = []byte("rev")
	formatKey  = []byte("format")
)

// Store is a store.Store in a bbolt file.
type Store struct {
	path string
	db   *bolt.DB
	log  *eventlog.Log
	// qmu guards the queue of transactions waiting for a group commit;
	// leading is set while one caller commits the queue (Txn).
	qmu     sync.Mutex
	queue   []*pendingTxn
	leading bool
	groups  atomic.Int64 // group commits made, for tests
}

// pendingTxn is one Txn waiting in the group-commit queue.
type pendingTxn struct {
	ops    []store.Op
	rev    int64
	events []store.Event
	err    error
	done   chan struct{}
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the store file at path. Only one process may have
// it open; another waits up to Options.LockTimeout and then fails.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = defaultLockTimeout
	}
	if opts.HistoryEvents <= 0 {
		opts.HistoryEvents = defaultHistoryEvents
	}
	if opts.HistoryBytes <= 0 {
		opts.HistoryBytes = defaultHistoryBytes
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoSync: opts.NoSync})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store: store file %s is in use by another process (waited %s for its lock)", path, opts.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	var rev int64
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(kvBucket); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		switch f := meta.Get(formatKey); {
		case f == nil:
			// A new file starts at revision 1, as etcd does.
			if err := meta.Put(formatKey, []byte(format)); err != nil {
				return err
			}
			if err := meta.Put(revKey, encodeRev(1)); err != nil {
				return err
			}
		case string(f) != format:
			return fmt.Errorf("file format %q, this build reads only %q", f, format)
		}
		rev = decodeRev(meta.Get(revKey))
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{
		path: path,
		db:   db,
		log:  eventlog.New(rev, opts.HistoryEvents, opts.HistoryBytes),
	}, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := store.CheckKey(key); err != nil {
		return store.KV{}, fmt.Errorf("get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return store.KV{}, fmt.Errorf("get %q: %w", key, err)
	}
	var kv store.KV
	err := s.db.View(func(tx *bolt.Tx) error {
		rec := tx.Bucket(kvBucket).Get([]byte(key))
		if rec == nil {
			return store.ErrNotFound
		}
		var err error
		kv, err = decodeKV(key, rec)
		return err
	})
	if err != nil {
		return store.KV{}, fmt.Errorf("get %q: %w", key, err)
	}
	return kv, nil
}

// List implements store.Store. The keys and the revision come from one
// bbolt read transaction, so they are consistent.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("list %q: %w", prefix, err)
	}
	var (
		kvs []store.KV
		rev int64
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		rev = decodeRev(tx.Bucket(metaBucket).Get(revKey))
		c := tx.Bucket(kvBucket).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && hasPrefix(k, p); k, v = c.Next() {
			kv, err := decodeKV(string(k), v)
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list %q: %w", prefix, err)
	}
	return kvs, rev, nil
}

// Txn implements store.Store. Transactions that arrive while another
// commits are committed together, as one bbolt read-write transaction and one
// fsync (group commit): each is still checked and applied on its own, in
// arrival order, against the writes of those before it, and gets its own
// revision; a conflict fails only its own. So concurrent writers (an agent's
// burst of pod ADDs) share the disk's flushes instead of queueing for one
// each.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	if err := store.CheckOps(ops); err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	p := &pendingTxn{ops: ops, done: make(chan struct{})}
	s.qmu.Lock()
	s.queue = append(s.queue, p)
	if s.leading {
		s.qmu.Unlock()
		<-p.done
		return p.rev, p.err
	}
	s.leading = true
	for {
		batch := s.queue
		s.queue = nil
		s.qmu.Unlock()
		s.commit(batch)
		s.qmu.Lock()
		if len(s.queue) == 0 {
			s.leading = false
			s.qmu.Unlock()
			break
		}
	}
	return p.rev, p.err
}

// maxGroupCommit bounds how many transactions share one commit.
const maxGroupCommit = 256

// commit commits batch (in slices of at most maxGroupCommit) and wakes
// each caller. Only the leader calls it, so commits and their appends to
// the log stay in revision order.
func (s *Store) commit(batch []*pendingTxn) {
	for len(batch) > 0 {
		n := min(len(batch), maxGroupCommit)
		s.commitGroup(batch[:n])
		batch = batch[n:]
	}
}

func (s *Store) commitGroup(group []*pendingTxn) {
	s.groups.Add(1)
	err := s.db.Update(func(tx *bolt.Tx) error {
		kv, meta := tx.Bucket(kvBucket), tx.Bucket(metaBucket)
		rev := decodeRev(meta.Get(revKey))
		for _, p := range group {
			p.rev, p.events, p.err = 0, nil, nil
			if conflict := checkOps(kv, p.ops); conflict != nil {
				p.err = conflict
				continue
			}
			rev++
			events, err := applyOps(kv, p.ops, rev)
			if err != nil {
				return err
			}
			p.rev, p.events = rev, events
		}
		return meta.Put(revKey, encodeRev(rev))
	})
	for _, p := range group {
		switch {
		case p.err != nil: // its conflict
		case err != nil:
			p.rev, p.err = 0, fmt.Errorf("txn: %w", err)
		default:
			s.log.Append(p.rev, p.events)
		}
		close(p.done)
	}
}

// checkOps reports the first op whose revision does not match.
func checkOps(kv *bolt.Bucket, ops []store.Op) *store.ConflictError {
	for _, op := range ops {
		if op.Guard {
			c := kv.Cursor()
			for k, rec := c.Seek([]byte(op.Key)); k != nil && bytes.HasPrefix(k, []byte(op.Key)); k, rec = c.Next() {
				if have := decodeRev(rec); have > op.Revision {
					return &store.ConflictError{Key: string(k), Want: op.Revision, Have: have}
				}
			}
			continue
		}
		var have int64
		if rec := kv.Get([]byte(op.Key)); rec != nil {
			have = decodeRev(rec)
		}
		if have != op.Revision {
			return &store.ConflictError{Key: op.Key, Want: op.Revision, Have: have}
		}
	}
	return nil
}

// applyOps writes ops at rev and returns their events.
func applyOps(kv *bolt.Bucket, ops []store.Op, rev int64) ([]store.Event, error) {
	events := make([]store.Event, 0, len(ops))
	for _, op := range ops {
		if op.Guard {
			continue
		}
		if op.Delete {
			if err := kv.Delete([]byte(op.Key)); err != nil {
				return nil, err
			}
			events = append(events, store.Event{Type: store.EventDelete, KV: store.KV{Key: op.Key, Revision: rev}})
			continue
		}
		rec := make([]byte, 8+len(op.Value))
		binary.BigEndian.PutUint64(rec, uint64(rev))
		copy(rec[8:], op.Value)
		if err := kv.Put([]byte(op.Key), rec); err != nil {
			return nil, err
		}
		// The event shares rec's copy of the value: neither is mutated.
		events = append(events, store.Event{Type: store.EventPut, KV: store.KV{Key: op.Key, Value: rec[8:], Revision: rev}})
	}
	return events, nil
}

// Watch implements store.Store from the in-memory history.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, <-chan error) {
	return s.log.Watch(ctx, prefix, fromRev)
}

// Compact drops the watch history before rev: a later Watch from below rev
// fails with store.ErrCompacted. Records are unaffected.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.log.Compact(rev)
}

// Close ends every watch and releases the file and its lock.
func (s *Store) Close() error {
	s.log.Close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

func encodeRev(rev int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(rev))
}

// decodeRev reads the revision at the start of a record or meta value.
func decodeRev(b []byte) int64 {
	if len(b) < 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// decodeKV copies a record out of bbolt's memory map, which is valid only
// inside the read transaction.
func decodeKV(key string, rec []byte) (store.KV, error) {
	if len(rec) < 8 {
		return store.KV{}, fmt.Errorf("corrupt record %q: %d bytes, want at least 8", key, len(rec))
	}
	return store.KV{Key: key, Value: append([]byte{}, rec[8:]...), Revision: decodeRev(rec)}, nil
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}
