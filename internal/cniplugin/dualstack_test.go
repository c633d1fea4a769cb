package cniplugin

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane/linux"
)

func dualResponse() cniapi.AddResponse {
	return cniapi.AddResponse{Network: "blue", Addr: netip.MustParsePrefix("10.244.0.7/32"), Gateway: cniapi.GatewayV4,
		Second: &cniapi.Address{Network: "blue6", Addr: netip.MustParsePrefix("fd00:10::7/128"), Gateway: cniapi.GatewayV6}}
}

// TestAddDualStack: the annotation's pair reaches the agent as it is; both
// addresses the agent answers are wired, in order, and both are in the
// result with a default route each.
func TestAddDualStack(t *testing.T) {
	p, agent, wiring, out := newTestPlugin(t)
	agent.addResp = dualResponse()
	args := cmdArgs(t, "1.1.0", `,"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"terrane.io/network":"blue,blue6"}}`)
	if err := p.Funcs().Add(args); err != nil {
		t.Fatal(err)
	}
	if agent.addReq.Network != "blue,blue6" {
		t.Errorf("agent asked for network %q, want the annotation's blue,blue6", agent.addReq.Network)
	}
	hostVeth := cniapi.HostVeth("c1", "eth0")
	wantCalls := []string{"create " + hostVeth + " eth0 mtu 1450", "configure eth0 10.244.0.7/32 via 169.254.1.1", "configure eth0 fd00:10::7/128 via fe80::1"}
	if !slices.Equal(wiring.calls, wantCalls) {
		t.Errorf("wiring calls %q, want %q", wiring.calls, wantCalls)
	}
	got := compact(t, out.Bytes())
	for _, want := range []string{
		`"ips":[{"address":"10.244.0.7/32","gateway":"169.254.1.1","interface":1},{"address":"fd00:10::7/128","gateway":"fe80::1","interface":1}]`,
		`"routes":[{"dst":"0.0.0.0/0","gw":"169.254.1.1"},{"dst":"::/0","gw":"fe80::1"}]`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("result %s: want %s", got, want)
		}
	}
}

// TestAddDualStackBadAnswer: a second address of the first one's family,
// or with a gateway of the other family, is refused and rolled back.
func TestAddDualStackBadAnswer(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*cniapi.Address)
		want string
	}{
		{"same family", func(a *cniapi.Address) { a.Addr, a.Gateway = netip.MustParsePrefix("10.244.0.8/32"), cniapi.GatewayV4 }, "want the other family"},
		{"gateway family", func(a *cniapi.Address) { a.Gateway = cniapi.GatewayV4 }, "want an address of the family"},
		{"not a host prefix", func(a *cniapi.Address) { a.Addr = netip.MustParsePrefix("fd00:10::/64") }, "want a single address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, agent, wiring, _ := newTestPlugin(t)
			agent.addResp = dualResponse()
			c.edit(agent.addResp.Second)
			wantCode(t, p.Funcs().Add(cmdArgs(t, "1.1.0", "")), types.ErrInternal, c.want)
			if !slices.Contains(agent.calls, "del c1/eth0") || len(wiring.veths) != 0 {
				t.Errorf("agent calls %q, veths %v: want a release and no veth", agent.calls, wiring.veths)
			}
		})
	}
}

// TestVerifyPodDualStack: CHECK wants both addresses and both families'
// routes.
func TestVerifyPodDualStack(t *testing.T) {
	v := linux.PodVeth{HostName: "trn0", PodNetns: "/run/netns/p", PodName: "eth0"}
	r := dualResponse()
	want := cniapi.CheckResponse{Network: r.Network, Addr: r.Addr, Gateway: r.Gateway, Second: r.Second}
	st := linux.PodState{HostVeth: true, HostVethIsVeth: true, HostUp: true, HostMTU: 1500, PodLink: true, PodUp: true, PodMTU: 1500,
		Addrs: []netip.Prefix{r.Addr, r.Second.Addr},
		Routes: []linux.PodRoute{
			{Dst: netip.MustParsePrefix("169.254.1.1/32")}, {Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: cniapi.GatewayV4},
			{Dst: netip.MustParsePrefix("fe80::1/128")}, {Dst: netip.MustParsePrefix("::/0"), Via: cniapi.GatewayV6},
		}}
	if p := VerifyPod(v, 1500, want, st); len(p) != 0 {
		t.Fatalf("a wired dual-stack pod: %q", p)
	}
	st.Addrs = st.Addrs[:1]
	st.Routes = st.Routes[:2]
	p := VerifyPod(v, 1500, want, st)
	if len(p) != 3 || !strings.Contains(p[0], "want fd00:10::7/128") || !strings.Contains(p[1], "fe80::1") || !strings.Contains(p[2], "::/0") {
		t.Fatalf("a pod missing its IPv6 address and routes: %q", p)
	}
}
