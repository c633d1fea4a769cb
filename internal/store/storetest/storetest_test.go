package storetest

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/internal/eventlog"
)

// memStore is a small reference store. Its flaws switch on one deliberate
// bug each, to prove the suite notices it.
type memStore struct {
	flaw string
	mu   sync.Mutex
	data map[string]store.KV
	rev  int64
	log  *eventlog.Log
}

func newMem(flaw string) *memStore {
	return &memStore{flaw: flaw, data: map[string]store.KV{}, rev: 1, log: eventlog.New(1, 10000, 64<<20)}
}

func (m *memStore) out(kv store.KV) store.KV {
	if m.flaw != "share-values" {
		kv.Value = slices.Clone(kv.Value)
	}
	return kv
}

func (m *memStore) Get(_ context.Context, key string) (store.KV, error) {
	if err := store.CheckKey(key); err != nil && m.flaw != "accept-empty-key" {
		return store.KV{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	kv, ok := m.data[key]
	if !ok && m.flaw != "get-missing-ok" {
		return store.KV{}, store.ErrNotFound
	}
	return m.out(kv), nil
}

func (m *memStore) List(_ context.Context, prefix string) ([]store.KV, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.flaw == "list-loose-prefix" {
		prefix = strings.TrimSuffix(prefix, "/")
	}
	var kvs []store.KV
	for k, kv := range m.data {
		if strings.HasPrefix(k, prefix) {
			kvs = append(kvs, m.out(kv))
		}
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
	return kvs, m.rev, nil
}

func (m *memStore) Txn(_ context.Context, ops ...store.Op) (int64, error) {
	if err := store.CheckOps(ops); err != nil && m.flaw != "accept-empty-key" {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, op := range ops {
		if op.Guard {
			if m.flaw == "guard-ignored" {
				continue
			}
			for k, kv := range m.data {
				if strings.HasPrefix(k, op.Key) && kv.Revision > op.Revision {
					return 0, &store.ConflictError{Key: k, Want: op.Revision, Have: kv.Revision}
				}
			}
			continue
		}
		have := m.data[op.Key].Revision
		skip := (m.flaw == "create-overwrites" && op.Revision == 0) ||
			(m.flaw == "update-ignores-rev" && op.Revision > 0 && !op.Delete && have > 0) ||
			(m.flaw == "delete-ignores-rev" && op.Delete && have > 0)
		if have != op.Revision && !skip {
			if m.flaw == "partial-txn" && i > 0 {
				m.apply(ops[:i])
			}
			return 0, &store.ConflictError{Key: op.Key, Want: op.Revision, Have: have}
		}
	}
	if m.flaw == "racy-cas" {
		// Check, then write later: another writer slips in between.
		m.mu.Unlock()
		time.Sleep(time.Millisecond)
		m.mu.Lock()
	}
	return m.apply(ops), nil
}

func (m *memStore) apply(ops []store.Op) int64 {
	m.rev++
	var evs []store.Event
	for _, op := range ops {
		if op.Guard {
			continue
		}
		if m.flaw == "rev-per-op" && len(evs) > 0 {
			m.log.Append(m.rev, evs)
			evs = nil
			m.rev++
		}
		if op.Delete {
			delete(m.data, op.Key)
			evs = append(evs, store.Event{Type: store.EventDelete, KV: store.KV{Key: op.Key, Revision: m.rev}})
			continue
		}
		v := slices.Clone(op.Value)
		if m.flaw == "share-values" {
			v = op.Value
		}
		if m.flaw == "truncate-large" && len(v) > 1<<19 {
			v = v[:1<<19]
		}
		kv := store.KV{Key: op.Key, Value: v, Revision: m.rev}
		m.data[op.Key] = kv
		evs = append(evs, store.Event{Type: store.EventPut, KV: kv})
	}
	m.log.Append(m.rev, evs)
	return m.rev
}

func (m *memStore) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, <-chan error) {
	switch m.flaw {
	case "watch-ignores-cancel":
		ctx = context.Background()
	case "watch-ignores-fromrev":
		fromRev = 0
	case "watch-drops-deletes":
		in, errs := m.log.Watch(ctx, prefix, fromRev)
		out := make(chan store.Event)
		go func() {
			defer close(out)
			for ev := range in {
				if ev.Type != store.EventDelete {
					out <- ev
				}
			}
		}()
		return out, errs
	}
	return m.log.Watch(ctx, prefix, fromRev)
}

func (m *memStore) Compact(_ context.Context, rev int64) error {
	if m.flaw == "compact-noop" {
		return nil
	}
	return m.log.Compact(rev)
}

func (m *memStore) Close() error {
	m.log.Close()
	return nil
}

func TestReferenceStorePasses(t *testing.T) {
	Run(t, func(*testing.T) store.Store { return newMem("") })
}

// mutants maps each flaw to the subtest that must catch it.
var mutants = map[string]string{
	"get-missing-ok":        "GetMissing",
	"create-overwrites":     "CreateTwiceConflicts",
	"update-ignores-rev":    "UpdateChecksRevision",
	"delete-ignores-rev":    "DeleteChecksRevision",
	"partial-txn":           "TxnAllOrNothing",
	"rev-per-op":            "RevisionsIncrease",
	"list-loose-prefix":     "ListSortedAndPrefixBounded",
	"accept-empty-key":      "InvalidRequestsRejected",
	"share-values":          "ValuesAreCopied",
	"truncate-large":        "LargeValue",
	"racy-cas":              "ConcurrentCASLosesNoUpdate",
	"watch-drops-deletes":   "WatchFromNow",
	"watch-ignores-fromrev": "WatchReplaysThenFollows",
	"watch-ignores-cancel":  "WatchEndsOnCancel",
	"compact-noop":          "WatchCompacted",
	"guard-ignored":         "GuardSeesNewKeys",
}

const mutantEnv = "STORETEST_MUTANT"

// TestMutant runs the suite against one flawed store; it is meant to fail
// and runs only as TestSuiteCatchesEveryFlaw's subprocess.
func TestMutant(t *testing.T) {
	flaw := os.Getenv(mutantEnv)
	if flaw == "" {
		t.Skip("runs only under TestSuiteCatchesEveryFlaw")
	}
	// A flawed store often fails by never sending an event; no need to
	// wait long for it.
	timeout = 3 * time.Second
	Run(t, func(*testing.T) store.Store { return newMem(flaw) })
}

// TestSuiteCatchesEveryFlaw proves each subtest can fail: for every subtest
// a store with a matching bug makes exactly that subtest fail.
func TestSuiteCatchesEveryFlaw(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("inside a mutant run")
	}
	covered := map[string]bool{}
	for _, sub := range mutants {
		covered[sub] = true
	}
	for _, tc := range suite {
		if !covered[tc.name] {
			t.Errorf("subtest %s has no mutant proving it can fail", tc.name)
		}
	}
	// The runs mostly wait on timeouts, so all go at once rather than
	// -test.parallel at a time.
	type result struct {
		out []byte
		err error
	}
	results := map[string]*result{}
	var wg sync.WaitGroup
	for flaw := range mutants {
		r := &result{}
		results[flaw] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMutant$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), mutantEnv+"="+flaw)
			r.out, r.err = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for flaw, sub := range mutants {
		t.Run(flaw, func(t *testing.T) {
			r := results[flaw]
			if r.err == nil {
				t.Fatalf("the suite passed a store with flaw %q", flaw)
			}
			if !strings.Contains(string(r.out), "--- FAIL: TestMutant/"+sub+" ") {
				t.Fatalf("flaw %q: subtest %s did not fail; output:\n%s", flaw, sub, r.out)
			}
		})
	}
}
