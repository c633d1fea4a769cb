package main

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/terrane-net/terrane/internal/agent"
	"github.com/terrane-net/terrane/internal/dataplane/ebpf"
	"github.com/terrane-net/terrane/internal/dataplane/linux"
)

// fastPath adapts the eBPF fast path to the agent: it resolves a pod's
// veth to its index and MACs.
type fastPath struct {
	fp   *ebpf.FastPath
	host *linux.Host
}

var _ agent.FastPath = (*fastPath)(nil)

// openFastPath attaches the fast path to the interface holding ip.
func openFastPath(host *linux.Host, ip netip.Addr) (*fastPath, error) {
	up, err := host.InterfaceOf(ip)
	if err != nil {
		return nil, fmt.Errorf("--ebpf: the uplink: %w", err)
	}
	idx, _, err := host.LinkInfo(up)
	if err != nil {
		return nil, fmt.Errorf("--ebpf: %w", err)
	}
	fp, err := ebpf.Open(idx)
	if err != nil {
		return nil, fmt.Errorf("--ebpf: %w", err)
	}
	return &fastPath{fp: fp, host: host}, nil
}

func (f *fastPath) AddPod(addr netip.Addr, hostVeth, netns, ifName string) error {
	idx, vethMAC, err := f.host.LinkInfo(hostVeth)
	if err != nil {
		return err
	}
	st, err := linux.InspectPod(linux.PodVeth{HostName: hostVeth, PodNetns: netns, PodName: ifName})
	if err != nil {
		return err
	}
	if !st.PodLink {
		return fmt.Errorf("no %s in %s", ifName, netns)
	}
	podMAC, err := net.ParseMAC(st.PodMAC)
	if err != nil {
		return fmt.Errorf("%s in %s: MAC %q: %w", ifName, netns, st.PodMAC, err)
	}
	return f.fp.AddPod(addr, idx, podMAC, vethMAC)
}

func (f *fastPath) DelPod(addr netip.Addr) error { return f.fp.DelPod(addr) }

func (f *fastPath) SetNetworks(p []netip.Prefix) error { return f.fp.SetNetworks(p) }

func (f *fastPath) Close() error { return f.fp.Close() }

func (f *fastPath) StandAside(addr netip.Addr) error { return f.fp.StandAside(addr) }
