package topology

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
)

// examplesDir holds the topology files shipped to users; every one of them
// is loaded, compared with its Romana twin and fed to the fuzzers as seed.
const examplesDir = "../../examples"

// exampleNames lists the examples: each has <name>.yaml and <name>.romana.json.
func exampleNames(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".yaml"))
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatalf("no examples under %s", examplesDir)
	}
	return names
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustLoad(t testing.TB, data []byte) *Topology {
	t.Helper()
	top, err := Load(data)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return top
}

// fieldErrors returns the field errors of a *ValidationError, failing the
// test for any other error.
func fieldErrors(t testing.TB, err error) []FieldError {
	t.Helper()
	if err == nil {
		t.Fatal("want a validation error, got none")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %T: %v", err, err)
	}
	if len(ve.Errors) == 0 {
		t.Fatal("ValidationError with no field errors")
	}
	return ve.Errors
}

// render writes the parts of a model both file formats can express as
// canonical text: networks with their CIDRs, block bits and namespaces; every
// group with its selector, mode, advertise, weight, pin and hosts; every home
// prefix in every network. Default, reservations and service CIDRs are left
// out because Romana has no way to say them.
func render(top *Topology) string {
	var b strings.Builder
	for _, n := range top.Networks {
		fmt.Fprintf(&b, "network %s %s block=/%d namespaces=[%s]\n", n.Name, n.CIDR, n.BlockBits, strings.Join(n.Namespaces, ","))
	}
	for _, tr := range top.Trees {
		names := make([]string, len(tr.Networks))
		for i, n := range tr.Networks {
			names[i] = n.Name
		}
		fmt.Fprintf(&b, "tree %d networks=[%s]\n", tr.Index, strings.Join(names, ","))
		for _, g := range tr.All {
			pinned := "-"
			if g.Pinned.IsValid() {
				pinned = g.Pinned.String()
			}
			var hosts []string
			for _, h := range g.Hosts {
				hosts = append(hosts, h.Name+"="+h.IP.String())
			}
			fmt.Fprintf(&b, "  group %s selector=%q mode=%s advertise=%s weight=%d pinned=%s leaf=%v specificity=%d hosts=[%s]\n",
				g.Path, g.Selector.String(), g.Mode, g.Advertise, g.Weight, pinned, g.IsLeaf(), g.Specificity, strings.Join(hosts, ","))
		}
		for _, n := range tr.Networks {
			for _, g := range tr.All {
				fmt.Fprintf(&b, "  home %s %s %s\n", n.Name, g.Path, homeString(n, g))
			}
		}
	}
	return b.String()
}

func homeString(n *Network, g *Group) string {
	h, ok := n.Homes[g]
	if !ok {
		return "none"
	}
	return h.String()
}

// invariantViolations checks what every compiled topology must satisfy and
// returns one line per violation.
func invariantViolations(top *Topology) []string {
	var bad []string
	report := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	for _, n := range top.Networks {
		if !n.CIDR.IsValid() || n.CIDR.Masked() != n.CIDR {
			report("network %s: CIDR %v is not a valid masked prefix", n.Name, n.CIDR)
			continue
		}
		if n.BlockBits < n.CIDR.Bits() || n.BlockBits > n.CIDR.Addr().BitLen() {
			report("network %s: block /%d outside [/%d, /%d]", n.Name, n.BlockBits, n.CIDR.Bits(), n.CIDR.Addr().BitLen())
		}
		if n.Tree == nil {
			report("network %s: in no tree", n.Name)
		}
	}
	for ti, tr := range top.Trees {
		for i, g := range tr.All {
			if g.Index != i || g.Tree != tr {
				report("tree %d: group %s has index %d, tree %p", ti, g.Path, g.Index, g.Tree)
			}
			if g.IsLeaf() != containsGroup(tr.Leaves, g) {
				report("tree %d: group %s leaf=%v but Leaves disagrees", ti, g.Path, g.IsLeaf())
			}
		}
		for _, n := range tr.Networks {
			if n.Tree != tr {
				report("network %s: listed by tree %d but points at another tree", n.Name, ti)
			}
			checkLevel(n, n.CIDR, tr.Groups, report)
		}
	}
	return bad
}

func checkLevel(n *Network, parent netip.Prefix, groups []*Group, report func(string, ...any)) {
	for _, g := range groups {
		h, ok := n.Homes[g]
		if !ok {
			report("network %s: group %s has no home", n.Name, g.Path)
			continue
		}
		if !netx.Covers(parent, h) {
			report("network %s: home %s of %s lies outside its parent's %s", n.Name, h, g.Path, parent)
		}
		if h.Bits() > n.BlockBits {
			report("network %s: home %s of %s is smaller than a block /%d", n.Name, h, g.Path, n.BlockBits)
		}
		if g.Pinned.IsValid() && n.CIDR.Contains(g.Pinned.Addr()) && h != g.Pinned {
			report("network %s: %s is pinned to %s but lives at %s", n.Name, g.Path, g.Pinned, h)
		}
		checkLevel(n, h, g.Children, report)
	}
	// Sorted by address, overlapping prefixes (one inside another) always
	// include an adjacent pair; this keeps the check cheap for big levels.
	var sibs []*Group
	for _, g := range groups {
		if _, ok := n.Homes[g]; ok {
			sibs = append(sibs, g)
		}
	}
	slices.SortFunc(sibs, func(a, b *Group) int {
		pa, pb := n.Homes[a], n.Homes[b]
		if c := pa.Addr().Compare(pb.Addr()); c != 0 {
			return c
		}
		return pa.Bits() - pb.Bits()
	})
	for i := 1; i < len(sibs); i++ {
		a, b := sibs[i-1], sibs[i]
		if n.Homes[a].Overlaps(n.Homes[b]) {
			report("network %s: sibling homes overlap: %s %s and %s %s", n.Name, a.Path, n.Homes[a], b.Path, n.Homes[b])
		}
	}
}

func containsGroup(gs []*Group, g *Group) bool {
	for _, x := range gs {
		if x == g {
			return true
		}
	}
	return false
}

func assertInvariants(t testing.TB, top *Topology) {
	t.Helper()
	if bad := invariantViolations(top); len(bad) > 0 {
		t.Fatalf("invariants violated:\n  %s", strings.Join(bad, "\n  "))
	}
}
