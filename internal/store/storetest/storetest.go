// Package storetest is the conformance suite every store.Store backend must
// pass: the compare-and-swap rules, atomicity, revisions, prefix listing,
// watch order, replay and compaction, isolation of caller memory, and no lost
// updates under contention.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/store"
)

// Compactor is implemented by backends whose watch history can be cut on
// demand; the suite uses it to check store.ErrCompacted.
type Compactor interface {
	// Compact forgets history before rev: a Watch from below rev then
	// fails with store.ErrCompacted.
	Compact(ctx context.Context, rev int64) error
}

// timeout bounds every wait in the suite, so a hung backend fails instead
// of stalling the run. The suite's own mutation test shortens it.
var timeout = 20 * time.Second

// Run runs the suite. open must return a new, empty store for each call;
// Run closes it. Subtests run one after another.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// suite lists the subtests in the order Run runs them.
var suite = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"GetMissing", testGetMissing},
	{"CreateTwiceConflicts", testCreateTwice},
	{"UpdateChecksRevision", testUpdate},
	{"DeleteChecksRevision", testDelete},
	{"TxnAllOrNothing", testTxnAllOrNothing},
	{"GuardSeesNewKeys", testGuard},
	{"RevisionsIncrease", testRevisions},
	{"ListSortedAndPrefixBounded", testList},
	{"InvalidRequestsRejected", testInvalid},
	{"ValuesAreCopied", testValuesCopied},
	{"LargeValue", testLargeValue},
	{"ConcurrentCASLosesNoUpdate", testConcurrentCAS},
	{"WatchFromNow", testWatchFromNow},
	{"WatchReplaysThenFollows", testWatchReplay},
	{"WatchEndsOnCancel", testWatchCancel},
	{"WatchCompacted", testWatchCompacted},
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// mustTxn commits ops or fails the test.
func mustTxn(t *testing.T, s store.Store, ops ...store.Op) int64 {
	t.Helper()
	rev, err := s.Txn(ctxFor(t), ops...)
	if err != nil {
		t.Fatalf("Txn(%v): %v", keys(ops), err)
	}
	if rev <= 0 {
		t.Fatalf("Txn(%v) = revision %d, want > 0", keys(ops), rev)
	}
	return rev
}

// wantConflict checks err is a *ConflictError on key with the revisions.
func wantConflict(t *testing.T, err error, key string, want, have int64) {
	t.Helper()
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("error %v, want a conflict on %q", err, key)
	}
	var ce *store.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *store.ConflictError", err, err)
	}
	if ce.Key != key || ce.Want != want || ce.Have != have {
		t.Fatalf("conflict {Key:%q Want:%d Have:%d}, want {Key:%q Want:%d Have:%d}",
			ce.Key, ce.Want, ce.Have, key, want, have)
	}
}

// wantKV checks key holds value at rev.
func wantKV(t *testing.T, s store.Store, key string, value []byte, rev int64) {
	t.Helper()
	kv, err := s.Get(ctxFor(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if kv.Key != key || !bytes.Equal(kv.Value, value) || kv.Revision != rev {
		t.Fatalf("Get(%q) = {%q %q %d}, want {%q %q %d}", key, kv.Key, short(kv.Value), kv.Revision, key, short(value), rev)
	}
}

func wantMissing(t *testing.T, s store.Store, key string) {
	t.Helper()
	kv, err := s.Get(ctxFor(t), key)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", key, kv, err)
	}
}

func currentRev(t *testing.T, s store.Store) int64 {
	t.Helper()
	_, rev, err := s.List(ctxFor(t), "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return rev
}

func keys(ops []store.Op) []string {
	var ks []string
	for _, op := range ops {
		ks = append(ks, op.Key)
	}
	return ks
}

func short(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "…(" + strconv.Itoa(len(b)) + " bytes)"
	}
	return string(b)
}

func testGetMissing(t *testing.T, s store.Store) {
	wantMissing(t, s, "missing")
	mustTxn(t, s, store.Create("present", []byte("x")))
	wantMissing(t, s, "missing")
	wantMissing(t, s, "presen")
}

func testCreateTwice(t *testing.T, s store.Store) {
	rev := mustTxn(t, s, store.Create("k", []byte("one")))
	wantKV(t, s, "k", []byte("one"), rev)
	_, err := s.Txn(ctxFor(t), store.Create("k", []byte("two")))
	wantConflict(t, err, "k", 0, rev)
	wantKV(t, s, "k", []byte("one"), rev)
}

func testUpdate(t *testing.T, s store.Store) {
	r1 := mustTxn(t, s, store.Create("k", []byte("v1")))
	r2 := mustTxn(t, s, store.Update("k", []byte("v2"), r1))
	if r2 <= r1 {
		t.Fatalf("update revision %d not after create revision %d", r2, r1)
	}
	wantKV(t, s, "k", []byte("v2"), r2)

	_, err := s.Txn(ctxFor(t), store.Update("k", []byte("stale"), r1))
	wantConflict(t, err, "k", r1, r2)
	_, err = s.Txn(ctxFor(t), store.Update("k", []byte("future"), r2+100))
	wantConflict(t, err, "k", r2+100, r2)
	wantKV(t, s, "k", []byte("v2"), r2)

	_, err = s.Txn(ctxFor(t), store.Update("absent", []byte("x"), r2))
	wantConflict(t, err, "absent", r2, 0)
	wantMissing(t, s, "absent")
}

func testDelete(t *testing.T, s store.Store) {
	r1 := mustTxn(t, s, store.Create("k", []byte("v1")))
	r2 := mustTxn(t, s, store.Update("k", []byte("v2"), r1))
	_, err := s.Txn(ctxFor(t), store.Delete("k", r1))
	wantConflict(t, err, "k", r1, r2)
	wantKV(t, s, "k", []byte("v2"), r2)

	r3 := mustTxn(t, s, store.Delete("k", r2))
	if r3 <= r2 {
		t.Fatalf("delete revision %d not after %d", r3, r2)
	}
	wantMissing(t, s, "k")
	_, err = s.Txn(ctxFor(t), store.Delete("k", r2))
	wantConflict(t, err, "k", r2, 0)

	// A deleted key can be created again.
	r4 := mustTxn(t, s, store.Create("k", []byte("again")))
	wantKV(t, s, "k", []byte("again"), r4)
}

func testTxnAllOrNothing(t *testing.T, s store.Store) {
	ra := mustTxn(t, s, store.Create("a", []byte("a1")))
	rd := mustTxn(t, s, store.Create("d", []byte("d1")))
	before := currentRev(t, s)

	// Each case has exactly one bad op, in a different position.
	bad := [][]store.Op{
		{store.Create("b", []byte("b")), store.Update("a", []byte("a2"), ra+1000), store.Delete("d", rd)},
		{store.Update("a", []byte("a2"), ra), store.Delete("d", rd), store.Create("a/new", nil), store.Update("gone", nil, ra)},
		{store.Create("a", []byte("again")), store.Create("c", []byte("c"))},
	}
	wantKey := []string{"a", "gone", "a"}
	for i, ops := range bad {
		rev, err := s.Txn(ctxFor(t), ops...)
		if err == nil {
			t.Fatalf("case %d: Txn with a bad op committed at %d", i, rev)
		}
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Key != wantKey[i] {
			t.Fatalf("case %d: error %v, want a conflict naming %q", i, err, wantKey[i])
		}
	}
	wantKV(t, s, "a", []byte("a1"), ra)
	wantKV(t, s, "d", []byte("d1"), rd)
	for _, k := range []string{"b", "c", "a/new", "gone"} {
		wantMissing(t, s, k)
	}
	if after := currentRev(t, s); after != before {
		t.Fatalf("failed transactions moved the revision from %d to %d", before, after)
	}

	// The same ops with the right revisions all apply.
	rev := mustTxn(t, s, store.Create("b", []byte("b")), store.Update("a", []byte("a2"), ra), store.Delete("d", rd))
	wantKV(t, s, "a", []byte("a2"), rev)
	wantKV(t, s, "b", []byte("b"), rev)
	wantMissing(t, s, "d")
}

func testRevisions(t *testing.T, s store.Store) {
	start := currentRev(t, s)
	prev := start
	revs := map[string]int64{}
	for i := range 20 {
		var ops []store.Op
		for j := range i%4 + 1 {
			k := "r/" + strconv.Itoa((i+j)%7)
			ops = append(ops, store.Op{Key: k, Value: []byte(strconv.Itoa(i)), Revision: revs[k]})
		}
		rev := mustTxn(t, s, ops...)
		if rev <= prev {
			t.Fatalf("commit %d got revision %d, not after %d", i, rev, prev)
		}
		prev = rev
		for _, op := range ops {
			revs[op.Key] = rev
			// Every op of the transaction carries the commit revision.
			wantKV(t, s, op.Key, op.Value, rev)
		}
		if lr := currentRev(t, s); lr < rev {
			t.Fatalf("List after commit %d reports revision %d, before the commit's %d", i, lr, rev)
		}
	}
	kvs, _, err := s.List(ctxFor(t), "r/")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if kv.Revision != revs[kv.Key] {
			t.Fatalf("List: %q at revision %d, want %d", kv.Key, kv.Revision, revs[kv.Key])
		}
	}
}

func testList(t *testing.T, s store.Store) {
	all := []string{"a", "a/1", "a/2", "a/b/3", "a0", "ab", "b/1", "a/\xff"}
	rng := rand.New(rand.NewPCG(1, 2))
	shuffled := slices.Clone(all)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	var last int64
	for _, k := range shuffled {
		last = mustTxn(t, s, store.Create(k, []byte("v:"+k)))
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/1", "a/2", "a/b/3", "a/\xff"}},
		{"a", []string{"a", "a/1", "a/2", "a/b/3", "a/\xff", "a0", "ab"}},
		{"a/b/", []string{"a/b/3"}},
		{"b/1", []string{"b/1"}},
		{"c", nil},
		{"", []string{"a", "a/1", "a/2", "a/b/3", "a/\xff", "a0", "ab", "b/1"}},
	}
	for _, tc := range cases {
		kvs, rev, err := s.List(ctxFor(t), tc.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.prefix, err)
		}
		var got []string
		for _, kv := range kvs {
			got = append(got, kv.Key)
			if string(kv.Value) != "v:"+kv.Key || kv.Revision <= 0 || kv.Revision > rev {
				t.Fatalf("List(%q): record {%q %q %d} at listing revision %d", tc.prefix, kv.Key, kv.Value, kv.Revision, rev)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Fatalf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
		if rev < last {
			t.Fatalf("List(%q) at revision %d, before the last commit %d", tc.prefix, rev, last)
		}
	}
	// The listing revision follows later commits.
	kv, err := s.Get(ctxFor(t), "ab")
	if err != nil {
		t.Fatal(err)
	}
	next := mustTxn(t, s, store.Delete("ab", kv.Revision))
	kvs, rev, err := s.List(ctxFor(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	if rev < next || len(kvs) != 6 {
		t.Fatalf("List after a delete at %d: %d records at revision %d, want 6 at >= %d", next, len(kvs), rev, next)
	}
}

func testInvalid(t *testing.T, s store.Store) {
	rev := mustTxn(t, s, store.Create("k", []byte("v")))
	before := currentRev(t, s)
	cases := map[string][]store.Op{
		"empty key":           {store.Create("", []byte("v"))},
		"empty key among ops": {store.Create("ok", nil), store.Create("", nil)},
		"no ops":              nil,
		"delete without rev":  {{Key: "k", Delete: true}},
		"negative revision":   {store.Update("k", nil, -1)},
		"duplicate key":       {store.Update("k", []byte("1"), rev), store.Update("k", []byte("2"), rev)},
		"too many ops":        manyCreates(store.MaxTxnOps + 1),
	}
	for name, ops := range cases {
		_, err := s.Txn(ctxFor(t), ops...)
		if !errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrConflict) {
			t.Fatalf("%s: Txn error %v, want store.ErrInvalid", name, err)
		}
	}
	if _, err := s.Get(ctxFor(t), ""); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Get(\"\"): %v, want store.ErrInvalid", err)
	}
	if after := currentRev(t, s); after != before {
		t.Fatalf("rejected requests moved the revision from %d to %d", before, after)
	}
	wantMissing(t, s, "ok")
	wantKV(t, s, "k", []byte("v"), rev)
	// The largest allowed transaction works.
	mustTxn(t, s, manyCreates(store.MaxTxnOps)...)
}

func manyCreates(n int) []store.Op {
	ops := make([]store.Op, n)
	for i := range ops {
		ops[i] = store.Create("many/"+strconv.Itoa(i), []byte{byte(i)})
	}
	return ops
}

func testValuesCopied(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	evs1, errs1 := s.Watch(ctx, "", 0)
	evs2, errs2 := s.Watch(ctx, "", 0)

	val := []byte("original")
	rev := mustTxn(t, s, store.Create("k", val))
	copy(val, "MUTATED!")
	wantKV(t, s, "k", []byte("original"), rev)

	kv, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	copy(kv.Value, "MUTATED!")
	wantKV(t, s, "k", []byte("original"), rev)

	kvs, _, err := s.List(ctx, "")
	if err != nil || len(kvs) != 1 {
		t.Fatalf("List = %v, %v", kvs, err)
	}
	copy(kvs[0].Value, "MUTATED!")
	wantKV(t, s, "k", []byte("original"), rev)

	// One watcher scribbling on its event changes neither the other
	// watcher's event nor the store.
	ev := nextEvent(t, evs1, errs1)
	copy(ev.KV.Value, "MUTATED!")
	if ev2 := nextEvent(t, evs2, errs2); string(ev2.KV.Value) != "original" {
		t.Fatalf("second watcher saw %q after the first mutated its event", ev2.KV.Value)
	}
	wantKV(t, s, "k", []byte("original"), rev)
	evs3, errs3 := s.Watch(ctx, "", rev)
	if ev3 := nextEvent(t, evs3, errs3); string(ev3.KV.Value) != "original" {
		t.Fatalf("replayed event holds %q after a watcher mutated its copy", ev3.KV.Value)
	}
}

func testLargeValue(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	evs, errs := s.Watch(ctx, "big", 0)
	big := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	rev := mustTxn(t, s, store.Create("big", big))
	wantKV(t, s, "big", big, rev)
	kvs, _, err := s.List(ctx, "big")
	if err != nil || len(kvs) != 1 || !bytes.Equal(kvs[0].Value, big) {
		t.Fatalf("List(big): %d records, %v; want the 1 MiB value back", len(kvs), err)
	}
	if ev := nextEvent(t, evs, errs); !bytes.Equal(ev.KV.Value, big) {
		t.Fatalf("watch delivered %d bytes, want the 1 MiB value", len(ev.KV.Value))
	}
}

// testConcurrentCAS runs read-modify-write increments of one counter from
// many goroutines, retrying on conflict only. Every acknowledged increment
// must be in the final value and no value may be written twice.
func testConcurrentCAS(t *testing.T, s store.Store) {
	const workers, perWorker = 16, 10
	mustTxn(t, s, store.Create("counter", []byte("0")))
	ctx := ctxFor(t)
	var (
		mu      sync.Mutex
		written = map[int]int{} // value → times a commit wrote it
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perWorker; {
				kv, err := s.Get(ctx, "counter")
				if err != nil {
					errs <- err
					return
				}
				n, err := strconv.Atoi(string(kv.Value))
				if err != nil {
					errs <- err
					return
				}
				_, err = s.Txn(ctx, store.Update("counter", []byte(strconv.Itoa(n+1)), kv.Revision))
				if errors.Is(err, store.ErrConflict) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				written[n+1]++
				mu.Unlock()
				done++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("increment: %v", err)
	}
	kv, err := s.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	const want = workers * perWorker
	if string(kv.Value) != strconv.Itoa(want) {
		t.Fatalf("counter = %s after %d acknowledged increments: updates were lost", kv.Value, want)
	}
	for v := 1; v <= want; v++ {
		if written[v] != 1 {
			t.Fatalf("value %d was written by %d acknowledged increments, want exactly 1", v, written[v])
		}
	}
}

// testGuard: a guard on a prefix fails the transaction once any key under
// the prefix — an existing one rewritten or a new one — was written after
// the guarded revision, and lets it through otherwise.
func testGuard(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.Txn(ctx, store.Create("g/a", []byte("1"))); err != nil {
		t.Fatal(err)
	}
	_, rev, err := s.List(ctx, "g/")
	if err != nil {
		t.Fatal(err)
	}
	// Nothing moved: the guarded write goes through.
	rev2, err := s.Txn(ctx, store.Unchanged("g/", rev), store.Create("h/x", []byte("ok")))
	if err != nil {
		t.Fatalf("guard with nothing changed: %v", err)
	}
	// A new key under the prefix after rev2: the guard must fail and write nothing.
	if _, err := s.Txn(ctx, store.Create("g/new", []byte("2"))); err != nil {
		t.Fatal(err)
	}
	_, err = s.Txn(ctx, store.Unchanged("g/", rev2), store.Create("h/y", []byte("no")))
	var ce *store.ConflictError
	if !errors.As(err, &ce) || ce.Key != "g/new" {
		t.Fatalf("guard after a new key: %v, want a conflict naming g/new", err)
	}
	if _, err := s.Get(ctx, "h/y"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed guard wrote h/y: %v", err)
	}
	// A key outside the prefix does not trip it ("gx/" is not under "g/").
	_, rev3, _ := s.List(ctx, "g/")
	if _, err := s.Txn(ctx, store.Create("gx/z", []byte("3"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Txn(ctx, store.Unchanged("g/", rev3), store.Create("h/z", []byte("ok"))); err != nil {
		t.Fatalf("guard tripped by a key outside its prefix: %v", err)
	}
}
