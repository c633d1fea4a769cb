package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/terrane-net/terrane/internal/store"
)

// ErrClosed ends watches when the store is closed under them.
var ErrClosed = errors.New("kubernetes store closed")

// stuckPending is how long a watch waits for a pending transaction to be
// applied before applying it itself: its writer may have died after the
// commit, and without the record writes no watcher would ever see it.
const stuckPending = 2 * time.Second

// Watch implements store.Store. It watches the namespace's StoreRecord
// objects from the resourceVersion of the commit at or before fromRev (kept
// in the head's commit list) and turns each record write into an event,
// dropping writes of revisions before fromRev. Record writes happen in
// revision order and, within one transaction, in op order (see
// rollForward), so the events do too. When the API server times the watch
// out it is re-opened from the last resourceVersion seen; when the API no
// longer has that history (410 Gone) the watch ends with ErrCompacted.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, <-chan error) {
	events := make(chan store.Event, 16)
	errs := make(chan error, 1)
	// "From now" is fixed before Watch returns.
	startRV, minRev, err := s.watchStart(ctx, prefix, fromRev)
	go func() {
		defer close(errs)
		defer close(events)
		if err != nil {
			if ctx.Err() == nil {
				errs <- err
			}
			return
		}
		w := &watcher{s: s, prefix: prefix, minRev: minRev, rv: startRV, events: events}
		if err := w.run(ctx); err != nil && ctx.Err() == nil {
			errs <- err
		}
	}()
	return events, errs
}

// watchStart returns the resourceVersion to watch records from and the
// first revision to deliver.
func (s *Store) watchStart(ctx context.Context, prefix string, fromRev int64) (string, int64, error) {
	head, err := s.head(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("watch %q: %w", prefix, err)
	}
	h := head.Spec.Head
	if fromRev <= 0 || fromRev > head.Spec.Revision {
		// Every record write of a later revision follows this head write.
		return head.Metadata.ResourceVersion, max(fromRev, head.Spec.Revision+1), nil
	}
	if fromRev < h.Compacted {
		return "", 0, fmt.Errorf("watch %q from revision %d: %w (history starts at %d)", prefix, fromRev, store.ErrCompacted, h.Compacted)
	}
	commits := h.Commits
	if p := h.Pending; p != nil {
		// The head has not changed since it committed p.
		commits = append(commits, commit{Revision: p.Revision, ResourceVersion: head.Metadata.ResourceVersion})
	}
	rv := ""
	for _, c := range commits {
		if c.Revision <= fromRev {
			rv = c.ResourceVersion
		}
	}
	if rv == "" {
		oldest := int64(0)
		if len(commits) > 0 {
			oldest = commits[0].Revision
		}
		return "", 0, fmt.Errorf("watch %q from revision %d: %w (the head remembers commits from %d)", prefix, fromRev, store.ErrCompacted, oldest)
	}
	return rv, fromRev, nil
}

type watcher struct {
	s      *Store
	prefix string
	minRev int64
	// rv is the resourceVersion of the last event seen: a re-opened watch
	// continues after it.
	rv     string
	events chan<- store.Event
	// pending is the revision of a pending transaction seen on the head
	// and not yet seen cleared, since pendingAt.
	pending   int64
	pendingAt time.Time
}

func (w *watcher) run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for opened := 0; ; opened++ {
		if opened > 0 {
			w.s.reopens.Add(1)
		}
		opts := metav1.ListOptions{ResourceVersion: w.rv, AllowWatchBookmarks: true}
		if w.s.watchTimeout > 0 {
			secs := int64(w.s.watchTimeout / time.Second)
			opts.TimeoutSeconds = &secs
		}
		kw, err := w.s.res.Watch(ctx, opts)
		if err == nil {
			err = w.follow(ctx, kw)
			kw.Stop()
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			// The API server ended the watch (its timeout): re-open at
			// once.
			backoff = 50 * time.Millisecond
			continue
		case gone(err):
			return w.compacted(err)
		case !transient(err):
			return fmt.Errorf("watch %q: %w", w.prefix, err)
		}
		// The API server restarting, overloaded, or the connection lost:
		// re-open after a pause.
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		case <-ctx.Done():
			return nil
		case <-w.s.closed:
			return ErrClosed
		}
	}
}

// transient reports errors a re-opened watch may not meet again: not the
// API's refusals (forbidden, not found, invalid), which would only repeat.
func transient(err error) bool {
	var (
		ue *url.Error
		ne net.Error
	)
	if errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true // the connection, not the API
	}
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		return false // ErrClosed, an object this package cannot decode
	}
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err)
}

// follow delivers the events of one API watch until it ends (nil) or
// fails.
func (w *watcher) follow(ctx context.Context, kw watch.Interface) error {
	tick := time.NewTicker(stuckPending / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.s.closed:
			return ErrClosed
		case <-tick.C:
			w.finishStuck(ctx)
		case ev, ok := <-kw.ResultChan():
			if !ok {
				return nil
			}
			if err := w.handle(ctx, ev); err != nil {
				return err
			}
		}
	}
}

func (w *watcher) handle(ctx context.Context, ev watch.Event) error {
	if ev.Type == watch.Error {
		// run decides: ErrCompacted, re-open from w.rv, or the end.
		return apierrors.FromObject(ev.Object)
	}
	u, ok := ev.Object.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("watch %q: unexpected %T in a %s event", w.prefix, ev.Object, ev.Type)
	}
	w.rv = u.GetResourceVersion()
	if ev.Type == watch.Bookmark || ev.Type == watch.Deleted {
		// Deleted: Compact removing a tombstone, not a store write.
		return nil
	}
	o, err := fromUnstructured(u)
	if err != nil {
		return fmt.Errorf("watch %q: %w", w.prefix, err)
	}
	if o.Metadata.Name == headName {
		if p := o.Spec.Head.Pending; p != nil {
			w.pending, w.pendingAt = p.Revision, time.Now()
		} else {
			w.pending = 0
		}
		return nil
	}
	if o.Spec.Revision < w.minRev || !strings.HasPrefix(o.key(), w.prefix) {
		return nil
	}
	e := store.Event{Type: store.EventPut, KV: o.kv()}
	if o.Spec.Deleted {
		e = store.Event{Type: store.EventDelete, KV: store.KV{Key: o.key(), Revision: o.Spec.Revision}}
	}
	select {
	case w.events <- e:
		return nil
	case <-ctx.Done():
		return nil
	case <-w.s.closed:
		return ErrClosed
	}
}

// finishStuck applies a transaction that has been pending for too long.
func (w *watcher) finishStuck(ctx context.Context) {
	if w.pending == 0 || time.Since(w.pendingAt) < stuckPending {
		return
	}
	w.pendingAt = time.Now()
	head, err := w.s.head(ctx)
	if err != nil || head.Spec.Head.Pending == nil || head.Spec.Head.Pending.Revision != w.pending {
		return
	}
	// Errors leave it pending; the next tick or writer tries again.
	_, _ = w.s.rollForward(ctx, head)
}

func (w *watcher) compacted(err error) error {
	return fmt.Errorf("watch %q after resourceVersion %s: %w (the API server no longer has that history: %v)",
		w.prefix, w.rv, store.ErrCompacted, err)
}

// gone reports the API's "410 Gone: too old resource version".
func gone(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err) ||
		apierrors.ReasonForError(err) == metav1.StatusReasonExpired ||
		func() bool {
			var se apierrors.APIStatus
			return errors.As(err, &se) && se.Status().Code == http.StatusGone
		}()
}
