package agent

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/terrane-net/terrane/internal/cniapi"
)

type fakeFast struct {
	mu   sync.Mutex
	pods map[netip.Addr]string // → host veth
	nets []netip.Prefix
}

func (f *fakeFast) AddPod(addr netip.Addr, hostVeth, _, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[addr] = hostVeth
	return nil
}

func (f *fakeFast) DelPod(addr netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, addr)
	return nil
}

// StandAside records the pod as on the stack ("aside" for its veth).
func (f *fakeFast) StandAside(addr netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[addr] = "aside"
	return nil
}

func (f *fakeFast) SetNetworks(p []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nets = slices.Clone(p)
	return nil
}

func (f *fakeFast) snapshot() (map[netip.Addr]string, []netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.pods), slices.Clone(f.nets)
}

// TestAgentFastPath: the fast path gets the topology's networks, each pod
// once its route is programmed, and loses it on release.
func TestAgentFastPath(t *testing.T) {
	e := newEnv(t, flatTopology)
	ff := &fakeFast{pods: map[netip.Addr]string{}}
	e.fast = ff
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	res, err := n.Add(ctx, addReq("a"))
	if err != nil {
		t.Fatal(err)
	}
	addr := res.Addr.Addr()
	// The ADD returned once its route was in: the sync that programmed it
	// also fed the fast path.
	pods, nets := ff.snapshot()
	if pods[addr] != cniapi.HostVeth("a", "eth0") {
		t.Fatalf("fast path pods %v after ADD of %s; want it on %s", pods, addr, cniapi.HostVeth("a", "eth0"))
	}
	if len(nets) == 0 {
		t.Fatal("fast path has no networks")
	}
	if err := n.Del(ctx, cniapi.Attachment{ContainerID: "a", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod removed from the fast path", func() bool { p, _ := ff.snapshot(); return len(p) == 0 })
}
