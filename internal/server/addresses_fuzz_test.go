package server

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
)

// FuzzAddressReport: any request body is either refused as bad input or
// merges into a report whose addresses are unique and sorted, one
// generation on; a delta on another generation is refused.
func FuzzAddressReport(f *testing.F) {
	f.Add([]byte(`{"full":true,"added":[{"network":"pods","addr":"10.0.0.1","block":"10.0.0.0/28","attachment":"c/eth0"}],"blocks":[{"network":"pods","prefix":"10.0.0.0/28","used":1,"open":true}]}`))
	f.Add([]byte(`{"base":3,"removed":[{"network":"pods","addr":"10.0.0.2"}],"ports":[{"id":"vm-1","device":"tap0","wired":true}]}`))
	f.Add([]byte(`{"base":3,"added":[{"network":"pods","addr":"10.0.0.1","block":"10.0.0.0/28","attachment":"c/eth0"},{"network":"pods","addr":"10.0.0.1","block":"10.0.0.0/28","attachment":"d/eth0"}]}`))
	f.Add([]byte(`{"full":true,"added":[{"network":"pods","addr":"::ffff:10.0.0.1","block":"10.0.0.0/28","attachment":"x"}]}`))
	f.Add([]byte(`[]`))
	cur := ipam.HostReport{Generation: 3, Addresses: []ipam.ReportedAddress{
		{Network: "pods", Addr: mustAddr("10.0.0.2"), Block: mustPrefix("10.0.0.0/28"), Attachment: "b/eth0"},
		{Network: "pods", Addr: mustAddr("10.0.0.3"), Block: mustPrefix("10.0.0.0/28"), Attachment: "c/eth0"},
	}}
	f.Fuzz(func(t *testing.T, body []byte) {
		var rep api.AddressReport
		if err := decodeBytes(body, &rep); err != nil {
			return
		}
		if err := checkReport(rep); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Field == "" {
				t.Fatalf("refusal without a 400 and a field: %v", err)
			}
			return
		}
		next, err := merge(cur, rep)
		if !rep.Full && rep.Base != cur.Generation {
			if !errors.Is(err, errStaleBase) {
				t.Fatalf("delta on base %d merged onto generation %d: %v", rep.Base, cur.Generation, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if next.Generation != cur.Generation+1 {
			t.Errorf("generation %d after %d", next.Generation, cur.Generation)
		}
		for i := 1; i < len(next.Addresses); i++ {
			if compareKeysOf(next.Addresses[i-1], next.Addresses[i]) >= 0 {
				t.Fatalf("addresses not unique and sorted: %v", next.Addresses)
			}
		}
		for _, ad := range next.Addresses {
			if !ad.Block.Contains(ad.Addr) || ad.Attachment == "" {
				t.Fatalf("merged an address the check refuses: %+v", ad)
			}
		}
	})
}

func compareKeysOf(x, y ipam.ReportedAddress) int {
	if x.Network != y.Network {
		if x.Network < y.Network {
			return -1
		}
		return 1
	}
	return x.Addr.Compare(y.Addr)
}

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
