package ipam

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/terrane-net/terrane/internal/topology"
)

// cmpOpts compares view values: netip values by ==, nil and empty alike.
var cmpOpts = []cmp.Option{
	cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}),
	cmpopts.EquateEmpty(),
}

func mustLoad(t testing.TB, y string) *topology.Topology {
	t.Helper()
	top, err := topology.Load([]byte(y))
	if err != nil {
		t.Fatalf("topology.Load: %v\n%s", err, y)
	}
	return top
}

func mustNew(t testing.TB, y string, opts Options) *Allocator {
	t.Helper()
	a, _, err := New(mustLoad(t, y), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func pfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = pfx(s)
	}
	return out
}

// netView is what the view accessors say of one network.
type netView struct {
	Prefixes map[string][]netip.Prefix
	Blocks   []BlockInfo
}

// view is the whole allocator as the view accessors show it; two
// allocators with equal views are indistinguishable to callers.
type view struct {
	Hosts     []HostInfo
	Nets      map[string]netView
	Endpoints []Endpoint
}

func snapshot(a *Allocator) view {
	v := view{Hosts: a.Hosts(), Nets: map[string]netView{}, Endpoints: a.Endpoints()}
	for _, n := range a.Topology().Networks {
		v.Nets[n.Name] = netView{Prefixes: a.GroupPrefixes(n.Name), Blocks: a.Blocks(n.Name)}
	}
	return v
}

// diffViews is "" when a and b are equal, else a cmp diff (-a +b). It
// compares by hand first: cmp is thorough but slow, and the model test
// compares views several times per operation.
func diffViews(a, b view) string {
	if equalViews(a, b) {
		return ""
	}
	if d := cmp.Diff(a, b, cmpOpts...); d != "" {
		return d
	}
	return fmt.Sprintf("views differ:\n%v\n%v", a, b)
}

// equalViews is cmp.Equal(a, b, cmpOpts...), fast.
func equalViews(a, b view) bool {
	if !slices.EqualFunc(a.Hosts, b.Hosts, func(x, y HostInfo) bool {
		return x.Name == y.Name && x.IP == y.IP && maps.Equal(x.Labels, y.Labels) && maps.Equal(x.Groups, y.Groups)
	}) {
		return false
	}
	if len(a.Nets) != len(b.Nets) || !slices.Equal(a.Endpoints, b.Endpoints) {
		return false
	}
	for name, x := range a.Nets {
		y, ok := b.Nets[name]
		if !ok || !slices.Equal(x.Blocks, y.Blocks) || !maps.EqualFunc(x.Prefixes, y.Prefixes, slices.Equal) {
			return false
		}
	}
	return true
}

// emptyAllocator is an allocator with no plan at all, for replaying a
// change log from the start (New's changes included).
func emptyAllocator(t *topology.Topology, opts Options) *Allocator {
	return &Allocator{s: newState(t), opts: opts}
}

// unchanged runs op and checks that it failed and changed nothing.
func unchanged(t testing.TB, a *Allocator, op func() ([]Change, error)) error {
	t.Helper()
	before := snapshot(a)
	ch, err := op()
	if err == nil {
		t.Fatalf("want an error, got success with changes %v", ch)
	}
	if len(ch) != 0 {
		t.Errorf("failed operation returned changes %v", ch)
	}
	if d := diffViews(before, snapshot(a)); d != "" {
		t.Errorf("failed operation (%v) changed the state (-before +after):\n%s", err, d)
	}
	return err
}

func wantErr(t testing.TB, err, target error, words ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v: want errors.Is %v", err, target)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func mustAddHost(t testing.TB, a *Allocator, name string, labels map[string]string) []Change {
	t.Helper()
	ch, err := a.AddHost(HostSpec{Name: name, Labels: labels})
	if err != nil {
		t.Fatalf("AddHost %s: %v", name, err)
	}
	return ch
}

func mustAlloc(t testing.TB, a *Allocator, req EndpointRequest) Endpoint {
	t.Helper()
	ep, _, err := a.AllocateEndpoint(req)
	if err != nil {
		t.Fatalf("AllocateEndpoint %+v: %v", req, err)
	}
	return ep
}

func mustRelease(t testing.TB, a *Allocator, id string) []Change {
	t.Helper()
	ch, err := a.ReleaseEndpoint(id)
	if err != nil {
		t.Fatalf("ReleaseEndpoint %s: %v", id, err)
	}
	return ch
}

func kinds(ch []Change) []ChangeKind {
	out := make([]ChangeKind, len(ch))
	for i, c := range ch {
		out[i] = c.Kind
	}
	return out
}

// blocksOf lists the prefixes of host's blocks in network.
func blocksOf(a *Allocator, network, host string) []netip.Prefix {
	var out []netip.Prefix
	for _, b := range a.Blocks(network) {
		if b.Host == host {
			out = append(out, b.Prefix)
		}
	}
	return out
}

func blockInfo(a *Allocator, network string, p netip.Prefix) (BlockInfo, bool) {
	for _, b := range a.Blocks(network) {
		if b.Prefix == p {
			return b, true
		}
	}
	return BlockInfo{}, false
}
