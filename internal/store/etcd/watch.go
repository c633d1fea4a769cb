package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/terrane-net/terrane/internal/store"
)

// Bounds of the pause before a cancelled etcd watch is re-opened.
const (
	rewatchMin = 50 * time.Millisecond
	rewatchMax = 2 * time.Second
)

// errClosed ends the watches of a closed store.
var errClosed = errors.New("etcd store closed")

// Watch implements store.Store. "From now" (fromRev 0) is resolved to a
// revision before Watch returns, so every commit after the call is seen, and
// a re-opened watch resumes exactly where the last one stopped.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, <-chan error) {
	events := make(chan store.Event, 16)
	errs := make(chan error, 1)
	fail := func(err error) (<-chan store.Event, <-chan error) {
		errs <- err
		close(events)
		close(errs)
		return events, errs
	}
	if ctx.Err() != nil {
		close(events)
		close(errs)
		return events, errs
	}
	if fromRev <= 0 {
		resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithCountOnly())
		if err != nil {
			if ctx.Err() != nil {
				close(events)
				close(errs)
				return events, errs
			}
			return fail(fmt.Errorf("watch %q: read current revision: %w", prefix, mapErr(err)))
		}
		fromRev = resp.Header.Revision + 1
	}
	go func() {
		defer close(errs)
		defer close(events)
		if err := s.follow(ctx, s.prefix+prefix, fromRev, events); err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("watch %q: %w", prefix, err)
		}
	}()
	return events, errs
}

// follow streams events under key from next on into events until ctx ends
// or the watch fails for good.
func (s *Store) follow(ctx context.Context, key string, next int64, events chan<- store.Event) error {
	pause := rewatchMin
	for {
		// WithRequireLeader makes a member cut off from the leader cancel
		// the watch instead of holding it open with no events.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, key, clientv3.WithPrefix(), clientv3.WithRev(next), clientv3.WithProgressNotify())
		err := s.drain(ctx, wch, &next, events, &pause)
		cancel()
		if err != nil || ctx.Err() != nil {
			return err
		}
		if s.cli.Ctx().Err() != nil {
			return errClosed
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil
		case <-s.cli.Ctx().Done():
			return errClosed
		}
		pause = min(2*pause, rewatchMax)
	}
}

// drain forwards one etcd watch. It returns nil when the watch may be
// re-opened from *next, or the error that ends it.
func (s *Store) drain(ctx context.Context, wch clientv3.WatchChan, next *int64, events chan<- store.Event, pause *time.Duration) error {
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("from revision %d: %w (etcd compacted to %d)", *next, store.ErrCompacted, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("from revision %d: %w", *next, store.ErrCompacted)
			}
			if ctx.Err() != nil || s.cli.Ctx().Err() != nil {
				return nil
			}
			if !transient(err) {
				return err
			}
			s.reopens.Add(1)
			return nil // re-open from *next
		}
		if resp.IsProgressNotify() {
			// Every event up to the header revision has been sent.
			*next = max(*next, resp.Header.Revision+1)
			continue
		}
		for _, ev := range resp.Events {
			out := store.Event{Type: store.EventPut, KV: s.kv(ev.Kv)}
			if ev.Type == mvccpb.DELETE {
				out.Type = store.EventDelete
				out.KV.Value = nil
			}
			select {
			case events <- out:
			case <-ctx.Done():
				return nil
			case <-s.cli.Ctx().Done():
				return errClosed
			}
			*next = ev.Kv.ModRevision + 1
		}
		*pause = rewatchMin
	}
	return nil
}

// transient reports cancellations that re-opening the watch from the next
// revision cures: the member lost its leader or the stream broke. Anything
// else ends the watch with its error, and the caller lists again.
func transient(err error) bool {
	if errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrLeaderChanged) ||
		strings.Contains(err.Error(), "no leader") {
		return true
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	return code == codes.Unavailable || code == codes.Canceled
}
