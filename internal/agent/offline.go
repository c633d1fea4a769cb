package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/store"
)

// offlineState is what the agent knows of the server's reachability. a.mu
// guards it.
//
// With every server down the agent keeps serving ADDs and DELs from the
// blocks it owns: an ADD writes only the node-local state, a DEL frees the
// address locally, and the report loop carries both to the server once it
// answers again. What the agent cannot do without a server is claim a
// block, so an ADD that finds the host's blocks full fails at once with
// errServerUnreachableFull instead of waiting for a claim that cannot
// succeed.
//
// "The server" is every server the client was given (--server may list
// several): the client fails over between them and returns an error that
// client.Unreachable accepts only when none answered. So the agent is
// offline, and terrane_agent_server_unreachable_seconds counts, only while
// no server answers; a server killed while another answers costs nothing.
type offlineState struct {
	// since is when the server was first seen unreachable (zero: it
	// answered last time it was asked).
	since time.Time
	// register: the agent started from the kept snapshot and registers
	// once the server answers.
	register bool
	// keptKey and keptAt describe the snapshot last kept (keepSnapshot).
	keptKey string
	keptAt  time.Time
}

// contact notes the outcome of a call to the server: an unreachable server
// marks the agent offline (logged once), any answer marks it online again
// (logged once) and starts the claims ahead skipped meanwhile; the report
// loop, retrying all along, carries the addresses handed out.
func (a *Agent) contact(err error) {
	if err != nil && !client.Unreachable(err) {
		err = nil // the server answered
	}
	a.mu.Lock()
	back := err == nil && !a.off.since.IsZero()
	bg := a.runCtx
	defer func() {
		a.mu.Unlock()
		if back && bg != nil {
			// The claims skipped while offline, now: the room kept
			// ahead is what the next outage is ridden out on.
			for _, n := range a.networks() {
				a.ensureFreeAsync(bg, n)
			}
		}
	}()
	switch {
	case err != nil && a.off.since.IsZero():
		a.off.since = time.Now()
		free := map[string]uint64{}
		for n, p := range a.pools {
			free[n] = p.Free()
		}
		a.log.Warn("the server is unreachable: pods keep starting from this host's blocks, reported once it answers", "free", free, "err", err)
	case err == nil && !a.off.since.IsZero():
		a.log.Info("the server answers again: reporting the addresses handed out and claiming ahead", "offline", time.Since(a.off.since).Round(time.Second).String())
		a.off.since = time.Time{}
	}
}

// offline reports whether the server was unreachable the last time it was
// asked. a.mu is held.
func (a *Agent) offlineLocked() bool { return !a.off.since.IsZero() }

// keySnapshot holds the last cluster state the agent applied, so that an
// agent restarted while no server answers can start from it (startOffline).
const keySnapshot = "v1/snapshot"

// snapshotCacheEvery bounds how often the kept snapshot is rewritten for
// changes elsewhere in the cluster (peers' blocks: routes only). A change
// of the host's own blocks or of the topology is written at once.
const snapshotCacheEvery = 30 * time.Second

// keptSnapshot is the record under keySnapshot.
type keptSnapshot struct {
	Saved    time.Time     `json:"saved"`
	Snapshot *api.Snapshot `json:"snapshot"`
}

// ownedKey names the blocks s lists as this host's agent blocks and its
// topology: what must be kept at once when it changes.
func (a *Agent) ownedKey(s *api.Snapshot) string {
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(s.Blocks)) {
		for _, blk := range s.Blocks[n] {
			if blk.Host == a.cfg.Host && blk.Issuer == ipam.IssuerAgent {
				fmt.Fprintf(&b, "%s %s %s;", n, blk.Group, blk.Prefix)
			}
		}
	}
	sum := sha256.Sum256([]byte(s.Topology))
	return b.String() + hex.EncodeToString(sum[:])
}

// keepSnapshot writes s, the snapshot just applied, to the node-local
// store when the host's blocks or the topology changed, or when the kept
// one is older than snapshotCacheEvery. A failure is logged: it costs an
// offline start, never an address.
func (a *Agent) keepSnapshot(ctx context.Context, s *api.Snapshot) {
	key := a.ownedKey(s)
	a.mu.Lock()
	due := key != a.off.keptKey || time.Since(a.off.keptAt) >= snapshotCacheEvery
	a.mu.Unlock()
	if !due {
		return
	}
	if err := a.writeSnapshot(ctx, s); err != nil {
		a.log.Warn("keeping the cluster state for an offline start", "err", err)
		return
	}
	a.mu.Lock()
	a.off.keptKey, a.off.keptAt = key, time.Now()
	a.mu.Unlock()
}

// writeSnapshot keeps s with, of the host's own blocks, only those its
// pools have open: a block closed to be given back, or given back already
// while s still lists it, is not kept.
func (a *Agent) writeSnapshot(ctx context.Context, s *api.Snapshot) error {
	a.mu.Lock()
	k := *s
	k.Blocks = make(map[string][]ipam.BlockInfo, len(s.Blocks))
	for n, bs := range s.Blocks {
		p := a.pools[n]
		k.Blocks[n] = slices.DeleteFunc(slices.Clone(bs), func(b ipam.BlockInfo) bool {
			return b.Host == a.cfg.Host && b.Issuer == ipam.IssuerAgent && (p == nil || !p.IsOpen(b.Prefix))
		})
	}
	a.mu.Unlock()
	v, err := json.Marshal(keptSnapshot{Saved: time.Now().UTC(), Snapshot: &k})
	if err != nil {
		return err
	}
	op := store.Create(keySnapshot, v)
	switch kv, err := a.local.st.Get(ctx, keySnapshot); {
	case err == nil:
		op = store.Update(keySnapshot, v, kv.Revision)
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	_, err = a.local.st.Txn(ctx, op)
	return err
}

// forgetKeptBlocks keeps the current snapshot again once blocks the
// caller is about to give back are closed in the pool (so writeSnapshot
// leaves them out): an agent that restarts offline must not hand out
// addresses from a block the server may have given to another host since.
// The caller does not release them when it fails.
func (a *Agent) forgetKeptBlocks(ctx context.Context) error {
	a.mu.Lock()
	s := a.snap
	a.off.keptKey = "" // the next snapshot is kept whatever it holds
	a.mu.Unlock()
	if s == nil {
		return nil
	}
	if err := a.writeSnapshot(ctx, s); err != nil {
		return fmt.Errorf("forget the blocks in the kept cluster state: %w", err)
	}
	return nil
}

// startOffline applies the kept snapshot when no server answers at start:
// the host's blocks as the server last listed them, the topology and the
// peers' blocks to route. It reports false when none is kept. The agent
// is then offline, and registers again once the server answers.
func (a *Agent) startOffline(ctx context.Context) (*api.Snapshot, bool, error) {
	kv, err := a.local.st.Get(ctx, keySnapshot)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var k keptSnapshot
	if err := json.Unmarshal(kv.Value, &k); err != nil || k.Snapshot == nil {
		return nil, false, fmt.Errorf("the kept cluster state %s does not decode (%v): the agent waits for the server", keySnapshot, err)
	}
	if err := a.applySnapshot(k.Snapshot); err != nil {
		return nil, false, fmt.Errorf("the kept cluster state: %w", err)
	}
	a.mu.Lock()
	a.off.since, a.off.register = time.Now(), true
	a.off.keptKey, a.off.keptAt = a.ownedKey(k.Snapshot), k.Saved
	a.mu.Unlock()
	a.log.Warn("the server is unreachable: starting from the cluster state kept at "+k.Saved.Format(time.RFC3339)+"; pods start from this host's blocks, reported once it answers",
		"revision", k.Snapshot.Revision)
	return k.Snapshot, true, nil
}

// registerIfOffline registers the host once the server answers after an
// offline start (its labels or address may have changed with the restart).
func (a *Agent) registerIfOffline(ctx context.Context) error {
	a.mu.Lock()
	need := a.off.register
	a.mu.Unlock()
	if !need {
		return nil
	}
	err := a.register(ctx)
	if ctx.Err() == nil {
		a.contact(err)
	}
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.off.register = false
	a.mu.Unlock()
	return nil
}
