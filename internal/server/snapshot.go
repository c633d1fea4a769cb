package server

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
)

// Snapshot is the body of GET /v1/snapshot.
type Snapshot = api.Snapshot

// maxSnapshotWait bounds a long poll.
const maxSnapshotWait = 60 * time.Second

// getSnapshot answers GET /v1/snapshot[?after=REV[&wait=30s]][&host=H]
// (host: include H's VM ports and, for H's own identity or an admin, the
// release requests of its agent). With after,
// it answers once the state's revision is past after, or when wait (default
// 30 s) has passed, whichever comes first: a watch for agents that costs one
// request per change.
func (a *API) getSnapshot(w http.ResponseWriter, r *http.Request, id Identity) error {
	q := r.URL.Query()
	after, wait, err := longPoll(r)
	if err != nil {
		return err
	}
	minRev := a.state.waitPast(r.Context(), after, wait)
	var snap Snapshot
	err = a.state.viewAt(r.Context(), minRev, func(al *ipam.Allocator, tr *topologyRecord) error {
		snap = Snapshot{Revision: a.state.rev, Blocks: map[string][]ipam.BlockInfo{}, Groups: map[string]map[string][]netip.Prefix{}}
		if al == nil || tr == nil {
			return nil
		}
		snap.Topology, snap.Mode, snap.Budgets = string(tr.Source), tr.Mode, tr.Budget
		snap.Hosts = al.Hosts()
		for _, n := range al.Topology().Networks {
			snap.Blocks[n.Name] = al.Blocks(n.Name)
			snap.Groups[n.Name] = al.GroupPrefixes(n.Name)
		}
		snap.Namespaces = al.NamespaceNetworks()
		if host := q.Get("host"); host != "" {
			snap.Ports = al.EndpointsOf(host)
			if mayActOnHost(id, host) == nil {
				snap.Releases = slices.Clone(a.state.releases[host])
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, snap)
	return nil
}

// waitPast returns once the store has a write to Terrane's keys after
// revision after (its revision), or when wait passes or ctx ends (0).
// after 0 does not wait. While Follow runs, every waiter is woken from
// Follow's one watch (a broadcast: no store watch per long poll, which
// matters with thousands of agents on etcd); without it, each opens its
// own.
func (s *State) waitPast(ctx context.Context, after int64, wait time.Duration) int64 {
	if after == 0 || wait == 0 {
		return 0
	}
	s.mu.Lock()
	following := s.following
	s.mu.Unlock()
	if !following {
		return s.watchPast(ctx, after, wait)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		seen, changed := s.seen, s.changed // seen ≥ s.rev: load and committed note theirs
		s.mu.Unlock()
		if seen > after {
			return seen
		}
		select {
		case <-changed:
		case <-timer.C:
			return 0
		case <-ctx.Done():
			return 0
		}
	}
}

// watchPast is waitPast with a store watch of its own.
func (s *State) watchPast(ctx context.Context, after int64, wait time.Duration) int64 {
	s.mu.Lock()
	rev := s.rev
	s.mu.Unlock()
	if rev > after {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	events, errs := s.st.Watch(ctx, keyAll, after+1)
	ev, ok := <-events
	cancel()
	for range events { // drain so the watcher can end
	}
	<-errs
	if !ok {
		return 0
	}
	return ev.KV.Revision
}

// viewAt is View on a state that includes revision minRev: a write seen by
// a watch but not yet by Follow reloads the state first.
func (s *State) viewAt(ctx context.Context, minRev int64, fn func(a *ipam.Allocator, topo *topologyRecord) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stale || s.rev < minRev {
		if err := s.reload(ctx); err != nil {
			return err
		}
	}
	return fn(s.alloc, s.topo)
}
