package ipam

import (
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const twoZoneYAML = `
networks:
  - {name: net, cidr: 10.0.0.0/24, blockSize: 28}
topologies:
  - networks: [net]
    groups:
      - name: a
        assignment: {matchLabels: {zone: a}}
      - name: b
        assignment: {matchLabels: {zone: b}}
reservations: [10.0.0.16/28]
`

func allocOp(a *Allocator, req EndpointRequest) func() ([]Change, error) {
	return func() ([]Change, error) {
		_, ch, err := a.AllocateEndpoint(req)
		return ch, err
	}
}

func TestAllocateIdempotent(t *testing.T) {
	a := mustNew(t, twoZoneYAML, Options{})
	mustAddHost(t, a, "h", map[string]string{"zone": "a"})
	mustAddHost(t, a, "g", map[string]string{"zone": "a"})
	req := EndpointRequest{ID: "pod-1", Host: "h", Namespace: "default"}
	first, ch, err := a.AllocateEndpoint(req)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]ChangeKind{BlockClaimed, EndpointAdded}, kinds(ch)); d != "" {
		t.Errorf("first allocation (-want +got):\n%s", d)
	}
	for _, again := range []EndpointRequest{req, {ID: "pod-1"}, {ID: "pod-1", Host: "h", Network: "net", Addr: first.Addr}} {
		got, ch, err := a.AllocateEndpoint(again)
		if err != nil || len(ch) != 0 {
			t.Fatalf("AllocateEndpoint(%+v) again: changes %v, err %v; want none", again, ch, err)
		}
		if d := cmp.Diff(first, got, cmpOpts...); d != "" {
			t.Errorf("AllocateEndpoint(%+v) again (-first +again):\n%s", again, d)
		}
	}
	// The same ID elsewhere is a conflict, not a second address.
	for _, bad := range []EndpointRequest{
		{ID: "pod-1", Host: "g"},
		{ID: "pod-1", Host: "h", Addr: first.Addr.Next()},
	} {
		err := unchanged(t, a, allocOp(a, bad))
		wantErr(t, err, ErrConflict, "pod-1", first.Addr.String())
	}
}

func TestAllocateErrors(t *testing.T) {
	a := mustNew(t, twoZoneYAML, Options{})
	mustAddHost(t, a, "h", map[string]string{"zone": "a"})
	for _, tt := range []struct {
		name  string
		req   EndpointRequest
		err   error
		words []string
	}{
		{"no id", EndpointRequest{Host: "h"}, ErrInvalid, []string{"id"}},
		{"unknown host", EndpointRequest{ID: "e", Host: "nobody"}, ErrNotFound, []string{"nobody"}},
		{"unknown network", EndpointRequest{ID: "e", Host: "h", Network: "nonet"}, ErrNotFound, []string{"nonet"}},
		{"address outside network", EndpointRequest{ID: "e", Host: "h", Addr: addr("10.9.0.1")}, ErrInvalid, []string{"10.9.0.1", "outside network net"}},
		{"address of other family", EndpointRequest{ID: "e", Host: "h", Addr: addr("fd00::1")}, ErrInvalid, []string{"fd00::1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := unchanged(t, a, allocOp(a, tt.req))
			wantErr(t, err, tt.err, tt.words...)
		})
	}
}

func TestRequestedAddress(t *testing.T) {
	for _, mode := range []PlanMode{Static, Elastic} {
		t.Run(mode.String(), func(t *testing.T) {
			a := mustNew(t, twoZoneYAML, Options{Mode: mode})
			mustAddHost(t, a, "h", map[string]string{"zone": "a"})
			mustAddHost(t, a, "g", map[string]string{"zone": "a"})

			// Inside the group: the address's block is claimed for the host.
			ep, ch, err := a.AllocateEndpoint(EndpointRequest{ID: "e1", Host: "h", Addr: addr("10.0.0.5")})
			if err != nil {
				t.Fatal(err)
			}
			if ep.Addr != addr("10.0.0.5") || ep.Block != pfx("10.0.0.0/28") {
				t.Errorf("got %s in %s, want 10.0.0.5 in 10.0.0.0/28", ep.Addr, ep.Block)
			}
			if d := cmp.Diff([]ChangeKind{BlockClaimed, EndpointAdded}, kinds(ch)); d != "" {
				t.Errorf("changes (-want +got):\n%s", d)
			}
			// Another free address of the same block needs no new block.
			if _, ch, err := a.AllocateEndpoint(EndpointRequest{ID: "e2", Host: "h", Addr: addr("10.0.0.6")}); err != nil || len(ch) != 1 {
				t.Errorf("second address in the block: changes %v, err %v", ch, err)
			}
			// The next unrequested address skips the requested ones.
			if ep := mustAlloc(t, a, EndpointRequest{ID: "e3", Host: "h"}); ep.Addr != addr("10.0.0.0") {
				t.Errorf("next free address %s, want 10.0.0.0", ep.Addr)
			}

			for _, tt := range []struct {
				name  string
				req   EndpointRequest
				err   error
				words []string
			}{
				{"taken", EndpointRequest{ID: "x", Host: "h", Addr: addr("10.0.0.5")}, ErrConflict, []string{"10.0.0.5", "already allocated"}},
				{"other host's block", EndpointRequest{ID: "x", Host: "g", Addr: addr("10.0.0.9")}, ErrConflict, []string{"10.0.0.9", "host h"}},
				{"other group", EndpointRequest{ID: "x", Host: "h", Addr: addr("10.0.0.200")}, ErrInvalid, []string{"10.0.0.200", "outside group a"}},
				{"reservation", EndpointRequest{ID: "x", Host: "h", Addr: addr("10.0.0.20")}, ErrInvalid, []string{"10.0.0.20", "group a"}},
			} {
				t.Run(tt.name, func(t *testing.T) {
					err := unchanged(t, a, allocOp(a, tt.req))
					wantErr(t, err, tt.err, tt.words...)
				})
			}

			// In static mode the group owns its whole home (10.0.0.0/25).
			// In elastic mode it owns only its first block so far.
			req := EndpointRequest{ID: "e4", Host: "h", Addr: addr("10.0.0.40")}
			if mode == Static {
				if ep := mustAlloc(t, a, req); ep.Block != pfx("10.0.0.32/28") {
					t.Errorf("requested 10.0.0.40 in block %s, want 10.0.0.32/28", ep.Block)
				}
			} else {
				err := unchanged(t, a, allocOp(a, req))
				wantErr(t, err, ErrInvalid, "outside group a")
			}
		})
	}
}

const selectionYAML = `
networks:
  - {name: pods, cidr: 10.1.0.0/24, blockSize: 28, default: true, namespaces: [web]}
  - {name: small, cidr: 10.2.0.0/28, blockSize: 28, namespaces: [web, other]}
  - {name: big, cidr: 10.3.0.0/24, blockSize: 28, namespaces: [web, other]}
  - {name: secure, cidr: "fd00::/120", blockSize: 124, namespaces: [vault]}
topologies:
  - networks: [pods, small, big, secure]
    groups: [{name: all}]
`

func TestNetworkSelection(t *testing.T) {
	for _, mode := range []PlanMode{Static, Elastic} {
		t.Run(mode.String(), func(t *testing.T) {
			a := mustNew(t, selectionYAML, Options{Mode: mode})
			mustAddHost(t, a, "h", nil)
			mustAddHost(t, a, "g", nil)
			check := func(req EndpointRequest, want string) Endpoint {
				t.Helper()
				ep := mustAlloc(t, a, req)
				if ep.Network != want {
					t.Errorf("%+v went to network %s, want %s", req, ep.Network, want)
				}
				return ep
			}
			check(EndpointRequest{ID: "explicit", Host: "h", Namespace: "web", Network: "big"}, "big")
			check(EndpointRequest{ID: "default", Host: "h", Namespace: "web"}, "pods")
			if ep := check(EndpointRequest{ID: "v6", Host: "h", Namespace: "vault"}, "secure"); !pfx("fd00::/120").Contains(ep.Addr) {
				t.Errorf("vault endpoint %s outside fd00::/120", ep.Addr)
			}
			// No default for "other": the first network with room. small
			// holds one block of 16 addresses, so the 17th goes to big.
			for i := range 16 {
				check(EndpointRequest{ID: "o" + strconv.Itoa(i), Host: "h", Namespace: "other"}, "small")
			}
			check(EndpointRequest{ID: "o16", Host: "h", Namespace: "other"}, "big")
			// Another host finds small full (its only block is h's).
			check(EndpointRequest{ID: "g1", Host: "g", Namespace: "other"}, "big")

			err := unchanged(t, a, allocOp(a, EndpointRequest{ID: "x", Host: "g", Namespace: "other", Network: "small"}))
			wantErr(t, err, ErrExhausted, "small")
			err = unchanged(t, a, allocOp(a, EndpointRequest{ID: "x", Host: "h", Namespace: "nobody"}))
			wantErr(t, err, ErrInvalid, "nobody")
			err = unchanged(t, a, allocOp(a, EndpointRequest{ID: "x", Host: "h", Namespace: "vault", Network: "pods"}))
			wantErr(t, err, ErrInvalid, "vault", "pods")
		})
	}
}
