package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/server"
	"github.com/terrane-net/terrane/internal/store"
)

// StoreConfig describes one run of the store benchmark.
type StoreConfig struct {
	// Backend names the store in the result ("bolt", "etcd").
	Backend string
	// Store must be empty: the run applies its own topology.
	Store store.Store
	// Hosts join, each claiming blocks for EndpointsPerHost endpoints;
	// Clients goroutines share them.
	Hosts, Clients, EndpointsPerHost int
	// BlockSize is the prefix length of a block (e.g. 26: 64 addresses).
	BlockSize int
	// Zones is the number of groups; hosts are spread over them by a zone
	// label. 0 means 3.
	Zones int
	// Progress, when set, gets a line every ProgressEvery (0: 1 s) while the
	// run lasts.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// StoreResult is what a run measured. The JSON names are the interface of
// `terrane bench store -o json`.
type StoreResult struct {
	Backend          string `json:"backend"`
	Hosts            int    `json:"hosts"`
	Clients          int    `json:"clients"`
	EndpointsPerHost int    `json:"endpoints_per_host"`
	Network          string `json:"network"`
	BlockSize        int    `json:"block_size"`
	// Endpoints allocated node-locally; Claims of blocks through the
	// store; Joins of hosts through the store.
	Endpoints int64 `json:"endpoints"`
	Claims    int64 `json:"claims"`
	Joins     int64 `json:"joins"`
	// ClaimsPerSecond is Claims over WallSeconds.
	ClaimsPerSecond float64 `json:"claims_per_second"`
	// Latencies of one State.Do call (queueing for the state included).
	ClaimP50Ms float64 `json:"claim_p50_ms"`
	ClaimP99Ms float64 `json:"claim_p99_ms"`
	ClaimMaxMs float64 `json:"claim_max_ms"`
	JoinP50Ms  float64 `json:"join_p50_ms"`
	JoinP99Ms  float64 `json:"join_p99_ms"`
	// Writes are records written to the store during the run (topology
	// excluded); Commits the transactions that wrote them.
	Writes            int64   `json:"writes"`
	Commits           int64   `json:"commits"`
	WritesPerEndpoint float64 `json:"writes_per_endpoint"`
	// Retries are transactions retried after a revision conflict; Errors
	// operations that failed and were retried after a pause.
	Retries int64 `json:"retries"`
	Errors  int64 `json:"errors"`
	// Duplicates counts, in a fresh load of the store after the run,
	// blocks that overlap another, blocks acknowledged to two hosts or
	// owned by a host other than the one acknowledged, and addresses held
	// twice. It must be 0.
	Duplicates int `json:"duplicates"`
	// Lost counts acknowledged claims missing from the store; Findings are
	// the allocator's consistency findings on the fresh load. Both must
	// be 0.
	Lost     int `json:"lost"`
	Findings int `json:"findings"`
	// WallSeconds is the workload (joins and claims), without set-up and
	// verification.
	WallSeconds float64 `json:"wall_seconds"`
	// PeakRSSMB is the process's peak resident set: everything in it,
	// an embedded etcd included.
	PeakRSSMB float64 `json:"peak_rss_mb"`
}

// Limits on a run's shape, to fail early with a clear message.
const (
	maxHosts            = 1_000_000
	maxClients          = 10_000
	maxEndpointsPerHost = 1_000_000
	maxZones            = 64
	// The network is a prefix of 10.0.0.0/8.
	widestNetwork = 8
	// headroom is how much larger than the blocks the run needs the network
	// is, so elastic group growth never runs out.
	headroom = 4
)

// Network is the benchmark topology's network name.
const Network = "pods"

// Validate reports every setting out of range, named by its `terrane bench
// store` flag, and runs too large for 10.0.0.0/8. Zones 0 counts as 3. The
// store is not checked.
func (c *StoreConfig) Validate() error {
	var errs []error
	if c.Hosts < 1 || c.Hosts > maxHosts {
		errs = append(errs, fmt.Errorf("--hosts %d: use 1 to %d", c.Hosts, maxHosts))
	}
	if c.Clients < 1 || c.Clients > maxClients {
		errs = append(errs, fmt.Errorf("--clients %d: use 1 to %d", c.Clients, maxClients))
	}
	if c.EndpointsPerHost < 1 || c.EndpointsPerHost > maxEndpointsPerHost {
		errs = append(errs, fmt.Errorf("--endpoints-per-host %d: use 1 to %d", c.EndpointsPerHost, maxEndpointsPerHost))
	}
	if c.BlockSize < 16 || c.BlockSize > 32 {
		errs = append(errs, fmt.Errorf("--block-size %d: use a prefix length from 16 to 32 (26: 64 addresses)", c.BlockSize))
	}
	if c.Zones < 0 || c.Zones > maxZones {
		errs = append(errs, fmt.Errorf("--zones %d: use 1 to %d", c.Zones, maxZones))
	}
	if len(errs) == 0 {
		if _, err := c.networkPrefix(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *StoreConfig) zones() int {
	if c.Zones == 0 {
		return 3
	}
	return c.Zones
}

// blockAddrs is how many addresses one block holds.
func (c *StoreConfig) blockAddrs() int { return 1 << (32 - c.BlockSize) }

// networkPrefix sizes the network for the run: every host's blocks, times
// headroom, within 10.0.0.0/8.
func (c *StoreConfig) networkPrefix() (netip.Prefix, error) {
	zones := c.zones()
	perHost := (c.EndpointsPerHost + c.blockAddrs() - 1) / c.blockAddrs()
	need := uint64(c.Hosts) * uint64(perHost) * uint64(c.blockAddrs()) * headroom
	hostBits := bits.Len64(need - 1) // smallest power of two ≥ need
	// Leave room for a few blocks per zone even in tiny runs.
	hostBits = max(hostBits, 32-c.BlockSize+bits.Len(uint(zones))+2)
	if 32-hostBits < widestNetwork {
		return netip.Prefix{}, fmt.Errorf("%d hosts × %d endpoints in /%d blocks need about %d addresses with headroom, more than 10.0.0.0/8 holds; lower --hosts or --endpoints-per-host", c.Hosts, c.EndpointsPerHost, c.BlockSize, need)
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, 0}), 32-hostBits), nil
}

// Topology is the topology a run applies: one network sized for the run,
// one group per zone, hosts placed by their zone label.
func (c *StoreConfig) Topology() (string, error) {
	p, err := c.networkPrefix()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "networks:\n  - {name: %s, cidr: %s, blockSize: %d}\n", Network, p, c.BlockSize)
	fmt.Fprintf(&b, "topologies:\n  - networks: [%s]\n    groups:\n", Network)
	for z := range c.zones() {
		fmt.Fprintf(&b, "      - {name: zone-%d, assignment: {matchLabels: {zone: z%d}}}\n", z, z)
	}
	return b.String(), nil
}

// view calls State.View, whose callback takes a type the server package
// does not export, with fn.
func view[T any](ctx context.Context, v func(context.Context, func(*ipam.Allocator, T) error) error, fn func(*ipam.Allocator) error) error {
	return v(ctx, func(a *ipam.Allocator, _ T) error { return fn(a) })
}

// ledger records what the state acknowledged.
type ledger struct {
	mu     sync.Mutex
	owner  map[netip.Prefix]string
	twice  int
	claims atomic.Int64
	joins  atomic.Int64
	eps    atomic.Int64
	errs   atomic.Int64
	hosts  atomic.Int64 // hosts done
}

// latencies are one client's observations, merged at the end.
type latencies struct{ claims, joins []time.Duration }

// RunStore runs the workload against cfg.Store through a real server.State
// in this process (no HTTP): it applies a topology sized for the run, then
// Clients goroutines take hosts in turn; each host joins (one State.Do), then
// allocates EndpointsPerHost addresses node-locally — from its own blocks,
// with no store write — and claims another block through State.Do only when
// its blocks are full. Afterwards it loads the state afresh from the store
// and checks for duplicates and lost claims.
func RunStore(ctx context.Context, cfg StoreConfig) (*StoreResult, error) {
	if cfg.Zones == 0 {
		cfg.Zones = 3
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Store == nil {
		return nil, errors.New("no store")
	}
	topo, err := cfg.Topology()
	if err != nil {
		return nil, err
	}
	kvs, _, err := cfg.Store.List(ctx, "")
	if err != nil {
		return nil, err
	}
	if len(kvs) > 0 {
		return nil, fmt.Errorf("the store already holds %d records (first: %s); the benchmark needs an empty one", len(kvs), kvs[0].Key)
	}
	log := slog.New(slog.DiscardHandler)
	st, err := server.NewState(ctx, cfg.Store, log)
	if err != nil {
		return nil, err
	}
	if _, err := st.ApplyTopology(ctx, api.TopologyRequest{Topology: topo}); err != nil {
		return nil, fmt.Errorf("apply the benchmark topology: %w", err)
	}
	p, _ := cfg.networkPrefix()
	res := &StoreResult{
		Backend: cfg.Backend, Hosts: cfg.Hosts, Clients: cfg.Clients,
		EndpointsPerHost: cfg.EndpointsPerHost, Network: p.String(), BlockSize: cfg.BlockSize,
	}
	before := st.Stats()
	l := &ledger{owner: map[netip.Prefix]string{}}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		lats     = make([]latencies, cfg.Clients)
	)
	start := time.Now()
	stopProgress := progress(cfg, l, start)
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= cfg.Hosts || runCtx.Err() != nil {
					return
				}
				if err := runHost(runCtx, st, &cfg, i, l, &lats[c]); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				l.hosts.Add(1)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	stopProgress()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	after := st.Stats()
	var claims, joins []time.Duration
	for _, c := range lats {
		claims, joins = append(claims, c.claims...), append(joins, c.joins...)
	}
	res.Endpoints, res.Claims, res.Joins = l.eps.Load(), l.claims.Load(), l.joins.Load()
	res.Errors = l.errs.Load()
	res.WallSeconds = wall.Seconds()
	res.ClaimsPerSecond = float64(res.Claims) / wall.Seconds()
	res.ClaimP50Ms, res.ClaimP99Ms, res.ClaimMaxMs = quantileMs(claims, 0.50), quantileMs(claims, 0.99), quantileMs(claims, 1)
	res.JoinP50Ms, res.JoinP99Ms = quantileMs(joins, 0.50), quantileMs(joins, 0.99)
	res.Writes, res.Commits, res.Retries = after.Writes-before.Writes, after.Commits-before.Commits, after.Retries-before.Retries
	if res.Endpoints > 0 {
		res.WritesPerEndpoint = float64(res.Writes) / float64(res.Endpoints)
	}
	if err := verify(ctx, cfg.Store, l, res); err != nil {
		return nil, err
	}
	res.PeakRSSMB = peakRSSMB()
	return res, nil
}

// localHost is a node's own view of its addresses: how many are free in
// the blocks it holds. The agent will keep the real bitmap.
type localHost struct {
	name   string
	blocks []netip.Prefix
	free   int
}

// runHost is one node: join, then allocate its endpoints locally, claiming a
// block through the state whenever its blocks are full.
func runHost(ctx context.Context, st *server.State, cfg *StoreConfig, i int, l *ledger, lat *latencies) error {
	h := &localHost{name: fmt.Sprintf("host-%06d", i)}
	zone := fmt.Sprintf("z%d", i%cfg.Zones)
	d, err := retry(ctx, l, "join "+h.name, func(ctx context.Context) error {
		_, err := st.Do(ctx, func(a *ipam.Allocator) ([]ipam.Change, error) {
			return a.AddHost(ipam.HostSpec{Name: h.name, Labels: map[string]string{"zone": zone}})
		})
		return err
	})
	if err != nil {
		return err
	}
	lat.joins = append(lat.joins, d)
	l.joins.Add(1)
	for range cfg.EndpointsPerHost {
		if h.free == 0 {
			var p netip.Prefix
			d, err := retry(ctx, l, "claim a block for "+h.name, func(ctx context.Context) error {
				_, err := st.Do(ctx, func(a *ipam.Allocator) ([]ipam.Change, error) {
					var ch []ipam.Change
					var err error
					p, ch, err = a.ClaimBlock(h.name, Network)
					return ch, err
				})
				return err
			})
			if err != nil {
				return err
			}
			lat.claims = append(lat.claims, d)
			l.claims.Add(1)
			l.mu.Lock()
			if _, taken := l.owner[p]; taken {
				l.twice++
			}
			l.owner[p] = h.name
			l.mu.Unlock()
			h.blocks = append(h.blocks, p)
			h.free += cfg.blockAddrs()
		}
		h.free-- // the address comes from the host's own block: no store write
		l.eps.Add(1)
	}
	return nil
}

// retry runs op until it succeeds, pausing after a failure as a node
// would; it gives up after a few failures in a row, or on an error no retry
// can mend. It returns the latency of the successful call.
func retry(ctx context.Context, l *ledger, what string, op func(context.Context) error) (time.Duration, error) {
	const attempts = 5
	var err error
	for range attempts {
		t := time.Now()
		if err = op(ctx); err == nil {
			return time.Since(t), nil
		}
		if ctx.Err() != nil || errors.Is(err, ipam.ErrInvalid) || errors.Is(err, ipam.ErrExhausted) || errors.Is(err, ipam.ErrNotFound) {
			break
		}
		l.errs.Add(1)
		time.Sleep(100 * time.Millisecond) // a node's retry pause, not a wait for a condition
	}
	return 0, fmt.Errorf("%s: %w", what, err)
}

// verify loads the state afresh from the store and counts what is owned
// twice or lost.
func verify(ctx context.Context, st store.Store, l *ledger, res *StoreResult) error {
	fresh, err := server.NewState(ctx, st, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("load the store after the run: %w", err)
	}
	return view(ctx, fresh.View, func(a *ipam.Allocator) error {
		if a == nil {
			return errors.New("load the store after the run: no topology")
		}
		res.Findings = len(a.Check())
		blocks := a.Blocks(Network)
		res.Duplicates = l.twice + overlaps(blocks)
		stored := make(map[netip.Prefix]string, len(blocks))
		for _, b := range blocks {
			stored[b.Prefix] = b.Host
		}
		for p, h := range l.owner {
			switch owner, ok := stored[p]; {
			case !ok:
				res.Lost++
			case owner != h:
				res.Duplicates++
			}
		}
		addrs := map[netip.Addr]bool{}
		for _, e := range a.Endpoints() {
			if addrs[e.Addr] {
				res.Duplicates++
			}
			addrs[e.Addr] = true
		}
		return nil
	})
}

// overlaps counts blocks that overlap an earlier one in address order.
func overlaps(blocks []ipam.BlockInfo) int {
	ps := make([]netip.Prefix, len(blocks))
	for i, b := range blocks {
		ps[i] = b.Prefix.Masked()
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	// Prefixes nest or are disjoint: in this order one that overlaps an
	// earlier one lies inside the last one that did not.
	n := 0
	var last netip.Prefix
	for i, p := range ps {
		if i > 0 && last.Overlaps(p) {
			n++
			continue
		}
		last = p
	}
	return n
}

// quantileMs is the q-quantile (nearest rank) of ds in milliseconds; it
// sorts ds.
func quantileMs(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	i = min(max(i, 0), len(ds)-1)
	return float64(ds[i].Microseconds()) / 1000
}

// progress prints a line every interval until the returned function is
// called.
func progress(cfg StoreConfig, l *ledger, start time.Time) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	every := cfg.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				el := now.Sub(start).Seconds()
				c := l.claims.Load()
				fmt.Fprintf(cfg.Progress, "bench: %5.1fs  hosts %d/%d  claims %d (%.0f/s)  endpoints %d  errors %d\n",
					el, l.hosts.Load(), cfg.Hosts, c, float64(c)/el, l.eps.Load(), l.errs.Load())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
