package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/terrane-net/terrane/internal/k8stest"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/storetest"
)

// env is one control plane with the CRDs installed; each store gets a
// namespace of its own.
type env struct {
	c   *k8stest.Cluster
	dyn dynamic.Interface
	n   atomic.Int64
}

func startEnv(t *testing.T) *env {
	t.Helper()
	c := k8stest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := InstallCRDs(ctx, Config{REST: c.Config}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	return &env{c: c, dyn: dyn}
}

// open returns a store in a new namespace.
func (e *env) open(t *testing.T) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := fmt.Sprintf("store-%d", e.n.Add(1))
	nsObj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns},
	}}
	if _, err := e.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).
		Create(ctx, nsObj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", ns, err)
	}
	s, err := New(ctx, Config{REST: e.c.Config, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStore runs every test on one control plane (starting one takes
// seconds), each store in a namespace of its own.
func TestStore(t *testing.T) {
	e := startEnv(t)
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return e.open(t) })
	})
	t.Run("WriterDiesMidTransaction", func(t *testing.T) { testWriterDies(t, e) })
	t.Run("TwoStoresShareOneNamespace", func(t *testing.T) { testTwoStores(t, e) })
	t.Run("KubectlShowsRecords", func(t *testing.T) { testKubectl(t, e) })
	t.Run("WatchReopens", func(t *testing.T) { testWatchReopens(t, e) })
	t.Run("LeastPrivilege", func(t *testing.T) { testLeastPrivilege(t, e) })
	t.Run("TooLarge", func(t *testing.T) { testTooLarge(t, e) })
}

// reopen returns a second store on s's namespace, as another process would
// open it.
func (e *env) reopen(t *testing.T, s *Store) *Store {
	t.Helper()
	s2, err := New(context.Background(), Config{REST: e.c.Config, Namespace: s.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func mustTxn(t *testing.T, s store.Store, ops ...store.Op) int64 {
	t.Helper()
	rev, err := s.Txn(context.Background(), ops...)
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	return rev
}

func wantKV(t *testing.T, s store.Store, key, value string, rev int64) {
	t.Helper()
	kv, err := s.Get(context.Background(), key)
	if err != nil || string(kv.Value) != value || kv.Revision != rev {
		t.Fatalf("Get(%q) = %q@%d, %v; want %q@%d", key, kv.Value, kv.Revision, err, value, rev)
	}
}

func wantMissing(t *testing.T, s store.Store, key string) {
	t.Helper()
	if kv, err := s.Get(context.Background(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %q@%d, %v; want ErrNotFound", key, kv.Value, kv.Revision, err)
	}
}

func wantList(t *testing.T, s store.Store, rev int64, want ...string) {
	t.Helper()
	kvs, lrev, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range kvs {
		got = append(got, fmt.Sprintf("%s=%s@%d", kv.Key, kv.Value, kv.Revision))
	}
	if !slices.Equal(got, want) || lrev != rev {
		t.Fatalf("List = %q at %d, want %q at %d", got, lrev, want, rev)
	}
}

// testWriterDies commits a transaction and applies only its
// first op, as a writer that dies right after would leave it. Readers must
// see the whole transaction, a watcher must get all of its events (it
// finishes the transaction itself), the next writer goes on from it, and the
// dead writer's roll-forward, run again much later, must change nothing.
func testWriterDies(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dead := e.open(t)
	t.Cleanup(func() { dead.Close() })
	r1 := mustTxn(t, dead, store.Create("a", []byte("1")), store.Create("b", []byte("1")), store.Create("gone", []byte("1")))

	other := e.reopen(t, dead)
	evs, errs := other.Watch(ctx, "", r1+1)

	committed, err := dead.commit(ctx, []store.Op{
		store.Update("a", []byte("2"), r1), store.Delete("gone", r1), store.Create("c", []byte("2")),
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	r2 := committed.Spec.Revision
	p := committed.Spec.Head.Pending
	if err := dead.apply(ctx, p.Ops[0], r2); err != nil {
		t.Fatal(err)
	}

	// Whole to every reader.
	wantKV(t, other, "a", "2", r2)
	wantKV(t, other, "c", "2", r2)
	wantMissing(t, other, "gone")
	wantList(t, other, r2, "a=2@"+strconv.FormatInt(r2, 10), "b=1@"+strconv.FormatInt(r1, 10), "c=2@"+strconv.FormatInt(r2, 10))

	// The watcher finishes it and sees every op, in op order.
	want := []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "a", Value: []byte("2"), Revision: r2}},
		{Type: store.EventDelete, KV: store.KV{Key: "gone", Revision: r2}},
		{Type: store.EventPut, KV: store.KV{Key: "c", Value: []byte("2"), Revision: r2}},
	}
	for i, w := range want {
		select {
		case ev := <-evs:
			if ev.Type != w.Type || ev.KV.Key != w.KV.Key || string(ev.KV.Value) != string(w.KV.Value) || ev.KV.Revision != w.KV.Revision {
				t.Fatalf("event %d = %s %q %q@%d, want %s %q %q@%d", i, ev.Type, ev.KV.Key, ev.KV.Value, ev.KV.Revision,
					w.Type, w.KV.Key, w.KV.Value, w.KV.Revision)
			}
		case err := <-errs:
			t.Fatalf("watch failed: %v", err)
		case <-ctx.Done():
			t.Fatalf("event %d (%s %q) never came: nobody finished the pending transaction", i, w.Type, w.KV.Key)
		}
	}
	head, err := other.head(ctx)
	if err != nil || head.Spec.Head.Pending != nil {
		t.Fatalf("head after the watcher finished the transaction: pending %+v, %v", head.Spec.Head.Pending, err)
	}

	// The next writer goes on from it.
	r3 := mustTxn(t, other, store.Update("b", []byte("3"), r1), store.Update("a", []byte("3"), r2))
	r4 := mustTxn(t, other, store.Delete("c", r2))

	// The dead writer wakes up and rolls its transaction forward again:
	// every write is fenced, so nothing changes — "c" stays deleted, "gone"
	// is not revived, "a" keeps the later value.
	if _, err := dead.rollForward(ctx, committed); err != nil {
		t.Fatal(err)
	}
	wantList(t, other, r4, "a=3@"+strconv.FormatInt(r3, 10), "b=3@"+strconv.FormatInt(r3, 10))
	wantMissing(t, other, "c")
	wantMissing(t, other, "gone")
}

// testTwoStores runs the no-lost-update counter from two
// stores on one namespace: across processes only the head's CAS serialises
// writers.
func testTwoStores(t *testing.T, e *env) {
	s1 := e.open(t)
	t.Cleanup(func() { s1.Close() })
	s2 := e.reopen(t, s1)
	mustTxn(t, s1, store.Create("counter", []byte("0")))
	const perWorker, workers = 8, 3
	var wg sync.WaitGroup
	errc := make(chan error, 2*workers)
	for _, s := range []*Store{s1, s2, s1, s2, s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perWorker; {
				kv, err := s.Get(context.Background(), "counter")
				if err != nil {
					errc <- err
					return
				}
				n, _ := strconv.Atoi(string(kv.Value))
				_, err = s.Txn(context.Background(), store.Update("counter", []byte(strconv.Itoa(n+1)), kv.Revision))
				if errors.Is(err, store.ErrConflict) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				done++
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	kv, err := s2.Get(context.Background(), "counter")
	if err != nil || string(kv.Value) != strconv.Itoa(2*workers*perWorker) {
		t.Fatalf("counter = %q, %v; want %d", kv.Value, err, 2*workers*perWorker)
	}
}

// testKubectl: the printer columns show a record's key and
// revision, and keys that are not valid UTF-8 or too long for a name
// round-trip.
func testKubectl(t *testing.T, e *env) {
	s := e.open(t)
	t.Cleanup(func() { s.Close() })
	long := "v1/endpoints/" + strings.Repeat("x", 300)
	rev := mustTxn(t, s, store.Create("v1/hosts/h1", []byte(`{"ip":"10.0.0.1"}`)),
		store.Create("odd/\xff", []byte("raw")), store.Create(long, []byte("long")))
	wantKV(t, s, "odd/\xff", "raw", rev)
	wantKV(t, s, long, "long", rev)
	out, err := e.c.RunKubectl(context.Background(), "get", "storerecords", "-n", s.ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get storerecords:\n%s", out)
	for _, want := range []string{"KEY", "REVISION", "PENDING", "v1/hosts/h1", "head", strconv.FormatInt(rev, 10)} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get storerecords lacks %q", want)
		}
	}
}

// BenchmarkTxn measures one writer's commit rate: each Txn of one update is
// a head read, a record read, the commit, the record write and the head
// clear.
func BenchmarkTxn(b *testing.B) {
	c := k8stest.Start(b)
	ctx := context.Background()
	if err := InstallCRDs(ctx, Config{REST: c.Config}); err != nil {
		b.Fatal(err)
	}
	s, err := New(ctx, Config{REST: c.Config, Namespace: "default"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rev, err := s.Txn(ctx, store.Create("bench", []byte("0")))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if rev, err = s.Txn(ctx, store.Update("bench", []byte(strconv.Itoa(i)), rev)); err != nil {
			b.Fatal(err)
		}
	}
}

// testWatchReopens: the API server ends watches after a timeout; the store
// re-opens them from the last resourceVersion seen, losing and repeating
// nothing.
func testWatchReopens(t *testing.T, e *env) {
	s := e.open(t)
	t.Cleanup(func() { s.Close() })
	s.watchTimeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	evs, errs := s.Watch(ctx, "r/", 0)
	var revs []int64
	for i := range 4 {
		revs = append(revs, mustTxn(t, s, store.Create("r/"+strconv.Itoa(i), []byte("x"))))
		// Longer than the watch timeout: each commit lands on a new
		// API watch.
		time.Sleep(1500 * time.Millisecond)
	}
	for i, rev := range revs {
		select {
		case ev := <-evs:
			if ev.KV.Key != "r/"+strconv.Itoa(i) || ev.KV.Revision != rev {
				t.Fatalf("event %d = %s %q@%d, want put %q@%d", i, ev.Type, ev.KV.Key, ev.KV.Revision, "r/"+strconv.Itoa(i), rev)
			}
		case err := <-errs:
			t.Fatalf("watch failed: %v", err)
		case <-ctx.Done():
			t.Fatalf("event %d never came", i)
		}
	}
	select {
	case ev := <-evs:
		t.Fatalf("extra event %s %q@%d", ev.Type, ev.KV.Key, ev.KV.Revision)
	case <-time.After(1500 * time.Millisecond):
	}
	if n := s.reopens.Load(); n < 3 {
		t.Fatalf("the watch was re-opened %d times, want at least 3: the test did not exercise re-opening", n)
	}
}

// testLeastPrivilege opens the store as the terrane-server service account
// of deploy/kubernetes/store/rbac.yaml: its Role is all a server needs.
func testLeastPrivilege(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.c.RunKubectl(ctx, "apply", "-f", "../../../deploy/kubernetes/store/rbac.yaml"); err != nil {
		t.Fatal(err)
	}
	token, err := e.c.RunKubectl(ctx, "create", "token", "terrane-server", "-n", "terrane-system")
	if err != nil {
		t.Fatal(err)
	}
	rc := rest.CopyConfig(e.c.Config)
	rc.BearerToken = strings.TrimSpace(token)
	if err := InstallCRDs(ctx, Config{REST: rc}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("InstallCRDs as the server's service account: %v, want forbidden", err)
	}
	s, err := New(ctx, Config{REST: rc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	evs, errs := s.Watch(ctx, "", 0)
	r1 := mustTxn(t, s, store.Create("a", []byte("1")), store.Create("b", []byte("1")))
	r2 := mustTxn(t, s, store.Delete("b", r1))
	wantList(t, s, r2, "a=1@"+strconv.FormatInt(r1, 10))
	for range 3 {
		select {
		case <-evs:
		case err := <-errs:
			t.Fatalf("watch: %v", err)
		case <-ctx.Done():
			t.Fatal("watch events missing")
		}
	}
	// Compact removes b's tombstone: delete is granted too.
	r3 := mustTxn(t, s, store.Create("c", []byte("1")))
	if err := s.Compact(ctx, r3); err != nil {
		t.Fatal(err)
	}
	if _, recs, err := s.read(ctx, []string{"b"}); recs["b"] != nil || err != nil {
		t.Fatalf("b's tombstone after Compact(%d): %+v, %v; want it removed", r3, recs["b"], err)
	}
	r4 := mustTxn(t, s, store.Create("b", []byte("again")))
	wantKV(t, s, "b", "again", r4)
}

// testTooLarge: a transaction whose values do not fit in the head fails
// cleanly — an error that says why, nothing written, the revision unmoved —
// and the store goes on.
func testTooLarge(t *testing.T, e *env) {
	s := e.open(t)
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	before := mustTxn(t, s, store.Create("x", []byte("1")))
	big := make([]byte, 700<<10)
	_, err := s.Txn(ctx, store.Create("big/1", big), store.Create("big/2", big))
	if err == nil || errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("Txn of 1.4 MiB of values: %v, want an error saying it is too large", err)
	}
	t.Logf("error: %v", err)
	wantMissing(t, s, "big/1")
	wantList(t, s, before, "x=1@"+strconv.FormatInt(before, 10))
	mustTxn(t, s, store.Create("big/1", big))
}

// TestWatchHistoryGone: when the API server no longer has the history a
// watch needs (etcd compacted, no watch cache in front of it), Watch ends
// with store.ErrCompacted, though the head still knows the revision. Its
// fresh control plane also shows what New says before the CRD is installed
// and for a namespace that does not exist.
func TestWatchHistoryGone(t *testing.T) {
	c := k8stest.StartWith(t, k8stest.Options{NoWatchCache: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := New(ctx, Config{REST: c.Config, Namespace: "default"}); err == nil ||
		!strings.Contains(err.Error(), "kubectl apply -f deploy/kubernetes/crds/") {
		t.Fatalf("New without the CRD: %v, want it to say how to install it", err)
	}
	if err := InstallCRDs(ctx, Config{REST: c.Config}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Config{REST: c.Config, Namespace: "nowhere"}); err == nil ||
		!strings.Contains(err.Error(), "kubectl create namespace nowhere") {
		t.Fatalf("New in a missing namespace: %v, want it to say how to create it", err)
	}
	s, err := New(ctx, Config{REST: c.Config, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r1 := mustTxn(t, s, store.Create("k", []byte("1")))
	r2 := mustTxn(t, s, store.Update("k", []byte("2"), r1))
	// Before the compaction the history replays.
	evs, errs := s.Watch(ctx, "", r1)
	for _, want := range []int64{r1, r2} {
		select {
		case ev := <-evs:
			if ev.KV.Revision != want {
				t.Fatalf("replayed event at %d, want %d", ev.KV.Revision, want)
			}
		case err := <-errs:
			t.Fatalf("watch from %d before compaction: %v", r1, err)
		}
	}
	if _, err := c.CompactEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	evs, errs = s.Watch(ctx, "", r1)
	for ev := range evs {
		t.Fatalf("event %s %q@%d from a compacted history", ev.Type, ev.KV.Key, ev.KV.Revision)
	}
	if err := <-errs; !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch from %d after etcd's compaction ended with %v, want store.ErrCompacted", r1, err)
	}
	// From now on, watching works.
	_, rev, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	evs, errs = s.Watch(ctx, "", rev+1)
	r3 := mustTxn(t, s, store.Delete("k", r2))
	select {
	case ev := <-evs:
		if ev.Type != store.EventDelete || ev.KV.Revision != r3 {
			t.Fatalf("event %s@%d, want delete@%d", ev.Type, ev.KV.Revision, r3)
		}
	case err := <-errs:
		t.Fatal(err)
	}
}
