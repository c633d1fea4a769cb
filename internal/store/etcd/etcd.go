// Package etcd implements store.Store on an etcd v3 cluster. Every store key
// lives under a configurable prefix (default "/terrane/"); store revisions
// are etcd's own revisions, so the whole cluster shares one counter.
//
// A Txn is one etcd transaction whose guards are the ops' revisions and whose
// failure branch reads the guarded keys, so a conflict names its key without
// a second round trip. Watch rides clientv3's watch, which reconnects by
// itself; on top of that this package re-opens the watch from the next
// revision whenever etcd cancels it for a transient reason (no leader, lost
// stream), and otherwise ends it with an error — a watch never stops
// silently.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/logutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/terrane-net/terrane/internal/store"
)

// DefaultPrefix is where Terrane's keys live when Config.Prefix is empty.
const DefaultPrefix = "/terrane/"

// Config says how to reach etcd.
type Config struct {
	// Endpoints are client URLs, e.g. https://10.0.0.1:2379.
	Endpoints []string
	// TLS, when set, is used for every connection (client certificates
	// included); nil means plain HTTP.
	TLS *tls.Config
	// Username and Password authenticate when etcd auth is on.
	Username, Password string
	// DialTimeout bounds the first connection; 0 means 5 s.
	DialTimeout time.Duration
	// Prefix is prepended to every store key; "" means DefaultPrefix.
	Prefix string
}

// listPage is the most keys one List round trip fetches.
const listPage = 1000

// Store is a store.Store backed by etcd.
type Store struct {
	cli    *clientv3.Client
	prefix string
	// reopens counts watches re-opened after etcd cancelled them.
	reopens atomic.Int64
}

var _ store.Store = (*Store)(nil)

// New connects to etcd and checks it answers within the dial timeout.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("connect to etcd: no endpoints configured")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	lg, err := logutil.CreateDefaultZapLogger(zap.ErrorLevel)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd: logger: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DialTimeout: cfg.DialTimeout,
		Logger:      lg,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pingCtx, cfg.Prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
	}
	return &Store{cli: cli, prefix: cfg.Prefix}, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := store.CheckKey(key); err != nil {
		return store.KV{}, fmt.Errorf("get: %w", err)
	}
	resp, err := s.cli.Get(ctx, s.prefix+key)
	if err != nil {
		return store.KV{}, fmt.Errorf("get %q: %w", key, mapErr(err))
	}
	if len(resp.Kvs) == 0 {
		return store.KV{}, fmt.Errorf("get %q: %w", key, store.ErrNotFound)
	}
	return s.kv(resp.Kvs[0]), nil
}

// List implements store.Store. Large listings are read in pages pinned to
// the first page's revision, so the result is one consistent snapshot.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	start := s.prefix + prefix
	end := clientv3.GetPrefixRangeEnd(start)
	var (
		kvs []store.KV
		rev int64
	)
	for from := start; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, fmt.Errorf("list %q: %w", prefix, mapErr(err))
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			kvs = append(kvs, s.kv(kv))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return kvs, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Txn implements store.Store.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	if err := store.CheckOps(ops); err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	cmps := make([]clientv3.Cmp, 0, len(ops))
	writes := make([]clientv3.Op, 0, len(ops))
	reads := make([]clientv3.Op, 0, len(ops))
	for _, op := range ops {
		key := s.prefix + op.Key
		if op.Guard {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "<", op.Revision+1).WithPrefix())
			reads = append(reads, clientv3.OpGet(key, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithMinModRev(op.Revision+1), clientv3.WithLimit(1)))
			continue
		}
		if op.Revision == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", op.Revision))
		}
		if op.Delete {
			writes = append(writes, clientv3.OpDelete(key))
		} else {
			writes = append(writes, clientv3.OpPut(key, string(op.Value)))
		}
		reads = append(reads, clientv3.OpGet(key, clientv3.WithKeysOnly()))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(writes...).Else(reads...).Commit()
	if err != nil {
		return 0, fmt.Errorf("txn on %q: %w", ops[0].Key, mapErr(err))
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	// The Else branch read every guarded key at the revision the guards
	// failed at: the first mismatch is the conflict.
	for i, op := range ops {
		var have int64
		r := resp.Responses[i].GetResponseRange()
		if r != nil && len(r.Kvs) > 0 {
			have = r.Kvs[0].ModRevision
		}
		if op.Guard {
			if have > op.Revision {
				return 0, &store.ConflictError{Key: strings.TrimPrefix(string(r.Kvs[0].Key), s.prefix), Want: op.Revision, Have: have}
			}
			continue
		}
		if have != op.Revision {
			return 0, &store.ConflictError{Key: op.Key, Want: op.Revision, Have: have}
		}
	}
	return 0, fmt.Errorf("txn on %q: etcd rejected the guards but every revision matched at %d", ops[0].Key, resp.Header.Revision)
}

// Compact discards etcd's history before rev (for the whole cluster, not
// only this prefix). Production clusters compact by themselves; this serves
// tests and operators.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if _, err := s.cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return fmt.Errorf("compact to %d: %w", rev, mapErr(err))
	}
	return nil
}

// Close closes the client; running watches end with an error.
func (s *Store) Close() error {
	return s.cli.Close()
}

// kv turns an etcd record into a store record without the prefix. etcd's
// client hands out fresh slices per response, so Value is the caller's.
func (s *Store) kv(kv *mvccpb.KeyValue) store.KV {
	return store.KV{
		Key:      strings.TrimPrefix(string(kv.Key), s.prefix),
		Value:    kv.Value,
		Revision: kv.ModRevision,
	}
}

// mapErr turns etcd's errors callers branch on into the store's.
func mapErr(err error) error {
	if errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("%w: %w", store.ErrCompacted, err)
	}
	return err
}
