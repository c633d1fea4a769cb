package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/bolt"
	"github.com/terrane-net/terrane/internal/store/etcd"
	"github.com/terrane-net/terrane/internal/store/etcd/etcdtest"
)

// The concurrency proof: many simulated nodes, each registering itself,
// claiming and releasing blocks and allocating VM endpoints, through
// several servers sharing one store. Afterwards, from a fresh load of the
// store: no address twice, no block owned twice, and every acknowledged
// write present.

const concurrencyTopology = `
networks:
  - {name: pods, cidr: 10.0.0.0/14, blockSize: 26}
  - {name: vms, cidr: 10.8.0.0/16, blockSize: 28, namespaces: [openstack]}
topologies:
  - networks: [pods, vms]
    groups:
      - {name: zone-a, assignment: {matchLabels: {zone: a}}}
      - {name: zone-b, assignment: {matchLabels: {zone: b}}}
      - {name: zone-c, assignment: {matchLabels: {zone: c}}}
`

// ledger records what the servers acknowledged.
type ledger struct {
	mu        sync.Mutex
	blocks    map[netip.Prefix]string // live block → owner, as acknowledged
	endpoints map[string]netip.Addr   // live VM endpoint → address
	addrs     map[netip.Addr]string   // address → endpoint, while live
	failures  []string
	acks      atomic.Int64
	errs      atomic.Int64
	firstErrs sync.Map // error text → count, for the log
}

// failed counts a failed operation and backs off briefly, as a node would.
func (l *ledger) failed(err error) {
	l.errs.Add(1)
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	n, _ := l.firstErrs.LoadOrStore(msg, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	time.Sleep(20 * time.Millisecond) // a node's retry backoff, not a wait for a condition
}

// node is one simulated node's loop: join, then claim/release blocks and
// allocate/release VM endpoints, rounds times.
func node(ctx context.Context, servers []*State, name string, rounds int, l *ledger) {
	r := rand.New(rand.NewPCG(uint64(len(name)), uint64(name[len(name)-1])))
	pick := func() *State { return servers[r.IntN(len(servers))] } // any server, every operation
	zone := []string{"a", "b", "c"}[len(name)%3]
	for {
		_, err := pick().Do(ctx, func(a *ipam.Allocator) ([]ipam.Change, error) {
			return a.AddHost(ipam.HostSpec{Name: name, Labels: map[string]string{"zone": zone}})
		})
		if err == nil {
			break
		}
		l.failed(err)
		if ctx.Err() != nil {
			return
		}
	}
	var mine []netip.Prefix
	for r := 0; r < rounds && ctx.Err() == nil; r++ {
		var p netip.Prefix
		_, err := pick().Do(ctx, func(a *ipam.Allocator) ([]ipam.Change, error) {
			var ch []ipam.Change
			var err error
			p, ch, err = a.ClaimBlock(name, "pods")
			return ch, err
		})
		if err == nil {
			l.mu.Lock()
			if owner, taken := l.blocks[p]; taken {
				l.failures = append(l.failures, fmt.Sprintf("block %s acknowledged to %s while %s holds it", p, name, owner))
			}
			l.blocks[p] = name
			l.mu.Unlock()
			l.acks.Add(1)
			mine = append(mine, p)
		} else {
			l.failed(err)
		}
		// Two VM ports of this host at once, through two servers: they
		// land in the same block, so only the block's CAS keeps their
		// addresses apart.
		var vms sync.WaitGroup
		for _, side := range []string{"a", "b"} {
			id := fmt.Sprintf("%s/vm-%d%s", name, r, side)
			srv := pick()
			vms.Add(1)
			go func() {
				defer vms.Done()
				var ep ipam.Endpoint
				_, err := srv.Do(ctx, func(a *ipam.Allocator) ([]ipam.Change, error) {
					var ch []ipam.Change
					var err error
					ep, ch, err = a.AllocateEndpoint(ipam.EndpointRequest{ID: id, Host: name, Network: "vms", Namespace: "openstack"})
					return ch, err
				})
				if err != nil {
					l.failed(err)
					return
				}
				l.mu.Lock()
				if other, taken := l.addrs[ep.Addr]; taken {
					l.failures = append(l.failures, fmt.Sprintf("address %s acknowledged to %s while %s holds it", ep.Addr, id, other))
				}
				l.addrs[ep.Addr], l.endpoints[id] = id, ep.Addr
				l.mu.Unlock()
				l.acks.Add(1)
			}()
		}
		vms.Wait()
		if r%2 == 1 && len(mine) > 0 { // release the oldest block
			old := mine[0]
			l.mu.Lock()
			delete(l.blocks, old) // may be released even if the answer is lost
			l.mu.Unlock()
			if _, err := pick().Do(ctx, func(a *ipam.Allocator) ([]ipam.Change, error) {
				return a.ReleaseBlock(name, "pods", old)
			}); err != nil && !errors.Is(err, ipam.ErrNotFound) {
				l.failed(err)
				// Unknown outcome: the block may still be ours.
			}
			mine = mine[1:]
		}
	}
}

// verify loads the store afresh and checks the ledger against it.
func verify(t *testing.T, st store.Store, l *ledger) {
	t.Helper()
	for _, f := range l.failures {
		t.Error(f)
	}
	s, err := NewState(context.Background(), st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("load the store after the run: %v", err)
	}
	err = s.View(context.Background(), func(a *ipam.Allocator, _ *topologyRecord) error {
		if f := a.Check(); len(f) > 0 {
			t.Errorf("check: %+v", f)
		}
		owner := map[netip.Prefix]string{}
		for _, b := range a.Blocks("pods") {
			owner[b.Prefix] = b.Host
		}
		for p, h := range l.blocks {
			if owner[p] != h {
				t.Errorf("acknowledged block %s of %s is owned by %q in the store", p, h, owner[p])
			}
		}
		seen := map[netip.Addr]string{}
		for _, e := range a.Endpoints() {
			if prev, dup := seen[e.Addr]; dup {
				t.Errorf("address %s held by %s and %s", e.Addr, prev, e.ID)
			}
			seen[e.Addr] = e.ID
		}
		for id, addr := range l.endpoints {
			if got, ok := a.Endpoint(id); !ok || got.Addr != addr {
				t.Errorf("acknowledged endpoint %s (%s) is %v in the store", id, addr, got.Addr)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func runNodes(ctx context.Context, servers []*State, nodes, rounds int, l *ledger) {
	var wg sync.WaitGroup
	for i := 0; i < nodes; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			node(ctx, servers, fmt.Sprintf("node-%03d", i), rounds, l)
		}(i)
	}
	wg.Wait()
}

func newLedger() *ledger {
	return &ledger{blocks: map[netip.Prefix]string{}, endpoints: map[string]netip.Addr{}, addrs: map[netip.Addr]string{}}
}

func applyTopology(t *testing.T, s *State) {
	t.Helper()
	if _, err := s.ApplyTopology(context.Background(), api.TopologyRequest{Topology: concurrencyTopology}); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentNodesBolt(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "terrane.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Three servers over one store (in one process, as bolt allows): every
	// operation goes to any of them, so their CAS writes collide.
	servers := startStates(t, []store.Store{st, st, st})
	applyTopology(t, servers[0])
	l := newLedger()
	nodes, rounds := 100, 10
	if testing.Short() {
		nodes, rounds = 20, 5
	}
	runNodes(context.Background(), servers, nodes, rounds, l)
	t.Logf("%d acknowledged writes, %d failed operations", l.acks.Load(), l.errs.Load())
	l.firstErrs.Range(func(k, v any) bool {
		t.Errorf("%d × %s (an embedded store never fails)", v.(*atomic.Int64).Load(), k)
		return true
	})
	verify(t, st, l)
}

// TestConcurrentNodesEtcdMemberKilled runs three servers against a real
// three-member etcd cluster and kills one member mid-run, then restarts it.
func TestConcurrentNodesEtcdMemberKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster; skipped with -short")
	}
	cluster := etcdtest.StartCluster(t, 3)
	ctx := context.Background()

	var stores []store.Store
	for i := 0; i < 3; i++ {
		st, err := etcd.New(ctx, etcd.Config{Endpoints: cluster.Endpoints(), Prefix: "/proof/"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		stores = append(stores, st)
	}
	servers := startStates(t, stores)
	applyTopology(t, servers[0])
	l := newLedger()
	runCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	nodes, rounds := 100, 30
	if raceEnabled {
		rounds = 8 // the same 100 nodes and the same kill, fewer rounds
	}
	total := int64(nodes * rounds * 3) // a block claim and two VM endpoints per round
	done := make(chan struct{})
	go func() {
		defer close(done)
		runNodes(runCtx, servers, nodes, rounds, l)
	}()
	// Kill a member (not the leader) once a third of the writes are
	// acknowledged; restart it once two thirds are.
	victim := (cluster.Leader() + 1) % 3
	waitAcks(l, total/3, done)
	atKill := l.acks.Load()
	cluster.Kill(victim)
	waitAcks(l, total*2/3, done)
	atRestart := l.acks.Load()
	cluster.Restart(victim)
	<-done
	t.Logf("etcd member %d killed at %d and restarted at %d acknowledged writes; %d in all, %d failed operations", victim, atKill, atRestart, l.acks.Load(), l.errs.Load())
	if atRestart <= atKill || atKill >= total*9/10 {
		t.Errorf("the kill did not fall mid-run: killed at %d, restarted at %d of %d", atKill, atRestart, total)
	}
	l.firstErrs.Range(func(k, v any) bool {
		t.Logf("%6d × %s", v.(*atomic.Int64).Load(), k)
		return true
	})
	if l.acks.Load() < total*9/10 {
		t.Errorf("only %d of %d writes acknowledged: the cluster did not keep serving", l.acks.Load(), total)
	}
	verify(t, stores[2], l)
}

// startStates starts one server State per store, each following the store.
func startStates(t *testing.T, stores []store.Store) []*State {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var servers []*State
	for _, st := range stores {
		s, err := NewState(context.Background(), st, log)
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		t.Cleanup(stop)
		go s.Follow(ctx)
		servers = append(servers, s)
	}
	return servers
}

// waitAcks waits until the ledger holds n acknowledgements (or the run
// ended).
func waitAcks(l *ledger, n int64, done <-chan struct{}) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for l.acks.Load() < n {
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}
