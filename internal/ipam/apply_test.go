package ipam

import (
	"strings"
	"testing"
)

// TestApplyRefuses: a change that does not fit the state is refused, and
// the list it came in is undone whole, so a replay can never corrupt the
// state.
func TestApplyRefuses(t *testing.T) {
	a := mustNew(t, placementYAML, Options{})
	mustAddHost(t, a, "h", map[string]string{"zone": "a"})
	mustAddHost(t, a, "g", map[string]string{"zone": "a"})
	ep := mustAlloc(t, a, EndpointRequest{ID: "e", Host: "h"})
	// A change that fits, to precede each bad one: it must be undone.
	good := Change{Kind: EndpointAdded, Network: "net", Host: "h", Endpoint: "fresh", Addr: ep.Addr.Next(), Prefix: ep.Block}
	r1 := a.GroupPrefixes("net")["zone-a/r1"][0]
	gpu := a.GroupPrefixes("net")["zone-a/gpu"][0]
	for _, tt := range []struct {
		name string
		c    Change
		want string
	}{
		{"prefix overlapping the group's own", Change{Kind: GroupPrefixAdded, Network: "net", Group: "zone-a/r1", Prefix: r1}, "already owns"},
		{"prefix of unknown group", Change{Kind: GroupPrefixAdded, Network: "net", Group: "nope", Prefix: pfx("10.0.3.0/28")}, "no group"},
		{"prefix in unknown network", Change{Kind: GroupPrefixAdded, Network: "nonet", Group: "zone-a", Prefix: pfx("10.0.3.0/28")}, "unknown network"},
		{"prefix the group does not own removed", Change{Kind: GroupPrefixRemoved, Network: "net", Group: "zone-a/r1", Prefix: gpu}, "does not own"},
		{"prefix holding blocks removed", Change{Kind: GroupPrefixRemoved, Network: "net", Group: "zone-a/r1", Prefix: ep.Block}, "holds block"},
		{"host joins twice", Change{Kind: HostJoined, Host: "h", Groups: map[string]string{"net": "zone-a/r1"}}, "already joined"},
		{"host joins a non-leaf", Change{Kind: HostJoined, Host: "new", Groups: map[string]string{"net": "zone-a"}}, "not a leaf"},
		{"unknown host updated", Change{Kind: HostUpdated, Host: "nobody", Groups: map[string]string{"net": "zone-a/r1"}}, "unknown host"},
		{"host moved to a non-leaf", Change{Kind: HostUpdated, Host: "h", Groups: map[string]string{"net": "zone-a"}, Old: &HostState{Groups: map[string]string{"net": "zone-a/r1"}}}, "not a leaf"},
		{"host moved to unknown group", Change{Kind: HostUpdated, Host: "g", Groups: map[string]string{"net": "zone-z"}, Old: &HostState{Groups: map[string]string{"net": "zone-a/r2"}}}, "no group"},
		{"host with blocks leaves", Change{Kind: HostLeft, Host: "h"}, "still owns blocks"},
		{"block outside its group", Change{Kind: BlockClaimed, Network: "net", Group: "zone-a/r1", Host: "h", Prefix: gpu}, "outside group"},
		{"block of wrong size", Change{Kind: BlockClaimed, Network: "net", Group: "zone-a/r1", Host: "h", Prefix: pfx(r1.Addr().String() + "/27")}, "not a /28"},
		{"block claimed twice", Change{Kind: BlockClaimed, Network: "net", Group: "zone-a/r1", Host: "g", Prefix: ep.Block}, "already claimed"},
		{"block of unknown host", Change{Kind: BlockClaimed, Network: "net", Group: "zone-a/r1", Host: "nobody", Prefix: pfx("10.0.2.16/28")}, "unknown host"},
		{"block released by non-owner", Change{Kind: BlockReleased, Network: "net", Host: "g", Prefix: ep.Block}, "belongs to h"},
		{"non-empty block released", Change{Kind: BlockReleased, Network: "net", Host: "h", Prefix: ep.Block}, "still holds"},
		{"unclaimed block released", Change{Kind: BlockReleased, Network: "net", Host: "h", Prefix: pfx("10.0.3.240/28")}, "not claimed"},
		{"endpoint added twice", Change{Kind: EndpointAdded, Network: "net", Host: "h", Endpoint: "e", Addr: ep.Addr.Next(), Prefix: ep.Block}, "already exists"},
		{"address taken", Change{Kind: EndpointAdded, Network: "net", Host: "h", Endpoint: "x", Addr: ep.Addr, Prefix: ep.Block}, "already allocated"},
		{"address in another host's block", Change{Kind: EndpointAdded, Network: "net", Host: "g", Endpoint: "x", Addr: ep.Addr.Next(), Prefix: ep.Block}, "not in a block of host g"},
		{"unknown endpoint released", Change{Kind: EndpointReleased, Network: "net", Endpoint: "nope"}, "unknown endpoint"},
		{"unknown kind", Change{Kind: "bogus"}, "unknown change kind"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, list := range [][]Change{{tt.c}, {good, tt.c}} {
				err := unchanged(t, a, func() ([]Change, error) { return nil, a.Apply(list) })
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Apply: %v; want it to say %q", err, tt.want)
				}
			}
		})
	}
	// Rolled back, the good change still fits.
	if err := a.Apply([]Change{good}); err != nil {
		t.Errorf("Apply(good) after the refusals: %v", err)
	}
}
