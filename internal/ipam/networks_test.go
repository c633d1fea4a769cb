package ipam

import (
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const nsNetworksYAML = `
networks:
  - {name: pods, cidr: 10.0.0.0/16, blockSize: 28, default: true}
  - {name: fast, cidr: 10.1.0.0/16, blockSize: 28}
  - {name: vms, cidr: 10.2.0.0/16, blockSize: 28, namespaces: [openstack]}
topologies:
  - networks: [pods, fast, vms]
    groups:
      - {name: all}
`

// TestNamespaceNetwork: a namespace's own default network comes first in
// the one network choice; setting, replacing and clearing it are changes
// that replay; bad requests change nothing; a topology change carries it
// or says why it cannot.
func TestNamespaceNetwork(t *testing.T) {
	a, all, err := New(mustTopology(t, nsNetworksYAML), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := a.AddHost(HostSpec{Name: "h"})
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, ch...)
	names := func(ns string) []string {
		t.Helper()
		h, _ := a.Host("h")
		nets, err := CandidateNetworks(a.Topology(), NetworkChoice{Namespace: ns, NamespaceDefault: a.NamespaceNetwork(ns), HostGroups: h.Groups})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range nets {
			out = append(out, n.Name)
		}
		return out
	}
	if got := names("web"); !slices.Equal(got, []string{"pods", "fast"}) {
		t.Errorf("candidates without a namespace default: %v", got)
	}
	ch, err = a.SetNamespaceNetwork("web", "fast")
	if err != nil || len(ch) != 1 || ch[0].Kind != NamespaceNetworkSet {
		t.Fatalf("set: %v %v", ch, err)
	}
	all = append(all, ch...)
	if got := names("web"); !slices.Equal(got, []string{"fast", "pods"}) {
		t.Errorf("candidates with web → fast: %v", got)
	}
	ep, ch, err := a.AllocateEndpoint(EndpointRequest{ID: "e1", Host: "h", Namespace: "web"})
	if err != nil || ep.Network != "fast" {
		t.Errorf("an endpoint of namespace web went to %s (%v), want its default fast", ep.Network, err)
	}
	all = append(all, ch...)
	if ch, err := a.SetNamespaceNetwork("web", "fast"); err != nil || len(ch) != 0 {
		t.Errorf("setting the same again: %v %v", ch, err)
	}
	ch, err = a.SetNamespaceNetwork("web", "pods")
	if d := cmp.Diff([]ChangeKind{NamespaceNetworkCleared, NamespaceNetworkSet}, kinds(ch)); err != nil || d != "" {
		t.Errorf("replace: %v %v", d, err)
	}
	all = append(all, ch...)
	for _, tt := range []struct {
		ns, network string
		err         error
	}{
		{"", "pods", ErrInvalid},
		{"web", "nonet", ErrNotFound},
		{"web", "vms", ErrInvalid}, // vms admits only openstack
	} {
		err := unchanged(t, a, func() ([]Change, error) { return a.SetNamespaceNetwork(tt.ns, tt.network) })
		wantErr(t, err, tt.err)
	}
	ch, err = a.SetNamespaceNetwork("web", "")
	if err != nil || len(ch) != 1 || ch[0].Kind != NamespaceNetworkCleared || len(a.NamespaceNetworks()) != 0 {
		t.Fatalf("clear: %v %v %v", ch, err, a.NamespaceNetworks())
	}
	all = append(all, ch...)
	ch, err = a.SetNamespaceNetwork("openstack", "vms")
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, ch...)
	// Every change replays: a replica built from them holds the same.
	replica := emptyAllocator(a.Topology(), Options{})
	if err := replica.Apply(all); err != nil {
		t.Fatal(err)
	}
	if d := diffViews(snapshot(a), snapshot(replica)); d != "" || !maps.Equal(a.NamespaceNetworks(), replica.NamespaceNetworks()) {
		t.Errorf("replica differs: %s %v %v", d, a.NamespaceNetworks(), replica.NamespaceNetworks())
	}

	// A topology without vms cannot carry openstack's default.
	without := mustTopology(t, `
networks:
  - {name: pods, cidr: 10.0.0.0/16, blockSize: 28, default: true}
  - {name: fast, cidr: 10.1.0.0/16, blockSize: 28}
topologies:
  - networks: [pods, fast]
    groups:
      - {name: all}
`)
	_, conflicts, err := Rebase(a, without, Options{})
	if err != nil || len(conflicts) != 1 || conflicts[0].Kind != "namespace-network-orphaned" {
		t.Errorf("rebase dropping vms: %+v %v", conflicts, err)
	}
	b, conflicts, err := Rebase(a, a.Topology(), Options{})
	if err != nil || len(conflicts) != 0 || b.NamespaceNetwork("openstack") != "vms" {
		t.Errorf("rebase onto the same topology: %v %+v %v", b, conflicts, err)
	}
}
