//go:build linux

package linux

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/terrane-net/terrane/internal/testnet"
)

// requireRoot skips a TestPrivileged* test when it cannot create network
// namespaces.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create network namespaces; run `go test` as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("privileged test: needs the ip command from iproute2")
	}
}

// testNS is a fresh named network namespace, deleted when the test ends.
type testNS struct {
	name string
	path string
	h    netns.NsHandle
}

func newNS(t *testing.T, role string) *testNS {
	t.Helper()
	name := testnet.NewNS(t, role)
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	return &testNS{name: name, path: "/run/netns/" + name, h: h}
}

// ip runs `ip -n NS args...` and returns its output, failing the test on error.
func (ns *testNS) ip(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"-n", ns.name}, args...)...)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return testnet.Run(t, name, args...)
}

// ipRoutes is `ip route show` of a table (both families) as trimmed lines,
// without the fields every IPv6 route carries.
func (ns *testNS) ipRoutes(t *testing.T, args ...string) []string {
	t.Helper()
	var lines []string
	for _, fam := range []string{"-4", "-6"} {
		cmd := append([]string{"-n", ns.name, fam, "route", "show"}, args...)
		b, err := exec.Command("ip", cmd...).CombinedOutput()
		out := string(b)
		if err != nil && strings.Contains(out, "FIB table does not exist") {
			continue // a table the family has never used: empty
		}
		if err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(cmd, " "), err, out)
		}
		for l := range strings.Lines(out) {
			l = strings.Join(strings.Fields(l), " ")
			l = strings.ReplaceAll(l, " metric 1024", "")
			l = strings.ReplaceAll(l, " pref medium", "")
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	slices.Sort(lines)
	return lines
}

// inNS runs fn on a thread that has entered ns. The thread is never
// unlocked, so the runtime discards it afterwards instead of reusing a thread
// in the wrong namespace.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// routeWatcher records the route changes a namespace's kernel announces.
type routeWatcher struct {
	ns      *testNS
	updates chan netlink.RouteUpdate
	marker  int
}

// markerTable holds the marker routes that delimit a batch of events.
const markerTable = 4242

func watchRoutes(t *testing.T, ns *testNS) *routeWatcher {
	t.Helper()
	w := &routeWatcher{ns: ns, updates: make(chan netlink.RouteUpdate, 1024)}
	done := make(chan struct{})
	var stopping atomic.Bool
	h := ns.h
	err := netlink.RouteSubscribeWithOptions(w.updates, done, netlink.RouteSubscribeOptions{
		Namespace: &h,
		ErrorCallback: func(err error) {
			if !stopping.Load() { // closing the socket makes Receive fail
				t.Errorf("route subscription: %v", err)
			}
		},
	})
	if err != nil {
		t.Fatalf("subscribe to routes in %s: %v", ns.name, err)
	}
	t.Cleanup(func() {
		stopping.Store(true)
		close(done)
		for range w.updates { // closed once the receiver, and its callback, are done
		}
	})
	return w
}

// changes returns the changes announced in table since the last call, as
// "+ DST via GW dev DEV" / "- ...", sorted. It adds a marker route in another
// table and reads until the marker arrives, so nothing still in flight is
// missed.
func (w *routeWatcher) changes(t *testing.T, table int) []string {
	t.Helper()
	w.marker++
	dst := fmt.Sprintf("198.51.100.%d/32", w.marker)
	w.ns.ip(t, "route", "add", dst, "dev", "lo", "table", fmt.Sprint(markerTable))
	var out []string
	timeout := time.After(5 * time.Second)
	for {
		select {
		case u := <-w.updates:
			if u.Table == markerTable {
				if u.Type == syscall.RTM_NEWROUTE && u.Dst != nil && u.Dst.String() == dst {
					slices.Sort(out)
					return out
				}
				continue
			}
			if u.Table != table {
				continue
			}
			sign := "+"
			if u.Type != syscall.RTM_NEWROUTE {
				sign = "-"
			}
			s := sign + " " + u.Dst.String()
			if u.Gw != nil {
				s += " via " + u.Gw.String()
			}
			out = append(out, s)
		case <-timeout:
			t.Fatalf("no marker route event after 5s; changes so far: %v", out)
		}
	}
}
