package labbench

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
	"github.com/terrane-net/terrane/internal/lab"
	"github.com/terrane-net/terrane/internal/topology"
)

func TestChaosOptionsValidate(t *testing.T) {
	good := ChaosOptions{Servers: 2, Workers: 4, Rate: 100, Duration: time.Minute, Live: 16, FaultEvery: 10 * time.Second, Timeout: 3 * time.Second, PodRate: 2, PodsPerHost: 4, ProbeInterval: 100 * time.Millisecond}
	if err := good.Validate(); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*ChaosOptions)
		want string
	}{
		{"one server", func(o *ChaosOptions) { o.Servers = 1 }, "--servers 1"},
		{"no workers", func(o *ChaosOptions) { o.Workers = 0 }, "--workers 0"},
		{"negative rate", func(o *ChaosOptions) { o.Rate = -1 }, "--rate -1"},
		{"no length", func(o *ChaosOptions) { o.Duration = 0 }, "--duration or --allocations"},
		{"allocations only", func(o *ChaosOptions) { o.Duration, o.Allocations = 0, 10 }, ""},
		{"no live", func(o *ChaosOptions) { o.Live = 0 }, "--live 0"},
		{"faults too often", func(o *ChaosOptions) { o.FaultEvery = time.Second }, "--fault-every 1s"},
		{"no faults", func(o *ChaosOptions) { o.FaultEvery = 0 }, ""},
		{"no timeout", func(o *ChaosOptions) { o.Timeout = 0 }, "--timeout 0s"},
		{"one host", func(o *ChaosOptions) { o.Hosts = 1 }, "--hosts 1"},
		{"nine hosts", func(o *ChaosOptions) { o.Hosts = 9 }, "--hosts 9"},
		{"hosts", func(o *ChaosOptions) { o.Hosts = 3 }, ""},
		{"negative pod rate", func(o *ChaosOptions) { o.Hosts, o.PodRate = 3, -1 }, "--pod-rate -1"},
		{"no pods per host", func(o *ChaosOptions) { o.Hosts, o.PodsPerHost = 3, 0 }, "--pods-per-host 0"},
		{"probe too often", func(o *ChaosOptions) { o.Hosts, o.ProbeInterval = 3, time.Millisecond }, "--probe-interval 1ms"},
		{"pod flags without hosts", func(o *ChaosOptions) { o.PodsPerHost = 0 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mod(&o)
			err := o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %q, got %v", tc.want, err)
			}
		})
	}
}

// TestAvailabilityGaps: a fault's unavailability is its longest interval
// without a success, from its injection until the next fault or the end.
func TestAvailabilityGaps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	a := &availability{start: t0, last: t0, cur: -1}
	a.succeeded(at(1))
	a.succeeded(at(2))
	a.fault(at(3)) // fault 0: successes at 3.5, then a gap until 6
	a.succeeded(at(3.5))
	a.succeeded(at(6)) // gap 2.5
	a.succeeded(at(6.1))
	a.fault(at(7)) // fault 0's window ends at 7 (gap 0.9 < 2.5)
	a.succeeded(at(7.2))
	a.end(at(9)) // fault 1: gap 7.2 → 9 = 1.8
	if len(a.gaps) != 2 || a.gaps[0] != 2500*time.Millisecond || a.gaps[1] != 1800*time.Millisecond {
		t.Fatalf("gaps %v, want [2.5s 1.8s]", a.gaps)
	}
	if a.longest != 2500*time.Millisecond {
		t.Fatalf("longest %v, want 2.5s", a.longest)
	}
}

// TestVerifyChaosFindsLostAndLeaked: the verdict against a real server
// (in-process, embedded store) whose state differs from what a worker was
// acknowledged — one endpoint never acknowledged, one acknowledged and
// missing, one at another address.
func TestVerifyChaosFindsLostAndLeaked(t *testing.T) {
	srv := clienttest.StartUnix(t)
	ctx := t.Context()
	admin, err := client.New(client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, CertFile: srv.PKI.Admin.Cert, KeyFile: srv.PKI.Admin.Key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ApplyTopology(ctx, api.TopologyRequest{Topology: chaosTopology}); err != nil {
		t.Fatal(err)
	}
	w := &chaosWorker{host: "chaos-w00", retrier: &retrier{c: admin}, held: map[string]netip.Addr{}, released: map[string]bool{}}
	if err := w.register(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Heartbeat(ctx, w.host); err != nil {
		t.Fatal(err)
	}
	alloc := func(id string) netip.Addr {
		r, err := admin.AllocateEndpoint(ctx, api.EndpointRequest{ID: id, Host: w.host})
		if err != nil {
			t.Fatal(err)
		}
		return r.Endpoint.Addr
	}
	w.held["kept"] = alloc("kept")
	alloc("unacknowledged")
	w.held["missing"] = netip.MustParseAddr("10.128.0.9")
	moved := alloc("moved")
	w.held["moved"] = moved.Next().Next()
	w.released["released"] = true
	alloc("released")

	var res ChaosResult
	if err := verifyChaos(ctx, admin, []*chaosWorker{w}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != 0 || res.Lost != 2 || res.LeakedAfterGC != 2 || res.Held != 3 || res.Present != 4 || !res.CheckClean {
		t.Fatalf("verdict %+v, want 0 duplicates, 2 lost (missing, moved), 2 leaked (unacknowledged, released), 3 held, 4 present, audit clean", res)
	}
	for _, want := range []string{"leaked: unacknowledged", "leaked: released", "lost: missing", "lost: moved"} {
		if !slices.ContainsFunc(res.Examples, func(e string) bool { return strings.HasPrefix(e, want) }) {
			t.Errorf("no example %q in %q", want, res.Examples)
		}
	}
}

// TestChaosScenario: the hosts' scenario is a valid lab scenario whose
// topology places the hosts in their own L2 group, apart from the API
// workers' group.
func TestChaosScenario(t *testing.T) {
	sc, err := lab.ParseScenario([]byte(chaosScenario(3)))
	if err != nil {
		t.Fatal(err)
	}
	topo, err := sc.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Hosts) != 3 || sc.Hosts[2].Name != "h3" || sc.Hosts[2].IP.String() != "192.168.77.13" {
		t.Fatalf("hosts %+v", sc.Hosts)
	}
	leaf := func(labels map[string]string) string {
		var names []string
		for _, g := range topo.Networks[0].Tree.Leaves {
			if g.Selector.Matches(labels) {
				names = append(names, g.Name)
			}
		}
		return strings.Join(names, ",")
	}
	for _, h := range sc.Hosts {
		if g := leaf(h.Labels); g != "hosts" || topo.Networks[0].Tree.Leaves[1].Mode != topology.ModeL2 {
			t.Errorf("host %s is admitted by %q, want the l2 group hosts alone", h.Name, g)
		}
	}
	if g := leaf(map[string]string{"chaos": "yes"}); g != "chaos" {
		t.Errorf("an API worker is admitted by %q, want chaos alone", g)
	}
}
