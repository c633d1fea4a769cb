package ipam

import (
	"fmt"
	"math/bits"
	"net/netip"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// TestHostBlocksStayMergeable: hosts of one L2 segment claiming blocks in
// turn (the usual case: pods start everywhere at once) must still end with
// blocks that merge into few routes: at most the popcount of the block count
// (the minimum for that many aligned blocks) plus one per doubling of the
// host's region (its first blocks land while the group itself is still
// small) — not one route per block.
func TestHostBlocksStayMergeable(t *testing.T) {
	for _, hosts := range []int{2, 3, 5} {
		for _, pods := range []int{40, 100, 250} {
			t.Run(fmt.Sprintf("%d hosts %d pods", hosts, pods), func(t *testing.T) {
				topo, err := topology.Load([]byte(`
networks: [{name: pods, cidr: 10.0.0.0/16, blockSize: 28}]
topologies: [{networks: [pods], groups: [{name: seg}]}]
`))
				if err != nil {
					t.Fatal(err)
				}
				a, _, err := New(topo, Options{})
				if err != nil {
					t.Fatal(err)
				}
				for h := 0; h < hosts; h++ {
					if _, err := a.AddHost(HostSpec{Name: fmt.Sprint("h", h)}); err != nil {
						t.Fatal(err)
					}
				}
				for i := 0; i < pods; i++ {
					for h := 0; h < hosts; h++ {
						if _, _, err := a.AllocateEndpoint(EndpointRequest{ID: fmt.Sprint(h, "/", i), Host: fmt.Sprint("h", h)}); err != nil {
							t.Fatal(err)
						}
					}
				}
				per := map[string][]netip.Prefix{}
				for _, b := range a.Blocks("pods") {
					per[b.Host] = append(per[b.Host], b.Prefix)
				}
				for h, bs := range per {
					got, best := len(netx.Cover(bs...)), bits.OnesCount(uint(len(bs)))+bits.Len(uint(len(bs)))-1
					if got > best {
						t.Errorf("host %s: %d blocks merge into %d routes, want %d: %v", h, len(bs), got, best, bs)
					}
				}
			})
		}
	}
}
