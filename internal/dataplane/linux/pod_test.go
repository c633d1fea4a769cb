//go:build linux

package linux

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ipLink is the part of `ip -j link show` the pod tests look at.
type ipLink struct {
	Name    string   `json:"ifname"`
	MTU     int      `json:"mtu"`
	Flags   []string `json:"flags"`
	Address string   `json:"address"`
	Kind    string   `json:"link_type"`
	Index   int      `json:"ifindex"`
}

func (ns *testNS) link(t *testing.T, name string) (ipLink, bool) {
	t.Helper()
	var links []ipLink
	if err := json.Unmarshal([]byte(ns.ip(t, "-j", "link", "show")), &links); err != nil {
		t.Fatalf("decode ip -j link show: %v", err)
	}
	for _, l := range links {
		if l.Name == name {
			return l, true
		}
	}
	return ipLink{}, false
}

func podPair(host, pod *testNS) PodVeth {
	return PodVeth{HostNetns: host.path, HostName: "trn0123456789a", PodNetns: pod.path, PodName: "eth0"}
}

func TestPrivilegedPodVethSetup(t *testing.T) {
	requireRoot(t)
	host, pod := newNS(t, "host"), newNS(t, "pod")
	v := podPair(host, pod)
	links, err := CreatePodVeth(v, 1400)
	if err != nil {
		t.Fatal(err)
	}
	hl, ok := host.link(t, v.HostName)
	if !ok {
		t.Fatalf("no %s in the host namespace", v.HostName)
	}
	pl, ok := pod.link(t, "eth0")
	if !ok {
		t.Fatal("no eth0 in the pod namespace")
	}
	if _, ok := host.link(t, "eth0"); ok {
		t.Error("the pod end appeared in the host namespace")
	}
	if hl.MTU != 1400 || pl.MTU != 1400 {
		t.Errorf("MTU host %d pod %d, want 1400 both", hl.MTU, pl.MTU)
	}
	if !slices.Contains(hl.Flags, "UP") {
		t.Errorf("host end flags %v, want UP", hl.Flags)
	}
	if links.HostMAC != hl.Address || links.PodMAC != pl.Address || links.PodIndex != pl.Index {
		t.Errorf("CreatePodVeth = %+v, ip says host %s pod %s index %d", links, hl.Address, pl.Address, pl.Index)
	}
	if out := host.ip(t, "-4", "addr", "show", "dev", v.HostName); strings.Contains(out, "inet ") {
		t.Errorf("host end has an address:\n%s", out)
	}

	addr, gw := netip.MustParsePrefix("10.244.1.5/32"), netip.MustParseAddr("169.254.1.1")
	for range 2 { // safe to repeat
		if err := ConfigurePod(v, addr, gw); err != nil {
			t.Fatal(err)
		}
	}
	if out := pod.ip(t, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "inet 10.244.1.5/32 ") {
		t.Errorf("pod address:\n%s", out)
	}
	if pl, _ := pod.link(t, "eth0"); !slices.Contains(pl.Flags, "UP") {
		t.Errorf("pod end flags %v, want UP", pl.Flags)
	}
	// Each end knows the other's address without ARP.
	if out := pod.ip(t, "-4", "neigh", "show", "dev", "eth0"); !strings.Contains(out, "169.254.1.1 lladdr "+hl.Address+" PERMANENT") {
		t.Errorf("pod neighbours, want the gateway at the host end's %s:\n%s", hl.Address, out)
	}
	if out := host.ip(t, "-4", "neigh", "show", "dev", v.HostName); !strings.Contains(out, "10.244.1.5 lladdr "+pl.Address+" PERMANENT") {
		t.Errorf("host neighbours, want the pod at the pod end's %s:\n%s", pl.Address, out)
	}
	want := []string{"169.254.1.1 dev eth0 scope link", "default via 169.254.1.1 dev eth0"}
	routes := slices.DeleteFunc(pod.ipRoutes(t), func(r string) bool { return strings.HasPrefix(r, "fe80::/64 ") })
	if diff := cmp.Diff(want, routes); diff != "" {
		t.Errorf("pod routes (-want +got):\n%s", diff)
	}

	st, err := InspectPod(v)
	if err != nil {
		t.Fatal(err)
	}
	wantSt := PodState{
		HostVeth: true, HostVethIsVeth: true, HostUp: true, HostMTU: 1400,
		PodLink: true, PodUp: true, PodMTU: 1400, PodIndex: pl.Index, PodMAC: pl.Address,
		Addrs: []netip.Prefix{addr},
		Routes: []PodRoute{
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: gw},
			{Dst: netip.MustParsePrefix("169.254.1.1/32")},
		},
	}
	if diff := cmp.Diff(wantSt, st, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("InspectPod (-want +got):\n%s", diff)
	}

	// A second pair of the same name is refused, and the first survives.
	if _, err := CreatePodVeth(v, 1400); !errors.Is(err, ErrHostVethExists) {
		t.Errorf("second CreatePodVeth: %v, want ErrHostVethExists", err)
	}
	// A pod name taken in the pod namespace is refused and leaves nothing.
	v2 := v
	v2.HostName = "trn0123456789b"
	if _, err := CreatePodVeth(v2, 1400); err == nil {
		t.Error("CreatePodVeth succeeded with eth0 taken in the pod")
	}
	if _, ok := host.link(t, v2.HostName); ok {
		t.Errorf("failed CreatePodVeth left %s behind", v2.HostName)
	}
	if _, ok := host.link(t, v.HostName); !ok {
		t.Errorf("failed CreatePodVeth removed %s", v.HostName)
	}
}

func TestPrivilegedPodVethMTUs(t *testing.T) {
	requireRoot(t)
	host, pod := newNS(t, "host"), newNS(t, "pod")
	for i, mtu := range []int{68, 9000, 65535} {
		v := podPair(host, pod)
		v.HostName = v.HostName[:len(v.HostName)-1] + string(rune('a'+i))
		v.PodName = "net" + string(rune('0'+i))
		if _, err := CreatePodVeth(v, mtu); err != nil {
			t.Fatalf("mtu %d: %v", mtu, err)
		}
		hl, _ := host.link(t, v.HostName)
		pl, _ := pod.link(t, v.PodName)
		if hl.MTU != mtu || pl.MTU != mtu {
			t.Errorf("mtu %d: host %d pod %d", mtu, hl.MTU, pl.MTU)
		}
	}
}

func TestPrivilegedPodVethTeardown(t *testing.T) {
	requireRoot(t)
	host, pod := newNS(t, "host"), newNS(t, "pod")
	v := podPair(host, pod)
	if _, err := CreatePodVeth(v, 1500); err != nil {
		t.Fatal(err)
	}
	if err := ConfigurePod(v, netip.MustParsePrefix("10.244.1.5/32"), netip.MustParseAddr("169.254.1.1")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // idempotent
		if err := DeletePodVeth(v); err != nil {
			t.Fatalf("DeletePodVeth #%d: %v", i+1, err)
		}
		if _, ok := host.link(t, v.HostName); ok {
			t.Fatalf("DeletePodVeth #%d: %s still in the host", i+1, v.HostName)
		}
		if _, ok := pod.link(t, "eth0"); ok {
			t.Fatalf("DeletePodVeth #%d: eth0 still in the pod", i+1)
		}
	}
	st, err := InspectPod(v)
	if err != nil {
		t.Fatal(err)
	}
	if st.HostVeth || st.PodLink {
		t.Errorf("InspectPod after delete: %+v", st)
	}

	t.Run("pod namespace gone", func(t *testing.T) {
		// The host end alone (its peer elsewhere), and a pod namespace
		// path that no longer exists.
		host.ip(t, "link", "add", v.HostName, "type", "veth", "peer", "name", "trnpeer")
		gone := v
		gone.PodNetns = "/run/netns/terrane-test-gone-000000"
		if _, err := InspectPod(gone); !errors.Is(err, ErrNetnsGone) {
			t.Errorf("InspectPod: %v, want ErrNetnsGone", err)
		}
		if err := DeletePodVeth(gone); err != nil {
			t.Fatal(err)
		}
		if _, ok := host.link(t, v.HostName); ok {
			t.Errorf("%s survived", v.HostName)
		}
	})
	t.Run("pod namespace file unmounted", func(t *testing.T) {
		// What a netns bind mount leaves behind once unmounted.
		stale := filepath.Join(t.TempDir(), "netns")
		if err := os.WriteFile(stale, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		gone := v
		gone.PodNetns = stale
		if _, err := InspectPod(gone); !errors.Is(err, ErrNetnsGone) {
			t.Errorf("InspectPod: %v, want ErrNetnsGone", err)
		}
		if err := DeletePodVeth(gone); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("pod name is not a veth", func(t *testing.T) {
		notOurs := v
		notOurs.PodName = "lo"
		if err := DeletePodVeth(notOurs); err != nil {
			t.Fatalf("DeletePodVeth: %v (the host end was already gone)", err)
		}
		if _, ok := pod.link(t, "lo"); !ok {
			t.Error("DeletePodVeth deleted the pod's loopback")
		}
	})
}
