package fake

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/dataplane"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func via(dst, hop string) dataplane.Route {
	return dataplane.Route{Dst: netip.MustParsePrefix(dst), Via: netip.MustParseAddr(hop)}
}

func dev(dst, name string) dataplane.Route {
	return dataplane.Route{Dst: netip.MustParsePrefix(dst), Dev: name}
}

// TestGolden plays a sequence of States the agent could produce and records
// each Diff and the resulting table.
func TestGolden(t *testing.T) {
	f, err := New(Options{Table: 100, Devices: []string{"eth0", "veth1", "veth2"}})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		state dataplane.State
	}{
		{"first endpoint and one peer", dataplane.State{Table: 100, Routes: []dataplane.Route{
			dev("10.1.0.2/32", "veth1"),
			via("10.1.16.0/28", "192.0.2.12"),
			via("2001:db8:1:10::/124", "2001:db8:ff::12"),
		}}},
		{"the same state again", dataplane.State{Table: 100, Routes: []dataplane.Route{
			via("2001:db8:1:10::/124", "2001:db8:ff::12"),
			via("10.1.16.0/28", "192.0.2.12"),
			dev("10.1.0.2/32", "veth1"),
		}}},
		{"second endpoint, peer moved, peer's blocks merged", dataplane.State{Routes: []dataplane.Route{
			dev("10.1.0.2/32", "veth1"),
			dev("10.1.0.3/32", "veth2"),
			via("10.1.16.0/27", "192.0.2.13"),
			via("2001:db8:1:10::/124", "2001:db8:ff::13"),
		}}},
		{"first endpoint deleted", dataplane.State{Routes: []dataplane.Route{
			dev("10.1.0.3/32", "veth2"),
			via("10.1.16.0/27", "192.0.2.13"),
			via("2001:db8:1:10::/124", "2001:db8:ff::13"),
		}}},
		{"empty", dataplane.State{}},
	}
	var b strings.Builder
	for _, s := range steps {
		d, err := f.Apply(context.Background(), s.state)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		fmt.Fprintf(&b, "## %s\ndiff:\n%s%s\n", s.name, indent(d.String()), f)
	}
	golden(t, "sequence.golden", b.String())
	if f.Applies() != len(steps) {
		t.Errorf("Applies() = %d, want %d", f.Applies(), len(steps))
	}
}

func indent(s string) string {
	if s == "" {
		return "  (none)\n"
	}
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update after checking):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestMissingDevice(t *testing.T) {
	f, err := New(Options{Table: 100, Devices: []string{"veth1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := dataplane.State{Routes: []dataplane.Route{dev("10.1.0.2/32", "veth1"), dev("10.1.0.3/32", "veth9")}}
	d, err := f.Apply(ctx, s)
	if !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Apply = %v, want ErrNoDevice", err)
	}
	if got, want := d.String(), "+ 10.1.0.2/32 dev veth1\n"; got != want {
		t.Errorf("diff = %q, want %q", got, want)
	}
	// The device appears: the next Apply installs only the missing route.
	f.AddDevice("veth9")
	if d, err = f.Apply(ctx, s); err != nil || d.String() != "+ 10.1.0.3/32 dev veth9\n" {
		t.Errorf("after AddDevice: %q, %v", d, err)
	}
	// Deleting a device takes its routes with it; Apply puts nothing back
	// while it is missing.
	f.DeleteDevice("veth1")
	if got, want := f.String(), "table 100\n10.1.0.3/32 dev veth9\n"; got != want {
		t.Errorf("after DeleteDevice:\n%s\nwant:\n%s", got, want)
	}
}

func TestRefusesBadInput(t *testing.T) {
	if _, err := New(Options{Table: 254}); err == nil {
		t.Error("New with the main table: no error")
	}
	f, err := New(Options{Table: 100})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.Apply(ctx, dataplane.State{Routes: []dataplane.Route{dev("10.1.0.2/32", "veth1")}}); err != nil {
		t.Fatal(err)
	}
	before := f.String()
	bad := dataplane.State{Routes: []dataplane.Route{dev("10.1.0.3/32", "veth1"), {Dst: netip.MustParsePrefix("10.1.0.4/32")}}}
	if _, err := f.Apply(ctx, bad); err == nil {
		t.Error("invalid state applied")
	}
	if _, err := f.Apply(ctx, dataplane.State{Table: 101}); !errors.Is(err, dataplane.ErrWrongTable) {
		t.Errorf("state for table 101: %v, want ErrWrongTable", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.Apply(cancelled, dataplane.State{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Apply: %v", err)
	}
	if f.String() != before {
		t.Errorf("refused input changed the table:\n%s\nwas:\n%s", f, before)
	}
}
