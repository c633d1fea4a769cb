package ipam

import (
	"github.com/terrane-net/terrane/internal/netx"

	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const placementYAML = `
networks:
  - {name: net, cidr: 10.0.0.0/22, blockSize: 28}
topologies:
  - networks: [net]
    groups:
      - name: zone-a
        assignment: {matchLabels: {zone: a}}
        groups:
          - name: gpu
            assignment: {matchLabels: {gpu: "true"}}
          - name: r1
          - name: r2
      - name: zone-b
        assignment: {matchLabels: {zone: b}}
        groups:
          - name: fixed
            assignment: {matchLabels: {never: x}}
            hosts: [{name: pinned-host, ip: 192.168.0.9}]
`

// TestPlacement runs its steps in order on one allocator: ties depend on
// how many hosts each group already has.
func TestPlacement(t *testing.T) {
	a := mustNew(t, placementYAML, Options{})
	steps := []struct {
		name   string
		host   string
		ip     string
		labels map[string]string
		want   string // leaf path; empty when an error is wanted
		err    error
		kinds  []ChangeKind
	}{
		{name: "most specific leaf wins", host: "h1", labels: map[string]string{"zone": "a", "gpu": "true"}, want: "zone-a/gpu", kinds: []ChangeKind{HostJoined}},
		{name: "tie goes to file order", host: "h2", labels: map[string]string{"zone": "a"}, want: "zone-a/r1", kinds: []ChangeKind{HostJoined}},
		{name: "tie goes to fewest hosts", host: "h3", labels: map[string]string{"zone": "a"}, want: "zone-a/r2", kinds: []ChangeKind{HostJoined}},
		{name: "equal counts back to file order", host: "h4", labels: map[string]string{"zone": "a", "gpu": "false"}, want: "zone-a/r1", kinds: []ChangeKind{HostJoined}},
		{name: "static host placed by name", host: "pinned-host", labels: map[string]string{"zone": "a"}, want: "zone-b/fixed", kinds: []ChangeKind{HostJoined}},
		{name: "static host with another IP", host: "pinned-host", ip: "192.168.0.10", labels: map[string]string{"zone": "a"}, err: ErrInvalid},
		{name: "no group admits", host: "lost", labels: map[string]string{"zone": "c"}, err: ErrNoGroup},
		{name: "no labels", host: "bare", err: ErrNoGroup},
		{name: "name required", host: "", labels: map[string]string{"zone": "a"}, err: ErrInvalid},
		{name: "same labels again change nothing", host: "h2", labels: map[string]string{"zone": "a"}, want: "zone-a/r1"},
		// r1 has 2 hosts and r2 one, but h2 keeps its group among equals.
		{name: "relabel among equals keeps the group", host: "h2", labels: map[string]string{"zone": "a", "x": "y"}, want: "zone-a/r1", kinds: []ChangeKind{HostUpdated}},
		{name: "relabel no group admits keeps the host", host: "h4", labels: map[string]string{"zone": "b"}, err: ErrNoGroup},
		{name: "relabel moves", host: "h3", labels: map[string]string{"zone": "a", "gpu": "true"}, want: "zone-a/gpu", kinds: []ChangeKind{HostUpdated}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			spec := HostSpec{Name: st.host, Labels: st.labels}
			if st.ip != "" {
				spec.IP = addr(st.ip)
			}
			if st.err != nil {
				err := unchanged(t, a, func() ([]Change, error) { return a.AddHost(spec) })
				wantErr(t, err, st.err, st.host)
				return
			}
			ch, err := a.AddHost(spec)
			if err != nil {
				t.Fatalf("AddHost: %v", err)
			}
			if d := cmp.Diff(st.kinds, kinds(ch), cmpOpts...); d != "" {
				t.Errorf("change kinds (-want +got):\n%s", d)
			}
			h, ok := a.Host(st.host)
			if !ok {
				t.Fatalf("host %s missing", st.host)
			}
			if got := h.Groups["net"]; got != st.want {
				t.Errorf("host %s in %s, want %s", st.host, got, st.want)
			}
		})
	}
	if h, _ := a.Host("pinned-host"); h.IP != addr("192.168.0.9") {
		t.Errorf("static host IP %v, want the topology's 192.168.0.9", h.IP)
	}
}

func TestNoGroupMessage(t *testing.T) {
	a := mustNew(t, placementYAML, Options{})
	_, err := a.AddHost(HostSpec{Name: "web-7", Labels: map[string]string{"zone": "q"}})
	// The message names the host, its labels and the groups it could join.
	wantErr(t, err, ErrNoGroup, "web-7", "zone=q", "zone-a/r1")
}

// TestRelabelDrains: a host that moves keeps its non-empty blocks in the old
// group until they empty; its empty ones go at once; new endpoints come
// from the new group.
func TestRelabelDrains(t *testing.T) {
	a := mustNew(t, placementYAML, Options{})
	mustAddHost(t, a, "h", map[string]string{"zone": "a"})
	old := mustAlloc(t, a, EndpointRequest{ID: "e1", Host: "h"})
	spare, _, err := a.ClaimBlock("h", "net")
	if err != nil {
		t.Fatal(err)
	}
	r1 := a.GroupPrefixes("net")["zone-a/r1"]

	ch := mustAddHost(t, a, "h", map[string]string{"zone": "a", "gpu": "true"})
	if d := cmp.Diff([]ChangeKind{HostUpdated}, kinds(ch)); d != "" {
		t.Fatalf("relabel changes (-want +got):\n%s", d)
	}
	// The agent's block stays: only the agent knows whether pods still use
	// it, and releases it once it has drained.
	if b, ok := blockInfo(a, "net", spare); !ok || b.Issuer != IssuerAgent || b.Group != "zone-a/r1" {
		t.Errorf("agent block %s after relabel: %+v %v; want it kept in zone-a/r1", spare, b, ok)
	}
	if ch[0].Old == nil || ch[0].Old.Groups["net"] != "zone-a/r1" {
		t.Errorf("HostUpdated.Old = %+v, want the previous group zone-a/r1", ch[0].Old)
	}
	b, ok := blockInfo(a, "net", old.Block)
	if !ok || b.Group != "zone-a/r1" || b.Used != 1 {
		t.Fatalf("old block after relabel: %+v %v; want it kept in zone-a/r1 with 1 endpoint", b, ok)
	}

	// New endpoints come from the new group.
	ep := mustAlloc(t, a, EndpointRequest{ID: "e2", Host: "h"})
	if !prefixesContain(a.GroupPrefixes("net")["zone-a/gpu"], ep.Addr) {
		t.Errorf("new endpoint %s outside zone-a/gpu %v", ep.Addr, a.GroupPrefixes("net")["zone-a/gpu"])
	}
	// A requested address in the old group is refused: the host left it.
	req := EndpointRequest{ID: "e3", Host: "h", Addr: old.Addr.Next()}
	err = unchanged(t, a, func() ([]Change, error) { _, ch, err := a.AllocateEndpoint(req); return ch, err })
	wantErr(t, err, ErrInvalid)
	if !prefixesContain(r1, req.Addr) {
		t.Fatalf("test setup: %s not in r1 %v", req.Addr, r1)
	}

	// The drained block goes with its last endpoint.
	ch = mustRelease(t, a, "e1")
	if d := cmp.Diff([]ChangeKind{EndpointReleased, BlockReleased}, kinds(ch)); d != "" {
		t.Errorf("release of the last endpoint of a drained block (-want +got):\n%s", d)
	}
	if _, ok := blockInfo(a, "net", old.Block); ok {
		t.Errorf("drained block %s still claimed", old.Block)
	}
	if got := blocksOf(a, "net", "h"); !slices.Equal(got, netx.Sort([]netip.Prefix{ep.Block, spare})) {
		t.Errorf("host blocks %v, want only %s and the agent's %s", got, ep.Block, spare)
	}
}

func TestRemoveHost(t *testing.T) {
	a := mustNew(t, placementYAML, Options{})
	mustAddHost(t, a, "h", map[string]string{"zone": "a"})
	mustAddHost(t, a, "other", map[string]string{"zone": "a"})
	for _, id := range []string{"e1", "e2"} {
		mustAlloc(t, a, EndpointRequest{ID: id, Host: "h"})
	}
	keep := mustAlloc(t, a, EndpointRequest{ID: "o1", Host: "other"})
	if _, _, err := a.ClaimBlock("h", "net"); err != nil {
		t.Fatal(err)
	}

	err := unchanged(t, a, func() ([]Change, error) { return a.RemoveHost("nobody") })
	wantErr(t, err, ErrNotFound, "nobody")

	ch, err := a.RemoveHost("h")
	if err != nil {
		t.Fatal(err)
	}
	want := []ChangeKind{EndpointReleased, EndpointReleased, BlockReleased, BlockReleased, HostLeft}
	if d := cmp.Diff(want, kinds(ch)); d != "" {
		t.Errorf("changes (-want +got):\n%s", d)
	}
	if _, ok := a.Host("h"); ok {
		t.Error("host still known")
	}
	if got := blocksOf(a, "net", "h"); len(got) != 0 {
		t.Errorf("removed host still owns %v", got)
	}
	if d := cmp.Diff([]Endpoint{keep}, a.Endpoints(), cmpOpts...); d != "" {
		t.Errorf("endpoints (-want +got):\n%s", d)
	}
}

func prefixesContain(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
