package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/topology"
)

// watchRetryPause spaces watches that keep failing.
const watchRetryPause = 500 * time.Millisecond

// maxConflictRetries bounds how often an operation is retried after another
// writer changed a record it read.
const maxConflictRetries = 32

// ErrNoTopology: nothing can be allocated before a topology is applied.
var ErrNoTopology = errors.New("no topology applied yet; apply one with `terrane ctl topology apply FILE`")

// State is the cluster's allocation state: the pure allocator, kept equal to
// the records in the store. Operations run the allocator, turn the records
// its changes touch into compare-and-swap writes on the revisions last read,
// and commit them in one transaction; a conflict (another server wrote)
// reloads the state from the store and retries. The allocator is owned by
// State: every use holds mu.
type State struct {
	st  store.Store
	log *slog.Logger

	// qmu guards the queue of operations waiting for a group commit
	// (batch.go); leading is set while a caller commits the queue.
	qmu     sync.Mutex
	queue   []*request
	leading bool

	mu       sync.Mutex
	alloc    *ipam.Allocator // nil until a topology is applied
	topo     *topologyRecord
	revs     map[string]int64 // revision of every record we know
	rev      int64            // store revision the state is consistent at
	stale    bool             // a foreign write was seen: reload before use
	ours     map[int64]bool   // revisions of our own commits the watch has not passed
	writes   int64            // records written, for metrics
	commits  int64
	retries  int64
	loadedAt int64 // revision of the last reload: older events are in it
	// contiguous is the highest revision up to which every write is in the
	// state: the last reload, advanced by our own commits while no other
	// writer's commit falls between them. A commit that skips a revision
	// proves another server wrote: the state is then stale at once, without
	// waiting for the watch.
	contiguous int64
	loadErr    error // the last reload's failure, for health
	loads      int64 // reloads from a listing, for metrics and tests

	// seen is the newest revision of a write to Terrane's keys the state
	// knows of (its reloads, its commits, Follow's events); changed is
	// closed and replaced whenever seen moves, waking every long poll
	// (waitPast) from the one watch Follow holds. following is set while
	// Follow runs.
	seen      int64
	changed   chan struct{}
	following bool
	// reportSeen and reportChanged are seen and changed for the address
	// reports (followReports), which wake the policy polls only.
	reportSeen    int64
	reportChanged chan struct{}
	// policy holds the policy records (policy.go).
	policy *policyRecords

	// audit bounds when the audit calls a host gone or an address leaked
	// (0: ipam's defaults).
	audit ipam.AuditOptions
	// otherWrites counts records written outside the state (heartbeats,
	// address reports, leases), for metrics.
	otherWrites int64
	// releases are the agents' release requests by host (v1/releases/,
	// orphans.go), read with the state; orphanReleases counts those this
	// server asked, for metrics.
	releases       map[string][]ipam.OrphanedAddress
	orphanReleases int64
}

// NewState loads the state from st.
func NewState(ctx context.Context, st store.Store, log *slog.Logger) (*State, error) {
	s := &State{st: st, log: log, ours: map[int64]bool{}, changed: make(chan struct{}), reportChanged: make(chan struct{})}
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// reload rebuilds the allocator from every record in the store.
func (s *State) reload(ctx context.Context) error {
	err := s.load(ctx)
	s.loadErr = err
	return err
}

func (s *State) load(ctx context.Context) error {
	kvs, rev, err := s.st.List(ctx, keyAll)
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	alloc, topo, err := build(kvs)
	if err != nil {
		return fmt.Errorf("load state at revision %d: %w", rev, err)
	}
	s.alloc, s.topo, s.rev, s.stale = alloc, topo, rev, false
	s.loads++
	s.revs = make(map[string]int64, len(kvs))
	for _, kv := range kvs {
		s.revs[kv.Key] = kv.Revision
	}
	s.loadedAt, s.contiguous = rev, rev
	s.loadReleases(kvs)
	s.loadPolicy(kvs)
	s.notePast(rev)
	return nil
}

// build replays records into a fresh allocator.
func build(kvs []store.KV) (*ipam.Allocator, *topologyRecord, error) {
	byKey := map[string]store.KV{}
	for _, kv := range kvs {
		byKey[kv.Key] = kv
	}
	if kv, ok := byKey[keySchema]; ok {
		var sr schemaRecord
		if err := json.Unmarshal(kv.Value, &sr); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", keySchema, err)
		}
		if sr.Version > schemaVersion {
			return nil, nil, fmt.Errorf("the store holds schema version %d, newer than this binary's %d; upgrade terrane", sr.Version, schemaVersion)
		}
	}
	kv, ok := byKey[keyTopology]
	if !ok {
		return nil, nil, nil
	}
	var tr topologyRecord
	if err := json.Unmarshal(kv.Value, &tr); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyTopology, err)
	}
	a, err := tr.allocator()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyTopology, err)
	}
	// The persisted group prefixes replace the initial plan.
	var changes []ipam.Change
	t := a.Topology()
	for _, n := range t.Networks {
		for _, g := range n.Tree.All {
			for _, p := range a.GroupPrefixesOf(n.Name, g.Path) {
				changes = append(changes, ipam.Change{Kind: ipam.GroupPrefixRemoved, Network: n.Name, Group: g.Path, Prefix: p})
			}
		}
	}
	var adds, hosts, blocks, eps, nss []ipam.Change
	for _, kv := range kvs {
		var err error
		switch {
		case strings.HasPrefix(kv.Key, keyGroups):
			network := strings.TrimPrefix(kv.Key, keyGroups)
			var r groupsRecord
			if err = json.Unmarshal(kv.Value, &r); err == nil {
				for _, path := range slices.Sorted(maps.Keys(r.Groups)) {
					for _, p := range r.Groups[path] {
						adds = append(adds, ipam.Change{Kind: ipam.GroupPrefixAdded, Network: network, Group: path, Prefix: p})
					}
				}
			}
		case strings.HasPrefix(kv.Key, keyHosts):
			var r hostRecord
			if err = json.Unmarshal(kv.Value, &r); err == nil {
				hosts = append(hosts, ipam.Change{Kind: ipam.HostJoined, Host: strings.TrimPrefix(kv.Key, keyHosts), IP: r.IP, IP6: r.IP6, Labels: r.Labels, Groups: r.Groups})
			}
		case strings.HasPrefix(kv.Key, keyBlocks):
			var r blockRecord
			network, p, perr := parseBlockKey(kv.Key)
			if err = perr; err == nil {
				if err = json.Unmarshal(kv.Value, &r); err == nil {
					blocks = append(blocks, ipam.Change{Kind: ipam.BlockClaimed, Network: network, Group: r.Group, Host: r.Host, Prefix: p, Issuer: r.issuer()})
				}
			}
		case strings.HasPrefix(kv.Key, keyNamespaces):
			var r namespaceRecord
			if err = json.Unmarshal(kv.Value, &r); err == nil {
				nss = append(nss, ipam.Change{Kind: ipam.NamespaceNetworkSet, Namespace: strings.TrimPrefix(kv.Key, keyNamespaces), Network: r.Network})
			}
		case strings.HasPrefix(kv.Key, keyEndpoints):
			var r endpointRecord
			if err = json.Unmarshal(kv.Value, &r); err == nil {
				eps = append(eps, ipam.Change{Kind: ipam.EndpointAdded, Network: r.Network, Host: r.Host, Endpoint: strings.TrimPrefix(kv.Key, keyEndpoints), Namespace: r.Namespace, Addr: r.Addr, Prefix: r.Block, Since: r.Since})
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("record %s: %w", kv.Key, err)
		}
	}
	changes = slices.Concat(changes, adds, hosts, blocks, eps, nss)
	if err := a.Apply(changes); err != nil {
		return nil, nil, fmt.Errorf("the records are inconsistent: %w", err)
	}
	return a, &tr, nil
}

func (tr *topologyRecord) allocator() (*ipam.Allocator, error) {
	t, err := topology.Load(tr.Source)
	if err != nil {
		return nil, err
	}
	mode, err := ipam.ParsePlanMode(tr.Mode)
	if err != nil {
		return nil, err
	}
	a, _, err := ipam.New(t, ipam.Options{Mode: mode, Budgets: tr.Budget})
	return a, err
}

// View runs fn on the current allocator (nil before a topology is applied).
// fn must not keep the allocator or change it.
func (s *State) View(ctx context.Context, fn func(a *ipam.Allocator, topo *topologyRecord) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stale {
		if err := s.reload(ctx); err != nil {
			return err
		}
	}
	return fn(s.alloc, s.topo)
}

// backoff spreads servers that keep colliding on the same record: a random
// pause that grows with the attempt, at most about 50 ms.
func backoff(attempt int) {
	if attempt == 0 {
		return
	}
	time.Sleep(time.Duration(rand.Int64N(int64(min(attempt, 10)) * int64(5*time.Millisecond))))
}

// opsFor turns changes into one CAS write per touched record.
func (s *State) opsFor(changes []ipam.Change) ([]store.Op, error) {
	seen := map[string]bool{}
	var ops []store.Op
	for _, c := range changes {
		for _, k := range keysOf(c) {
			if seen[k] {
				continue
			}
			seen[k] = true
			v, exists, err := record(s.alloc, k)
			if err != nil {
				return nil, err
			}
			rev := s.revs[k]
			switch {
			case exists && rev == 0:
				ops = append(ops, store.Create(k, v))
			case exists:
				ops = append(ops, store.Update(k, v, rev))
			case rev != 0:
				ops = append(ops, store.Delete(k, rev))
			}
		}
	}
	return ops, nil
}

func (s *State) committed(ops []store.Op, rev int64) {
	for _, op := range ops {
		if op.Delete {
			delete(s.revs, op.Key)
		} else {
			s.revs[op.Key] = rev
		}
	}
	s.rev = rev
	s.notePast(rev)
	s.ours[rev] = true
	if rev == s.contiguous+1 {
		s.contiguous = rev
	} else {
		s.stale = true // another writer's commit came between ours
	}
	s.writes += int64(len(ops))
	s.commits++
}

// Follow watches the store for writes by other servers and marks the state
// stale when one arrives, so the next use reloads. It returns when ctx ends.
func (s *State) Follow(ctx context.Context) {
	s.mu.Lock()
	s.following = true
	s.mu.Unlock()
	reports := make(chan struct{})
	go func() { defer close(reports); s.followReports(ctx) }()
	defer func() {
		<-reports
		s.mu.Lock()
		s.following = false
		s.mu.Unlock()
	}()
	for ctx.Err() == nil {
		s.mu.Lock()
		from := s.rev + 1
		s.mu.Unlock()
		events, errs := s.st.Watch(ctx, keyAll, from)
		for ev := range events {
			s.mu.Lock()
			r := ev.KV.Revision
			// Events come in revision order: our commits before r are done.
			for k := range s.ours {
				if k < r {
					delete(s.ours, k)
				}
			}
			if r > s.loadedAt && !s.ours[r] {
				s.stale = true // another writer: even between our commits
			}
			s.notePast(r)
			s.mu.Unlock()
		}
		if err := <-errs; err != nil && ctx.Err() == nil {
			// Compacted or broken: reload (which moves the revision the
			// next watch starts from) and pause before watching again.
			s.log.Warn("store watch ended; reloading", "err", err)
			s.mu.Lock()
			if rerr := s.reload(ctx); rerr != nil {
				s.stale = true
				s.log.Warn("reload after the watch ended failed", "err", rerr)
			}
			s.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(watchRetryPause):
			}
		}
	}
}

// notePast records that the store holds a write to Terrane's keys at rev
// and wakes the long polls waiting for one. s.mu is held.
func (s *State) notePast(rev int64) {
	if rev <= s.seen {
		return
	}
	s.seen = rev
	close(s.changed)
	s.changed = make(chan struct{})
}

// Stats are counters for metrics.
type Stats struct {
	Commits, Writes, Retries, Revision int64
	// Reloads counts full reloads of the state from a store listing.
	Reloads int64
	// LoadErr is why the last reload from the store failed (nil: it did not).
	LoadErr error
	// OtherWrites counts records written outside the state: heartbeats,
	// address reports, leases.
	OtherWrites int64
	// OrphanReleases counts the orphaned pod addresses this server asked
	// agents to release.
	OrphanReleases int64
}

// Stats returns the state's counters.
func (s *State) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Commits: s.commits, Writes: s.writes, Retries: s.retries, Revision: s.rev, Reloads: s.loads, LoadErr: s.loadErr, OtherWrites: s.otherWrites, OrphanReleases: s.orphanReleases}
}
