package ipam

import (
	"strconv"
	"testing"

	"github.com/terrane-net/terrane/internal/topology"
)

// benchYAML: 64 hosts in 4 racks on a /12 with /26 blocks.
const benchYAML = `
networks: [{name: pods, cidr: 10.0.0.0/12, blockSize: 26, default: true}]
topologies:
  - networks: [pods]
    groups:
      - {name: rack-0, assignment: {matchLabels: {rack: "0"}}}
      - {name: rack-1, assignment: {matchLabels: {rack: "1"}}}
      - {name: rack-2, assignment: {matchLabels: {rack: "2"}}}
      - {name: rack-3, assignment: {matchLabels: {rack: "3"}}}
`

const benchHosts = 64

func benchAllocator(b *testing.B, top *topology.Topology) (*Allocator, []string) {
	b.Helper()
	a, _, err := New(top, Options{Mode: Elastic})
	if err != nil {
		b.Fatal(err)
	}
	hosts := make([]string, benchHosts)
	for i := range hosts {
		hosts[i] = "node-" + strconv.Itoa(i)
		if _, err := a.AddHost(HostSpec{Name: hosts[i], Labels: map[string]string{"rack": strconv.Itoa(i % 4)}}); err != nil {
			b.Fatal(err)
		}
	}
	return a, hosts
}

func benchIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "pod-" + strconv.Itoa(i)
	}
	return ids
}

// BenchmarkAllocateEndpoint measures fresh allocations spread round-robin
// over the hosts, blocks claimed and groups grown as they fill. The
// allocator starts over (untimed) every perRun endpoints.
func BenchmarkAllocateEndpoint(b *testing.B) {
	const perRun = 1 << 18 // a quarter of the /12
	top := mustLoad(b, benchYAML)
	ids := benchIDs(perRun)
	a, hosts := benchAllocator(b, top)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%perRun == 0 {
			b.StopTimer()
			a, hosts = benchAllocator(b, top)
			b.StartTimer()
		}
		if _, _, err := a.AllocateEndpoint(EndpointRequest{ID: ids[i%perRun], Host: hosts[i%benchHosts]}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "endpoints/s")
}

// BenchmarkAllocateRelease measures steady churn: 32 live endpoints per
// host; each iteration releases the oldest and allocates a new one.
func BenchmarkAllocateRelease(b *testing.B) {
	const live = 32 * benchHosts
	top := mustLoad(b, benchYAML)
	ids := benchIDs(live)
	a, hosts := benchAllocator(b, top)
	for i := range live {
		if _, _, err := a.AllocateEndpoint(EndpointRequest{ID: ids[i], Host: hosts[i%benchHosts]}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := ids[i%live]
		if _, err := a.ReleaseEndpoint(id); err != nil {
			b.Fatal(err)
		}
		if _, _, err := a.AllocateEndpoint(EndpointRequest{ID: id, Host: hosts[i%benchHosts]}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
}
