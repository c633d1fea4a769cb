//go:build linux

package linux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/dataplane"
)

const testTable = 100

func via(dst, hop string) dataplane.Route {
	return dataplane.Route{Dst: netip.MustParsePrefix(dst), Via: netip.MustParseAddr(hop)}
}

func dev(dst, name string) dataplane.Route {
	return dataplane.Route{Dst: netip.MustParsePrefix(dst), Dev: name}
}

func viaDev(dst, hop, name string) dataplane.Route {
	r := via(dst, hop)
	r.Dev = name
	return r
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"no table", Options{}, "table 0 is not a routing table ID"},
		{"main table", Options{Table: 254}, "reserved"},
		{"kernel protocol", Options{Table: testTable, Protocol: 2}, "protocol 2"},
		{"static protocol", Options{Table: testTable, Protocol: 4}, "protocol 4"},
		{"protocol too large", Options{Table: testTable, Protocol: 256}, "protocol 256"},
		{"two namespaces", Options{Table: testTable, NetNS: 3, NetNSPath: "/run/netns/x"}, "not both"},
		{"missing namespace", Options{Table: testTable, NetNSPath: "/nonexistent/terrane-test"}, "/nonexistent/terrane-test"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.opts)
			if err == nil {
				d.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// hostNS is a namespace with a veth pair, terrane0 (addressed, the way to
// the next hops) and terrane1 (for device routes).
func hostNS(t *testing.T, role string) *testNS {
	ns := newNS(t, role)
	ns.ip(t, "link", "add", "terrane0", "type", "veth", "peer", "name", "terrane1")
	ns.ip(t, "link", "set", "terrane0", "up")
	ns.ip(t, "link", "set", "terrane1", "up")
	ns.ip(t, "addr", "add", "10.99.0.1/24", "dev", "terrane0")
	ns.ip(t, "addr", "add", "2001:db8:99::1/64", "dev", "terrane0", "nodad")
	return ns
}

func newDataplane(t *testing.T, opts Options) (*Dataplane, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&log, nil))
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, &log
}

func mustApply(t *testing.T, d *Dataplane, s dataplane.State, want string) {
	t.Helper()
	diff, err := d.Apply(context.Background(), s)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff.String() != want {
		t.Fatalf("Apply diff:\n%s\nwant:\n%s", diff, want)
	}
}

func checkRoutes(t *testing.T, d *Dataplane, want ...string) {
	t.Helper()
	rs, err := d.Routes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("Routes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func checkLines(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestPrivilegedApply drives one table through a sequence of States and
// checks, after each, the adapter's view, `ip route` and the kernel's own
// change notifications: only the difference is ever touched.
func TestPrivilegedApply(t *testing.T) {
	requireRoot(t)
	ns := hostNS(t, "apply")
	// Routes the dataplane does not own: another protocol in its table, its
	// protocol in another table and in main.
	ns.ip(t, "route", "add", "10.250.0.0/24", "via", "10.99.0.2", "table", "100", "proto", "static")
	ns.ip(t, "-6", "route", "add", "2001:db8:250::/64", "via", "2001:db8:99::2", "table", "100", "proto", "static")
	ns.ip(t, "route", "add", "10.200.0.0/24", "via", "10.99.0.2", "table", "101", "proto", "250")
	ns.ip(t, "route", "add", "10.251.0.0/24", "via", "10.99.0.2", "proto", "250")
	foreign := []string{
		"10.250.0.0/24 via 10.99.0.2 dev terrane0 proto static",
		"2001:db8:250::/64 via 2001:db8:99::2 dev terrane0 proto static",
	}
	others := func() []string {
		return append(ns.ipRoutes(t, "table", "101"), ns.ipRoutes(t, "proto", "250")...)
	}
	othersBefore := others()

	d, log := newDataplane(t, Options{Table: testTable, NetNSPath: ns.path})
	w := watchRoutes(t, ns)

	// 1. From empty: IPv4 and IPv6, via a next hop and to a device.
	s1 := dataplane.State{Table: testTable, Routes: []dataplane.Route{
		via("10.200.0.0/24", "10.99.0.2"),
		dev("10.201.0.5/32", "terrane1"),
		viaDev("10.202.0.0/24", "10.99.0.2", "terrane0"),
		via("0.0.0.0/0", "10.99.0.254"),
		via("2001:db8:200::/64", "2001:db8:99::2"),
		dev("2001:db8:201::5/128", "terrane1"),
	}}
	mustApply(t, d, s1, ""+
		"+ 0.0.0.0/0 via 10.99.0.254\n"+
		"+ 10.200.0.0/24 via 10.99.0.2\n"+
		"+ 10.201.0.5/32 dev terrane1\n"+
		"+ 10.202.0.0/24 via 10.99.0.2 dev terrane0\n"+
		"+ 2001:db8:200::/64 via 2001:db8:99::2\n"+
		"+ 2001:db8:201::5/128 dev terrane1\n")
	checkRoutes(t, d,
		"0.0.0.0/0 via 10.99.0.254 dev terrane0",
		"10.200.0.0/24 via 10.99.0.2 dev terrane0",
		"10.201.0.5/32 dev terrane1",
		"10.202.0.0/24 via 10.99.0.2 dev terrane0",
		"2001:db8:200::/64 via 2001:db8:99::2 dev terrane0",
		"2001:db8:201::5/128 dev terrane1",
	)
	checkLines(t, "ip route show table 100 proto 250", ns.ipRoutes(t, "table", "100", "proto", "250"),
		"default via 10.99.0.254 dev terrane0",
		"10.200.0.0/24 via 10.99.0.2 dev terrane0",
		"10.201.0.5 dev terrane1 scope link",
		"10.202.0.0/24 via 10.99.0.2 dev terrane0",
		"2001:db8:200::/64 via 2001:db8:99::2 dev terrane0",
		"2001:db8:201::5 dev terrane1",
	)
	checkLines(t, "kernel changes", w.changes(t, testTable),
		"+ 0.0.0.0/0 via 10.99.0.254",
		"+ 10.200.0.0/24 via 10.99.0.2",
		"+ 10.201.0.5/32",
		"+ 10.202.0.0/24 via 10.99.0.2",
		"+ 2001:db8:200::/64 via 2001:db8:99::2",
		"+ 2001:db8:201::5/128",
	)

	// 2. The same State again: nothing to do, and the kernel hears nothing.
	mustApply(t, d, s1, "")
	checkLines(t, "kernel changes on the second Apply", w.changes(t, testTable))

	// 3. A changed State: two next hops move, one route goes, two come
	// (one with an explicit scope); the rest stay untouched.
	s2 := dataplane.State{Routes: []dataplane.Route{
		via("10.200.0.0/24", "10.99.0.3"),
		viaDev("10.202.0.0/24", "10.99.0.2", "terrane0"),
		{Dst: netip.MustParsePrefix("10.203.0.0/16"), Dev: "terrane1", Scope: dataplane.ScopeUniverse},
		via("0.0.0.0/0", "10.99.0.254"),
		via("2001:db8:200::/64", "2001:db8:99::3"),
		dev("2001:db8:201::5/128", "terrane1"),
		via("2001:db8:202::/64", "2001:db8:99::3"),
	}}
	mustApply(t, d, s2, ""+
		"+ 10.203.0.0/16 dev terrane1 scope global\n"+
		"+ 2001:db8:202::/64 via 2001:db8:99::3\n"+
		"~ 10.200.0.0/24 via 10.99.0.2 dev terrane0 -> 10.200.0.0/24 via 10.99.0.3\n"+
		"~ 2001:db8:200::/64 via 2001:db8:99::2 dev terrane0 -> 2001:db8:200::/64 via 2001:db8:99::3\n"+
		"- 10.201.0.5/32 dev terrane1\n")
	checkLines(t, "kernel changes", w.changes(t, testTable),
		"+ 10.200.0.0/24 via 10.99.0.3",
		"+ 10.203.0.0/16",
		"+ 2001:db8:200::/64 via 2001:db8:99::3",
		"+ 2001:db8:202::/64 via 2001:db8:99::3",
		"- 10.201.0.5/32",
	)
	checkLines(t, "ip route show table 100", ns.ipRoutes(t, "table", "100"), append([]string{
		"default via 10.99.0.254 dev terrane0 proto 250",
		"10.200.0.0/24 via 10.99.0.3 dev terrane0 proto 250",
		"10.202.0.0/24 via 10.99.0.2 dev terrane0 proto 250",
		"10.203.0.0/16 dev terrane1 proto 250",
		"2001:db8:200::/64 via 2001:db8:99::3 dev terrane0 proto 250",
		"2001:db8:201::5 dev terrane1 proto 250",
		"2001:db8:202::/64 via 2001:db8:99::3 dev terrane0 proto 250",
	}, foreign...)...)
	mustApply(t, d, s2, "")
	checkLines(t, "kernel changes on the second Apply", w.changes(t, testTable))

	// 4. The protocol marks ownership: a route of Terrane's protocol added
	// by hand is removed, and so is one in a form Apply never writes.
	ns.ip(t, "route", "add", "10.205.0.0/24", "via", "10.99.0.2", "table", "100", "proto", "250")
	ns.ip(t, "route", "add", "10.202.0.0/24", "via", "10.99.0.2", "table", "100", "proto", "250", "metric", "7")
	w.changes(t, testTable)
	mustApply(t, d, s2, ""+
		"- 10.202.0.0/24 via 10.99.0.2 dev terrane0\n"+
		"- 10.205.0.0/24 via 10.99.0.2 dev terrane0\n")
	checkLines(t, "kernel changes", w.changes(t, testTable), "- 10.202.0.0/24 via 10.99.0.2", "- 10.205.0.0/24 via 10.99.0.2")
	checkRoutes(t, d,
		"0.0.0.0/0 via 10.99.0.254 dev terrane0",
		"10.200.0.0/24 via 10.99.0.3 dev terrane0",
		"10.202.0.0/24 via 10.99.0.2 dev terrane0",
		"10.203.0.0/16 dev terrane1 scope global",
		"2001:db8:200::/64 via 2001:db8:99::3 dev terrane0",
		"2001:db8:201::5/128 dev terrane1",
		"2001:db8:202::/64 via 2001:db8:99::3 dev terrane0",
	)

	// 5. An invalid State is refused whole and changes nothing.
	bad := dataplane.State{Routes: []dataplane.Route{via("10.206.0.0/24", "10.99.0.2"), {Dst: netip.MustParsePrefix("10.207.0.0/24")}}}
	if _, err := d.Apply(context.Background(), bad); err == nil {
		t.Error("invalid State applied")
	}
	if _, err := d.Apply(context.Background(), dataplane.State{Table: 101}); !errors.Is(err, dataplane.ErrWrongTable) {
		t.Errorf("State for table 101: %v, want ErrWrongTable", err)
	}
	checkLines(t, "kernel changes after refused States", w.changes(t, testTable))

	// 6. Empty: every route of Terrane's goes; the others stay.
	mustApply(t, d, dataplane.State{}, ""+
		"- 0.0.0.0/0 via 10.99.0.254 dev terrane0\n"+
		"- 10.200.0.0/24 via 10.99.0.3 dev terrane0\n"+
		"- 10.202.0.0/24 via 10.99.0.2 dev terrane0\n"+
		"- 10.203.0.0/16 dev terrane1 scope global\n"+
		"- 2001:db8:200::/64 via 2001:db8:99::3 dev terrane0\n"+
		"- 2001:db8:201::5/128 dev terrane1\n"+
		"- 2001:db8:202::/64 via 2001:db8:99::3 dev terrane0\n")
	checkLines(t, "ip route show table 100", ns.ipRoutes(t, "table", "100"), foreign...)
	checkLines(t, "other tables", others(), othersBefore...)
	if !strings.Contains(log.String(), "msg=\"route replaced\"") {
		t.Errorf("log has no replacement line:\n%s", log)
	}
}

// TestPrivilegedPartialFailure checks that a route that cannot be applied
// (a foreign route holds its destination; its device is missing) is skipped
// and reported while the others apply, and that the foreign route survives.
func TestPrivilegedPartialFailure(t *testing.T) {
	requireRoot(t)
	ns := hostNS(t, "partial")
	ns.ip(t, "route", "add", "10.250.0.0/24", "via", "10.99.0.2", "table", "100", "proto", "static")
	ns.ip(t, "-6", "route", "add", "2001:db8:250::/64", "via", "2001:db8:99::2", "table", "100", "proto", "static")
	d, _ := newDataplane(t, Options{Table: testTable, Protocol: 0xfb, NetNS: ns.h})

	s := dataplane.State{Routes: []dataplane.Route{
		via("10.250.0.0/24", "10.99.0.3"),
		via("2001:db8:250::/64", "2001:db8:99::3"),
		dev("10.201.0.5/32", "terrane9"),
		via("10.200.0.0/24", "10.99.0.2"),
	}}
	diff, err := d.Apply(context.Background(), s)
	if !errors.Is(err, ErrForeignRoute) {
		t.Errorf("Apply: %v, want ErrForeignRoute", err)
	}
	for _, w := range []string{"10.250.0.0/24", "2001:db8:250::/64", "terrane9"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Apply error does not name %s: %v", w, err)
		}
	}
	if got, want := diff.String(), "+ 10.200.0.0/24 via 10.99.0.2\n"; got != want {
		t.Errorf("diff = %q, want %q", got, want)
	}
	checkLines(t, "ip route show table 100", ns.ipRoutes(t, "table", "100"),
		"10.200.0.0/24 via 10.99.0.2 dev terrane0 proto 251",
		"10.250.0.0/24 via 10.99.0.2 dev terrane0 proto static",
		"2001:db8:250::/64 via 2001:db8:99::2 dev terrane0 proto static",
	)
	// The device appears: the next Apply adds only its route.
	ns.ip(t, "link", "add", "terrane9", "type", "veth", "peer", "name", "terrane8")
	ns.ip(t, "link", "set", "terrane9", "up")
	diff, err = d.Apply(context.Background(), s)
	if !errors.Is(err, ErrForeignRoute) || diff.String() != "+ 10.201.0.5/32 dev terrane9\n" {
		t.Errorf("second Apply: %q, %v", diff, err)
	}
}

// TestPrivilegedTraffic carries real TCP (and ICMP, when ping is installed)
// between two namespaces through routes the dataplane programmed, and checks
// it stops once they are removed.
func TestPrivilegedTraffic(t *testing.T) {
	requireRoot(t)
	h1, h2 := newNS(t, "h1"), newNS(t, "h2")
	h1.ip(t, "link", "add", "terrane0", "type", "veth", "peer", "name", "terrane0", "netns", h2.name)
	for i, ns := range []*testNS{h1, h2} {
		ns.ip(t, "link", "set", "terrane0", "up")
		ns.ip(t, "addr", "add", fmt.Sprintf("10.98.0.%d/24", i+1), "dev", "terrane0")
		ns.ip(t, "addr", "add", fmt.Sprintf("fd00:98::%d/64", i+1), "dev", "terrane0", "nodad")
	}
	// h2 hosts the "pod" addresses on lo; h1 sends their traffic to
	// Terrane's table, as the agent's rules will.
	h2.ip(t, "addr", "add", "10.77.0.1/32", "dev", "lo")
	h2.ip(t, "addr", "add", "fd00:77::1/128", "dev", "lo", "nodad") // usable at once, not tentative
	h1.ip(t, "rule", "add", "to", "10.77.0.0/24", "lookup", "100")
	h1.ip(t, "-6", "rule", "add", "to", "fd00:77::/64", "lookup", "100")

	targets := []string{"10.77.0.1", "fd00:77::1"}
	addrs := make([]string, len(targets))
	for i, a := range targets {
		var ln net.Listener
		if err := inNS(h2.h, func() (err error) {
			ln, err = net.Listen("tcp", net.JoinHostPort(a, "0"))
			return err
		}); err != nil {
			t.Fatalf("listen in %s: %v", h2.name, err)
		}
		t.Cleanup(func() { ln.Close() })
		go serveHello(ln)
		addrs[i] = ln.Addr().String()
	}
	reach := func(addr string) error {
		return inNS(h1.h, func() error {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 5)
			if _, err := c.Read(buf); err != nil || string(buf) != "hello" {
				return fmt.Errorf("read %q: %v", buf, err)
			}
			return nil
		})
	}
	for _, a := range addrs {
		if err := reach(a); err == nil {
			t.Fatalf("%s reachable before any route was programmed", a)
		}
	}

	d, _ := newDataplane(t, Options{Table: testTable, NetNS: h1.h})
	s := dataplane.State{Routes: []dataplane.Route{
		via("10.77.0.0/24", "10.98.0.2"),
		via("fd00:77::/64", "fd00:98::2"),
	}}
	mustApply(t, d, s, "+ 10.77.0.0/24 via 10.98.0.2\n+ fd00:77::/64 via fd00:98::2\n")
	for _, a := range addrs {
		if err := reach(a); err != nil {
			t.Errorf("TCP to %s through the programmed route: %v", a, err)
		}
	}
	if _, err := exec.LookPath("ping"); err != nil {
		t.Log("ping not installed (Debian: iputils-ping); ICMP check skipped, TCP checked above")
	} else {
		for _, a := range targets {
			run(t, "ip", "netns", "exec", h1.name, "ping", "-c", "1", "-W", "2", a)
		}
	}

	mustApply(t, d, dataplane.State{}, "- 10.77.0.0/24 via 10.98.0.2 dev terrane0\n- fd00:77::/64 via fd00:98::2 dev terrane0\n")
	for _, a := range addrs {
		if err := reach(a); err == nil {
			t.Errorf("%s still reachable after its route was removed", a)
		}
	}
}

func serveHello(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("hello"))
		c.Close()
	}
}

// TestPrivilegedApplyManyDevices: with routes to more devices than
// linkDumpAt, the snapshot names them from one link dump, later syncs from
// what the Dataplane remembers; a device made again under its name is
// routed to by its new index.
func TestPrivilegedApplyManyDevices(t *testing.T) {
	requireRoot(t)
	ns := hostNS(t, "many")
	var s dataplane.State
	s.Table = testTable
	var want []string
	for i := range linkDumpAt + 4 {
		name := fmt.Sprintf("trnmany%02d", i)
		ns.ip(t, "link", "add", name, "type", "veth", "peer", "name", fmt.Sprintf("trnpeer%02d", i))
		ns.ip(t, "link", "set", name, "up")
		s.Routes = append(s.Routes, dev(fmt.Sprintf("10.210.0.%d/32", 10+i), name))
		want = append(want, fmt.Sprintf("10.210.0.%d/32 dev %s", 10+i, name))
	}
	d, _ := newDataplane(t, Options{Table: testTable, NetNSPath: ns.path})
	if _, err := d.Apply(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	checkRoutes(t, d, want...)
	mustApply(t, d, s, "") // named from the dump: nothing to change
	mustApply(t, d, s, "") // and from what the Dataplane remembers

	// A pod's veth deleted and made again under its name (a retried ADD):
	// a new index, which the next Apply routes to.
	ns.ip(t, "link", "del", "trnmany03")
	ns.ip(t, "link", "add", "trnmany03", "type", "veth", "peer", "name", "trnpeer03")
	ns.ip(t, "link", "set", "trnmany03", "up")
	mustApply(t, d, s, "+ 10.210.0.13/32 dev trnmany03\n")
	checkRoutes(t, d, want...)
	if out := ns.ip(t, "route", "show", "table", fmt.Sprint(testTable), "10.210.0.13"); !strings.Contains(out, "dev trnmany03") {
		t.Errorf("ip route show table %d 10.210.0.13: %s", testTable, out)
	}
}
