package cniplugin

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane/linux"
)

// Check compares the pod with what the agent holds for it: the pair exists
// and is up at the configured MTU, the pod end has the address, the gateway
// route and the default route, and the runtime's cached result (prevResult)
// names the same address. Every difference is reported at once.
func (p *Plugin) Check(ctx context.Context, args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	a := attachment(args)
	want, err := p.Dial(conf.AgentSocket, conf.Timeout).Check(ctx, a)
	if err != nil {
		return cniError(fmt.Errorf("agent check of %s: %w", a.ID(), err))
	}
	v := p.veth(args)
	st, err := p.Wiring.InspectPod(v)
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("check %s: %v", a.ID(), err), "")
	}
	problems := VerifyPod(v, conf.MTU, want, st)
	if conf.RawPrevResult != nil {
		for _, ad := range want.Addresses() {
			problems = append(problems, verifyPrevResult(conf, ad.Addr)...)
		}
	}
	if len(problems) > 0 {
		return types.NewError(types.ErrInternal, fmt.Sprintf("check %s: %s", a.ID(), strings.Join(problems, "; ")), "")
	}
	return nil
}

// VerifyPod lists how the pod's state st differs from what the agent holds
// (want) and the configured mtu; nil when it does not.
func VerifyPod(v linux.PodVeth, mtu int, want cniapi.CheckResponse, st linux.PodState) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if want.HostVeth != "" && want.HostVeth != v.HostName {
		bad("the agent routes the pod to %s, not %s", want.HostVeth, v.HostName)
	}
	if want.Netns != "" && want.Netns != v.PodNetns {
		bad("the agent holds the attachment for netns %s, not %s", want.Netns, v.PodNetns)
	}
	switch {
	case !st.HostVeth:
		bad("host veth %s does not exist", v.HostName)
	case !st.HostVethIsVeth:
		bad("host interface %s is not a veth", v.HostName)
	default:
		if !st.HostUp {
			bad("host veth %s is down", v.HostName)
		}
		if st.HostMTU != mtu {
			bad("host veth %s has MTU %d, want %d", v.HostName, st.HostMTU, mtu)
		}
	}
	if !st.PodLink {
		bad("%s does not exist in %s", v.PodName, v.PodNetns)
		return p
	}
	if !st.PodUp {
		bad("%s is down", v.PodName)
	}
	if st.PodMTU != mtu {
		bad("%s has MTU %d, want %d", v.PodName, st.PodMTU, mtu)
	}
	for _, ad := range want.Addresses() {
		if !slices.Contains(st.Addrs, ad.Addr) {
			bad("%s has addresses %v, want %s", v.PodName, st.Addrs, ad.Addr)
		}
		if !ad.Gateway.IsValid() {
			continue
		}
		onLink := linux.PodRoute{Dst: netip.PrefixFrom(ad.Gateway, ad.Gateway.BitLen())}
		def := linux.PodRoute{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Via: ad.Gateway}
		if ad.Gateway.Is6() {
			def.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		for _, r := range []linux.PodRoute{onLink, def} {
			if !slices.Contains(st.Routes, r) {
				bad("no route %s dev %s (routes: %v)", r, v.PodName, st.Routes)
			}
		}
	}
	return p
}

// verifyPrevResult checks that the runtime's cached result names addr.
func verifyPrevResult(conf *Config, addr netip.Prefix) []string {
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return []string{"prevResult: " + err.Error()}
	}
	prev, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return []string{"prevResult: " + err.Error()}
	}
	var got []string
	for _, ip := range prev.IPs {
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			continue
		}
		ones, _ := ip.Address.Mask.Size()
		if p := netip.PrefixFrom(a.Unmap(), ones); p == addr {
			return nil
		} else {
			got = append(got, p.String())
		}
	}
	return []string{fmt.Sprintf("prevResult has addresses %v, the agent holds %s", got, addr)}
}
