//go:build linux

// Package ebpf is Terrane's optional eBPF fast path ("host routing" as in
// Cilium): TCX programs on the host's uplink and on each pod's host-side
// veth that hand IPv4 packets for a local pod straight to the pod's
// interface (bpf_redirect_peer) and packets from a pod to a remote pod
// straight to the uplink (bpf_redirect_neigh: the kernel's FIB lookup and
// neighbour resolution, policy rules included). Packets skip the host's IP
// stack and one softirq hop each way.
//
// The kernel routes stay the source of truth: the programs only forward
// what the routes would forward the same way, and pass (TCX_NEXT)
// everything else. Nothing is pinned: when the process that opened the
// fast path exits (or calls Close) the programs detach and the routes carry
// the traffic again.
//
// The programs are written with cilium/ebpf's asm package (no C compiler).
// They do not decrement the IPv4 TTL: like a bridge, the fast path is not
// an IP hop (traceroute does not see the host).
//
// This package is the only importer of github.com/cilium/ebpf.
package ebpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// MaxPods is the capacity of the local pod map.
const MaxPods = 4096

// maxNetworks is the capacity of the network LPM trie.
const maxNetworks = 256

// podValue is the pods map's value: the host-side veth's ifindex, then the
// Ethernet header's destination (pod) and source (host veth) addresses, in
// that order so one bpf_skb_store_bytes writes both.
type podValue struct {
	Ifindex uint32
	PodMAC  [6]byte
	VethMAC [6]byte
}

// lpmKey is the networks trie's key (struct bpf_lpm_trie_key + IPv4).
type lpmKey struct {
	PrefixLen uint32
	Addr      [4]byte
}

// FastPath is the loaded programs and maps, attached to one uplink and to
// the veths of the pods added.
type FastPath struct {
	mu       sync.Mutex
	uplink   int
	pods     *ebpf.Map
	nets     *ebpf.Map
	upProg   *ebpf.Program
	vethProg *ebpf.Program
	upLink   link.Link
	veths    map[int]link.Link     // by veth ifindex
	byIP     map[netip.Addr]int    // pod → veth ifindex
	networks map[netip.Prefix]bool // in the trie
}

// Open loads the programs and attaches the uplink's (the interface of
// index uplink, in the current network namespace).
func Open(uplink int) (*FastPath, error) {
	if uplink <= 0 {
		return nil, fmt.Errorf("ebpf fast path: uplink ifindex %d", uplink)
	}
	f := &FastPath{uplink: uplink, veths: map[int]link.Link{}, byIP: map[netip.Addr]int{}, networks: map[netip.Prefix]bool{}}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	var err error
	f.pods, err = ebpf.NewMap(&ebpf.MapSpec{Name: "trn_pods", Type: ebpf.Hash, KeySize: 4, ValueSize: 16, MaxEntries: MaxPods})
	if err != nil {
		return nil, fmt.Errorf("ebpf fast path: create the pod map: %w", err)
	}
	f.nets, err = ebpf.NewMap(&ebpf.MapSpec{Name: "trn_nets", Type: ebpf.LPMTrie, KeySize: 8, ValueSize: 4,
		MaxEntries: maxNetworks, Flags: 1 /* BPF_F_NO_PREALLOC */})
	if err != nil {
		return nil, fmt.Errorf("ebpf fast path: create the network map: %w", err)
	}
	f.upProg, err = load("trn_uplink", uplinkProgram(f.pods.FD()))
	if err != nil {
		return nil, err
	}
	f.vethProg, err = load("trn_veth", vethProgram(f.pods.FD(), f.nets.FD(), uplink))
	if err != nil {
		return nil, err
	}
	f.upLink, err = link.AttachTCX(link.TCXOptions{Interface: uplink, Program: f.upProg, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return nil, fmt.Errorf("ebpf fast path: attach to the uplink (ifindex %d) TCX ingress: %w", uplink, err)
	}
	ok = true
	return f, nil
}

func load(name string, insns asm.Instructions) (*ebpf.Program, error) {
	p, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{Name: name, Type: ebpf.SchedCLS, Instructions: insns, License: "GPL"},
		ebpf.ProgramOptions{LogLevel: ebpf.LogLevelBranch})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("ebpf fast path: load %s: %+v", name, ve)
		}
		return nil, fmt.Errorf("ebpf fast path: load %s: %w", name, err)
	}
	return p, nil
}

// AddPod routes ip to the pod behind the host-side veth vethIfindex (pod
// end podMAC, host end vethMAC) and attaches the veth's program. Adding a
// pod again updates it.
func (f *FastPath) AddPod(ip netip.Addr, vethIfindex int, podMAC, vethMAC net.HardwareAddr) error {
	if !ip.Is4() {
		return fmt.Errorf("ebpf fast path: pod %s: IPv4 only", ip)
	}
	if vethIfindex <= 0 || len(podMAC) != 6 || len(vethMAC) != 6 {
		return fmt.Errorf("ebpf fast path: pod %s: veth ifindex %d, pod MAC %q, veth MAC %q", ip, vethIfindex, podMAC, vethMAC)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pods == nil {
		return errors.New("ebpf fast path is closed")
	}
	if _, ok := f.veths[vethIfindex]; !ok {
		l, err := link.AttachTCX(link.TCXOptions{Interface: vethIfindex, Program: f.vethProg, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return fmt.Errorf("ebpf fast path: pod %s: attach to veth ifindex %d: %w", ip, vethIfindex, err)
		}
		f.veths[vethIfindex] = l
	}
	if old, ok := f.byIP[ip]; ok && old != vethIfindex {
		f.detach(old)
	}
	v := podValue{Ifindex: uint32(vethIfindex)}
	copy(v.PodMAC[:], podMAC)
	copy(v.VethMAC[:], vethMAC)
	if err := f.pods.Put(ip.As4(), v); err != nil {
		return fmt.Errorf("ebpf fast path: pod %s: %w", ip, err)
	}
	f.byIP[ip] = vethIfindex
	return nil
}

// StandAside leaves ip's traffic to the host's IP stack, where nftables
// enforces the pod's policy: the map holds ip with ifindex 0, so a packet
// for it (from the uplink or a local pod) passes to the stack instead of
// being redirected — an address missing from the map would go to the
// uplink as a remote pod's — and its own packets fail the source check and
// pass too. Its veth's program is detached. DelPod removes it; AddPod puts
// it back on the fast path.
func (f *FastPath) StandAside(ip netip.Addr) error {
	if !ip.Is4() {
		return fmt.Errorf("ebpf fast path: pod %s: IPv4 only", ip)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pods == nil {
		return errors.New("ebpf fast path is closed")
	}
	if err := f.pods.Put(ip.As4(), podValue{}); err != nil {
		return fmt.Errorf("ebpf fast path: pod %s: stand aside: %w", ip, err)
	}
	old, had := f.byIP[ip]
	f.byIP[ip] = 0
	if had && old != 0 {
		f.detach(old)
	}
	return nil
}

// DelPod removes ip (a pod not added is not an error) and detaches its
// veth's program.
func (f *FastPath) DelPod(ip netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pods == nil {
		return errors.New("ebpf fast path is closed")
	}
	idx, ok := f.byIP[ip]
	if !ok {
		return nil
	}
	delete(f.byIP, ip)
	if err := f.pods.Delete(ip.As4()); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("ebpf fast path: remove pod %s: %w", ip, err)
	}
	f.detach(idx)
	return nil
}

// detach removes the program of veth idx unless another pod uses it.
func (f *FastPath) detach(idx int) {
	for _, i := range f.byIP {
		if i == idx {
			return
		}
	}
	if l := f.veths[idx]; l != nil {
		_ = l.Close() // the veth may be gone already, and its link with it
		delete(f.veths, idx)
	}
}

// Pods lists the pods in the map.
func (f *FastPath) Pods() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]netip.Addr, 0, len(f.byIP))
	for ip := range f.byIP {
		out = append(out, ip)
	}
	return out
}

// SetNetworks sets the Terrane networks: a pod's packet to an address in
// one of them that is not a local pod goes to the uplink's FIB lookup.
// IPv6 prefixes are ignored (the fast path is IPv4 only).
func (f *FastPath) SetNetworks(prefixes []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nets == nil {
		return errors.New("ebpf fast path is closed")
	}
	want := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		if p.Addr().Is4() {
			want[p.Masked()] = true
		}
	}
	if len(want) > maxNetworks {
		return fmt.Errorf("ebpf fast path: %d networks, at most %d", len(want), maxNetworks)
	}
	var errs []error
	for p := range want {
		if f.networks[p] {
			continue
		}
		if err := f.nets.Put(lpmKey{PrefixLen: uint32(p.Bits()), Addr: p.Addr().As4()}, uint32(1)); err != nil {
			errs = append(errs, fmt.Errorf("ebpf fast path: network %s: %w", p, err))
			continue
		}
		f.networks[p] = true
	}
	for p := range f.networks {
		if want[p] {
			continue
		}
		if err := f.nets.Delete(lpmKey{PrefixLen: uint32(p.Bits()), Addr: p.Addr().As4()}); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("ebpf fast path: remove network %s: %w", p, err))
			continue
		}
		delete(f.networks, p)
	}
	return errors.Join(errs...)
}

// Close detaches every program and frees the maps: traffic falls back to
// the routes.
func (f *FastPath) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	if f.upLink != nil {
		errs = append(errs, f.upLink.Close())
		f.upLink = nil
	}
	for idx, l := range f.veths {
		_ = l.Close() // a veth deleted meanwhile took its link along
		delete(f.veths, idx)
	}
	for _, c := range []interface{ Close() error }{f.upProg, f.vethProg, f.pods, f.nets} {
		if c != nil && !isNil(c) {
			errs = append(errs, c.Close())
		}
	}
	f.upProg, f.vethProg, f.pods, f.nets = nil, nil, nil, nil
	return errors.Join(errs...)
}

func isNil(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case *ebpf.Program:
		return v == nil
	case *ebpf.Map:
		return v == nil
	}
	return false
}
