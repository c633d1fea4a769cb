package bench

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/bolt"
	"github.com/terrane-net/terrane/internal/store/etcd"
	"github.com/terrane-net/terrane/internal/store/etcd/embedded"
)

func boltStore(t testing.TB) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "terrane.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// checkSane checks a result's fields against the run's shape.
func checkSane(t *testing.T, cfg StoreConfig, r *StoreResult) {
	t.Helper()
	blockAddrs := 1 << (32 - cfg.BlockSize)
	perHost := (cfg.EndpointsPerHost + blockAddrs - 1) / blockAddrs
	if r.Duplicates != 0 || r.Lost != 0 || r.Findings != 0 {
		t.Errorf("duplicates %d, lost %d, findings %d: want 0", r.Duplicates, r.Lost, r.Findings)
	}
	if want := int64(cfg.Hosts * cfg.EndpointsPerHost); r.Endpoints != want {
		t.Errorf("endpoints %d, want %d", r.Endpoints, want)
	}
	if want := int64(cfg.Hosts * perHost); r.Claims != want {
		t.Errorf("claims %d, want %d (%d per host)", r.Claims, want, perHost)
	}
	if r.Joins != int64(cfg.Hosts) {
		t.Errorf("joins %d, want %d", r.Joins, cfg.Hosts)
	}
	// Every join and claim writes at least its own record.
	if r.Writes < r.Claims+r.Joins || r.WritesPerEndpoint <= 0 {
		t.Errorf("writes %d (%.4f per endpoint) for %d claims and %d joins", r.Writes, r.WritesPerEndpoint, r.Claims, r.Joins)
	}
	if r.ClaimsPerSecond <= 0 || r.ClaimP50Ms <= 0 || r.ClaimP99Ms < r.ClaimP50Ms || r.ClaimMaxMs < r.ClaimP99Ms {
		t.Errorf("claims per second %.1f, p50 %.3f ms, p99 %.3f ms, max %.3f ms", r.ClaimsPerSecond, r.ClaimP50Ms, r.ClaimP99Ms, r.ClaimMaxMs)
	}
	if r.WallSeconds <= 0 || r.PeakRSSMB <= 0 {
		t.Errorf("wall %.3f s, peak RSS %.1f MiB", r.WallSeconds, r.PeakRSSMB)
	}
	if r.Hosts != cfg.Hosts || r.Clients != cfg.Clients || r.Backend != cfg.Backend {
		t.Errorf("result describes %d hosts, %d clients, %q; ran %d, %d, %q", r.Hosts, r.Clients, r.Backend, cfg.Hosts, cfg.Clients, cfg.Backend)
	}
	// The JSON names are the CLI's interface.
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"claims_per_second", "claim_p50_ms", "claim_p99_ms", "writes_per_endpoint", "duplicates",
		"hosts", "clients", "endpoints", "claims", "wall_seconds", "peak_rss_mb", "backend"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON result lacks %q: %s", k, data)
		}
	}
}

func TestRunStoreBolt(t *testing.T) {
	var progress strings.Builder
	cfg := StoreConfig{
		Backend: "bolt", Store: boltStore(t),
		Hosts: 40, Clients: 8, EndpointsPerHost: 100, BlockSize: 28,
		Progress: &progress, ProgressEvery: time.Millisecond,
	}
	r, err := RunStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, cfg, r)
	// 100 endpoints in /28 blocks: 7 claims per host, no write per endpoint.
	if r.WritesPerEndpoint >= 0.2 {
		t.Errorf("writes per endpoint %.4f: the node-local workload should write far less than once per endpoint", r.WritesPerEndpoint)
	}
	if !strings.Contains(progress.String(), "bench: ") {
		t.Logf("no progress line in a %.3f s run", r.WallSeconds)
	}
	// A second run on the same store is refused: it is not empty.
	cfg.Progress = nil
	if _, err := RunStore(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("second run on a used store: %v, want a refusal", err)
	}
}

func TestRunStoreEmbeddedEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded etcd; skipped with -short")
	}
	ctx := context.Background()
	eps, _, stop, err := embedded.Start(ctx, embedded.Options{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	st, err := etcd.New(ctx, etcd.Config{Endpoints: eps, Prefix: "/bench/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := StoreConfig{Backend: "etcd", Store: st, Hosts: 10, Clients: 4, EndpointsPerHost: 70, BlockSize: 26}
	r, err := RunStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, cfg, r)
}

func TestStoreConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  StoreConfig
		want []string
	}{
		{StoreConfig{Hosts: 0, Clients: 0, EndpointsPerHost: 0, BlockSize: 40}, []string{"--hosts 0", "--clients 0", "--endpoints-per-host 0", "--block-size 40"}},
		{StoreConfig{Hosts: 1, Clients: 1, EndpointsPerHost: 1, BlockSize: 26, Zones: 100}, []string{"--zones 100"}},
		{StoreConfig{Hosts: 1_000_000, Clients: 1, EndpointsPerHost: 1000, BlockSize: 26}, []string{"10.0.0.0/8", "lower --hosts"}},
	} {
		err := tc.cfg.Validate()
		if err == nil {
			t.Errorf("%+v: valid, want an error", tc.cfg)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v, want it to mention %q", tc.cfg, err, w)
			}
		}
	}
	ok := StoreConfig{Hosts: 5000, Clients: 100, EndpointsPerHost: 1, BlockSize: 26}
	if err := ok.Validate(); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
}

func TestOverlaps(t *testing.T) {
	blocks := func(ps ...string) []ipam.BlockInfo {
		var out []ipam.BlockInfo
		for _, p := range ps {
			out = append(out, ipam.BlockInfo{Prefix: netip.MustParsePrefix(p)})
		}
		return out
	}
	for _, tc := range []struct {
		blocks []ipam.BlockInfo
		want   int
	}{
		{blocks("10.0.0.0/26", "10.0.0.64/26", "10.0.1.0/26"), 0},
		{blocks("10.0.0.64/26", "10.0.0.0/24", "10.0.0.128/26"), 2},
		{blocks("10.0.0.0/26", "10.0.0.0/26"), 1},
		{blocks("10.0.0.0/25", "10.0.0.64/26", "10.0.0.128/26"), 1},
	} {
		if got := overlaps(tc.blocks); got != tc.want {
			t.Errorf("overlaps(%v) = %d, want %d", tc.blocks, got, tc.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p50, p99, max := quantileMs(ds, 0.5), quantileMs(ds, 0.99), quantileMs(ds, 1); p50 != 50 || p99 != 99 || max != 100 {
		t.Errorf("p50 %v p99 %v max %v, want 50 99 100", p50, p99, max)
	}
	if quantileMs(nil, 0.5) != 0 {
		t.Error("quantile of nothing is not 0")
	}
}

// BenchmarkStoreBolt profiles the workload (go test -bench StoreBolt
// -cpuprofile).
func BenchmarkStoreBolt(b *testing.B) {
	for range b.N {
		if _, err := RunStore(context.Background(), StoreConfig{Backend: "bolt", Store: boltStore(b), Hosts: 2000, Clients: 10, EndpointsPerHost: 1, BlockSize: 26}); err != nil {
			b.Fatal(err)
		}
	}
}
