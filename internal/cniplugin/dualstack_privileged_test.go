//go:build linux

package cniplugin_test

import (
	"net/netip"
	"strings"
	"testing"
)

// TestPrivilegedCNItoolDualStack: pods whose annotation names two networks
// get an IPv4 and an IPv6 address, both in the result; each pod routes
// both families through its gateway (fe80::1 for IPv6, known by a
// permanent neighbour entry), they reach each other over both by ICMP and
// TCP, CHECK passes and catches a missing IPv6 default route, and DEL
// removes everything.
func TestPrivilegedCNItoolDualStack(t *testing.T) {
	l := newLab(t)
	podA, podB := newLabNS(t, "pod"), newLabNS(t, "pod")
	defer noGlobalCache(t, podA, podB)
	net := l.networkV11
	dual := []string{`CAP_ARGS={"io.kubernetes.cri.pod-annotations":{"terrane.io/network":"blue,blue6"}}`}
	addrs := map[*labNS][2]netip.Addr{}
	for _, p := range []*labNS{podA, podB} {
		r := parseResult100(t, l.cnitoolOK(t, dual, "add", net, p.path), "1.1.0")
		if len(r.IPs) != 2 || len(r.Routes) != 2 {
			t.Fatalf("dual-stack result: ips %+v routes %+v, want two of each", r.IPs, r.Routes)
		}
		v4, _ := netip.AddrFromSlice(r.IPs[0].Address.IP)
		v6, _ := netip.AddrFromSlice(r.IPs[1].Address.IP)
		v4 = v4.Unmap()
		if !v4.Is4() || !v6.Is6() || r.IPs[1].Gateway.String() != "fe80::1" || r.Routes[1].Dst.String() != "::/0" || r.Routes[1].GW.String() != "fe80::1" {
			t.Fatalf("dual-stack result: ips %+v routes %+v", r.IPs, r.Routes)
		}
		addrs[p] = [2]netip.Addr{v4, v6}
		got := run(t, "ip", "-n", p.name, "-6", "route", "show", "default")
		if !strings.HasPrefix(got, "default via fe80::1 dev eth0") {
			t.Errorf("pod IPv6 default route %q, want via fe80::1 dev eth0", got)
		}
		neigh := run(t, "ip", "-n", p.name, "-6", "neigh", "show", "fe80::1", "dev", "eth0")
		if !strings.Contains(neigh, "PERMANENT") {
			t.Errorf("pod neighbour fe80::1: %q, want a permanent entry", neigh)
		}
	}
	for _, fam := range []int{0, 1} {
		ping(t, podA, addrs[podB][fam])
		ping(t, podB, addrs[podA][fam])
		tcpEcho(t, podA, podB, addrs[podA][fam], addrs[podB][fam])
	}
	l.cnitoolOK(t, nil, "check", net, podA.path)
	run(t, "ip", "-n", podA.name, "-6", "route", "del", "default")
	if _, err := l.cnitoolRun(nil, "check", net, podA.path); err == nil || !strings.Contains(err.Error(), "no route ::/0 via fe80::1 dev eth0") {
		t.Errorf("CHECK without the IPv6 default route: %v, want it to name the route", err)
	}
	for _, p := range []*labNS{podA, podB} {
		l.cnitoolOK(t, nil, "del", net, p.path)
	}
	if got := run(t, "ip", "-n", l.host.name, "-6", "route", "show", "fd00:244::/120"); strings.TrimSpace(got) != "" {
		t.Errorf("IPv6 host routes after DEL: %q", got)
	}
	if n := l.agent.count(); n != 0 {
		t.Errorf("the agent holds %d attachments after DEL, want 0", n)
	}
}
