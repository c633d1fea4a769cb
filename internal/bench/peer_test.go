package bench

import (
	"fmt"
	"net"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/allocator"
	fakestore "github.com/containernetworking/plugins/plugins/ipam/host-local/backend/testing"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
)

// live is how many endpoints each benchmark keeps allocated: a busy node.
const live = 100

// BenchmarkChurn measures one pod replaced on a busy node (release the
// oldest endpoint, allocate a new one) in Terrane's allocator and in the CNI
// reference host-local allocator (with its in-memory test store, so neither
// side touches a disk), side by side.
func BenchmarkChurn(b *testing.B) {
	b.Run("terrane", func(b *testing.B) {
		topo, err := topology.Load([]byte(`
networks: [{name: pods, cidr: 10.0.0.0/16, blockSize: 26}]
topologies: [{networks: [pods], groups: [{name: rack}]}]
`))
		if err != nil {
			b.Fatal(err)
		}
		a, _, err := ipam.New(topo, ipam.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.AddHost(ipam.HostSpec{Name: "node"}); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < live; i++ {
			if _, _, err := a.AllocateEndpoint(ipam.EndpointRequest{ID: fmt.Sprint(i), Host: "node"}); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := a.ReleaseEndpoint(fmt.Sprint(i)); err != nil {
				b.Fatal(err)
			}
			if _, _, err := a.AllocateEndpoint(ipam.EndpointRequest{ID: fmt.Sprint(i + live), Host: "node"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("host-local", func(b *testing.B) {
		_, subnet, _ := net.ParseCIDR("10.0.0.0/24")
		rs := allocator.RangeSet{allocator.Range{Subnet: types.IPNet(*subnet)}}
		if err := rs.Canonicalize(); err != nil {
			b.Fatal(err)
		}
		store := fakestore.NewFakeStore(map[string]string{}, map[string]net.IP{})
		a := allocator.NewIPAllocator(&rs, store, 0)
		for i := 0; i < live; i++ {
			if _, err := a.Get(fmt.Sprint(i), "eth0", nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := a.Release(fmt.Sprint(i), "eth0"); err != nil {
				b.Fatal(err)
			}
			if _, err := a.Get(fmt.Sprint(i+live), "eth0", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
