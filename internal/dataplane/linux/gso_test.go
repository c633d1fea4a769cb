//go:build linux

package linux

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestPrivilegedGSOMaxSize: BIG TCP sizes reach both ends of a pod's pair
// and read back through netlink; a size above the device's tso_max_size is
// capped at it; a size out of range is refused and changes nothing.
func TestPrivilegedGSOMaxSize(t *testing.T) {
	requireRoot(t)
	host, pod := newNS(t, "host"), newNS(t, "pod")
	v := podPair(host, pod)
	if _, err := CreatePodVeth(v, 1500); err != nil {
		t.Fatal(err)
	}
	before, err := LinkGSOSizes(pod.path, v.PodName)
	if err != nil {
		t.Fatal(err)
	}
	if before.GSOIPv4 != DefaultGSOSize || before.TSOMax < BigTCPSize {
		t.Fatalf("a new veth has %+v: want gso_ipv4_max_size %d and tso_max_size at least %d", before, DefaultGSOSize, BigTCPSize)
	}

	if err := SetPodGSOMaxSize(v, BigTCPSize); err != nil {
		t.Fatal(err)
	}
	for _, end := range []struct{ ns, name string }{{host.path, v.HostName}, {pod.path, v.PodName}} {
		got, err := LinkGSOSizes(end.ns, end.name)
		if err != nil {
			t.Fatal(err)
		}
		want := GSOSizes{GSO: BigTCPSize, GRO: BigTCPSize, GSOIPv4: BigTCPSize, GROIPv4: BigTCPSize, TSOMax: before.TSOMax}
		if got != want {
			t.Errorf("%s: %+v, want %+v", end.name, got, want)
		}
	}

	// Above the device's limit: capped.
	n, err := SetGSOMaxSize(host.path, v.HostName, MaxGSOSize)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := LinkGSOSizes(host.path, v.HostName); n != min(MaxGSOSize, before.TSOMax) || got.GSOIPv4 != n || got.GRO != n {
		t.Errorf("asked %d: applied %d, link %+v; want the device's tso_max_size %d", MaxGSOSize, n, got, before.TSOMax)
	}

	// The agent's uplink (Host.SetGSOMaxSize): raised, and its undo puts
	// back the four sizes it had.
	hh, err := netlink.NewHandleAt(host.h)
	if err != nil {
		t.Fatal(err)
	}
	defer hh.Close()
	x := &Host{h: hh}
	was, _ := LinkGSOSizes(host.path, v.HostName)
	applied, undo, err := x.SetGSOMaxSize(v.HostName, BigTCPSize)
	if err != nil || applied != BigTCPSize || undo == nil {
		t.Fatalf("Host.SetGSOMaxSize: %d, undo %v, %v", applied, undo != nil, err)
	}
	if got, _ := LinkGSOSizes(host.path, v.HostName); got.GSOIPv4 != BigTCPSize {
		t.Errorf("raised: %+v, want %d", got, BigTCPSize)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if got, _ := LinkGSOSizes(host.path, v.HostName); got != was {
		t.Errorf("undone: %+v, want %+v as before", got, was)
	}

	// Out of range: refused, nothing changed.
	for _, bad := range []int{1000, MaxGSOSize + 1} {
		if _, err := SetGSOMaxSize(pod.path, v.PodName, bad); !errors.Is(err, ErrGSOSize) {
			t.Errorf("size %d: err %v, want ErrGSOSize", bad, err)
		}
	}
	if got, _ := LinkGSOSizes(pod.path, v.PodName); got.GSOIPv4 != BigTCPSize {
		t.Errorf("after refused sizes the pod end has %+v, want it unchanged at %d", got, BigTCPSize)
	}
	if _, err := SetGSOMaxSize(pod.path, "nosuch0", BigTCPSize); err == nil {
		t.Error("a missing link: no error")
	}
}
