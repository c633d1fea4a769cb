//go:build linux

package nft

import (
	"net/netip"
	"testing"

	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/policy/policygen"
	"github.com/terrane-net/terrane/internal/testnet"
)

// TestPrivilegedNftLargeSets: a pod admitting 10,000 (peer, port) pairs per
// direction — more than one netlink message's attribute and the default
// socket buffers hold — is applied whole, cut down to 10 (thousands of
// elements deleted in one transaction) and grown back, the kernel holding
// exactly the rule set's elements each time.
func TestPrivilegedNftLargeSets(t *testing.T) {
	requireRoot(t)
	node := testnet.NewNS(t, "nftbig")
	tbl := openIn(t, node)
	client, server := netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.1.0.3")
	for _, n := range []int{10000, 10, 10000} {
		c, err := policygen.Pair(n, client, server, 80)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := policy.Compile(c, policy.Node{Name: policygen.PairNode})
		if err != nil {
			t.Fatal(err)
		}
		if err := tbl.Apply(rs); err != nil {
			t.Fatalf("%d rules per direction: %v", n, err)
		}
		out := testnet.Run(t, "ip", "netns", "exec", node, "nft", "-j", "list", "table", "inet", TableName)
		got, err := SetElements([]byte(out))
		if err != nil {
			t.Fatal(err)
		}
		// A decoy element per rule but the last, which admits the peer pod.
		for _, set := range []string{"in4-bench/server", "out4-bench/client"} {
			if got[set] != n {
				t.Errorf("%d rules per direction: set %s holds %d elements, want %d", n, set, got[set], n)
			}
		}
	}
}
