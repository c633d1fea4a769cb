package labkube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/terrane-net/terrane/internal/k8stest"
)

// fakeWirer records what the kubelet asks; a stand-in for the lab's
// netns and libcni (the privileged lab tests run the real one).
type fakeWirer struct {
	mu    sync.Mutex
	wired map[string]PodRef // key → pod
	next  byte
	fail  map[string]error // pod name → Wire error
	nodes []string         // "node=exists" calls, in order
	calls []string
}

func newFakeWirer() *fakeWirer {
	return &fakeWirer{wired: map[string]PodRef{}, fail: map[string]error{}}
}

func (f *fakeWirer) Wire(_ context.Context, p PodRef) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "wire "+p.Key())
	if err := f.fail[p.Name]; err != nil {
		return nil, err
	}
	if w, ok := f.wired[p.Key()]; ok && w.UID == p.UID {
		return []netip.Addr{addrOf(w)}, nil
	}
	f.next++
	p.Annotations = map[string]string{"addr": netip.AddrFrom4([4]byte{10, 0, 0, f.next}).String()}
	f.wired[p.Key()] = p
	return []netip.Addr{addrOf(p)}, nil
}

func addrOf(p PodRef) netip.Addr { return netip.MustParseAddr(p.Annotations["addr"]) }

func (f *fakeWirer) Unwire(_ context.Context, p PodRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "unwire "+p.Key())
	if w, ok := f.wired[p.Key()]; ok && (p.UID == "" || w.UID == p.UID) {
		delete(f.wired, p.Key())
	}
	return nil
}

func (f *fakeWirer) Wired() ([]PodRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []PodRef
	for _, p := range f.wired {
		out = append(out, p)
	}
	return out, nil
}

func (f *fakeWirer) NodeChanged(_ context.Context, node string, exists bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes = append(f.nodes, fmt.Sprintf("%s=%v", node, exists))
	return nil
}

func (f *fakeWirer) isWired(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.wired[key]
	return ok
}

func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The lab kubelet on a real kube-apiserver: a Pod bound to a lab host is
// wired and its status set; one on another node is left alone; graceful
// deletion unwires before the object goes, a forced one unwires after; a
// Pod whose wiring keeps failing is marked Failed with the reason; a
// deleted Node is told to the Wirer and its pods wait until it is back.
func TestKubeletOnRealAPIServer(t *testing.T) {
	c := k8stest.Start(t)
	cs, err := NewClient(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes := map[string]NodeSpec{
		"host-1": {Name: "host-1", IP: netip.MustParseAddr("192.0.2.1"), Labels: map[string]string{"rack": "1"}},
		"host-2": {Name: "host-2", IP: netip.MustParseAddr("192.0.2.2")},
	}
	for _, n := range nodes {
		if err := EnsureNode(ctx, cs, n); err != nil {
			t.Fatal(err)
		}
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, "host-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.Labels["rack"] != "1" || len(node.Status.Addresses) == 0 || node.Status.Addresses[0].Address != "192.0.2.1" ||
		node.Status.Conditions[0].Type != corev1.NodeReady {
		t.Fatalf("node host-1: labels %v, addresses %v, conditions %v", node.Labels, node.Status.Addresses, node.Status.Conditions)
	}

	w := newFakeWirer()
	w.fail["broken"] = errors.New("no room in network red")
	kctx, kcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- RunKubelet(kctx, KubeletOptions{Client: cs, Nodes: nodes, Wirer: w, Workers: 2,
			Log: slog.New(slog.DiscardHandler), Ready: func() { close(ready) }})
	}()
	defer func() {
		kcancel()
		if err := <-done; err != nil {
			t.Errorf("RunKubelet: %v", err)
		}
	}()
	<-ready

	// Wired and Running.
	if err := CreatePod(ctx, cs, PodSpec{Name: "web", Namespace: "apps", Node: "host-1", Annotations: map[string]string{"terrane.io/network": "red"}}); err != nil {
		t.Fatal(err)
	}
	pod, err := WaitPodRunning(ctx, cs, "apps", "web")
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	ref := w.wired["apps/web"]
	w.mu.Unlock()
	if ref.UID != string(pod.UID) || ref.Node != "host-1" {
		t.Errorf("wired %+v, want UID %s on host-1", ref, pod.UID)
	}
	if pod.Status.PodIP != addrOf(ref).String() || pod.Status.HostIP != "192.0.2.1" || len(pod.Status.PodIPs) != 1 {
		t.Errorf("status podIP %s hostIP %s podIPs %v, want %s on 192.0.2.1", pod.Status.PodIP, pod.Status.HostIP, pod.Status.PodIPs, addrOf(ref))
	}

	// Not a lab host: left alone.
	if err := CreatePod(ctx, cs, PodSpec{Name: "elsewhere", Namespace: "apps", Node: "other"}); err != nil {
		t.Fatal(err)
	}

	// Wiring fails every time: Failed, with the reason.
	if err := CreatePod(ctx, cs, PodSpec{Name: "broken", Namespace: "apps", Node: "host-2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := WaitPodRunning(ctx, cs, "apps", "broken"); !errors.Is(err, ErrPodFailed) || !strings.Contains(err.Error(), "no room in network red") {
		t.Errorf("broken pod: %v, want failed with the wiring error", err)
	}

	// Graceful deletion: unwired, then the object goes.
	if err := DeletePod(ctx, cs, "apps", "web"); err != nil {
		t.Fatal(err)
	}
	if w.isWired("apps/web") {
		t.Errorf("pod web deleted but still wired")
	}

	// Forced deletion (grace 0): the object goes at once, unwired after.
	if err := CreatePod(ctx, cs, PodSpec{Name: "forced", Namespace: "apps", Node: "host-2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := WaitPodRunning(ctx, cs, "apps", "forced"); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	if err := cs.CoreV1().Pods("apps").Delete(ctx, "forced", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "forced pod unwired", func() error {
		if w.isWired("apps/forced") {
			return errors.New("still wired")
		}
		return nil
	})

	// Node deleted: told; a pod bound to it waits, Pending, until it is
	// back (its Node's status restored, as a kubelet registering does).
	if err := cs.CoreV1().Nodes().Delete(ctx, "host-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node host-2 gone told", func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !slices.Contains(w.nodes, "host-2=false") {
			return fmt.Errorf("node calls %v", w.nodes)
		}
		return nil
	})
	if err := CreatePod(ctx, cs, PodSpec{Name: "waiting", Namespace: "apps", Node: "host-2"}); err != nil {
		t.Fatal(err)
	}
	short, scancel := context.WithTimeout(ctx, time.Second)
	_, err = WaitPodRunning(short, cs, "apps", "waiting")
	scancel()
	if err == nil || w.isWired("apps/waiting") {
		t.Fatalf("a pod on a deleted node was wired (%v)", err)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "host-2"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := WaitPodRunning(ctx, cs, "apps", "waiting"); err != nil {
		t.Fatal(err)
	}
	node, err = cs.CoreV1().Nodes().Get(ctx, "host-2", metav1.GetOptions{})
	if err != nil || len(node.Status.Addresses) == 0 || node.Status.Addresses[0].Address != "192.0.2.2" {
		t.Errorf("node host-2 back: %v, addresses %v, want its InternalIP restored", err, node.Status.Addresses)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if slices.ContainsFunc(w.calls, func(c string) bool { return strings.Contains(c, "elsewhere") }) {
		t.Errorf("a pod on a node not in the lab was handled: %v", w.calls)
	}
}

// A pod deleted while no kubelet ran is unwired when the kubelet starts.
func TestKubeletUnwiresPodsDeletedWhileDown(t *testing.T) {
	c := k8stest.Start(t)
	cs, err := NewClient(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := newFakeWirer()
	w.wired["apps/old"] = PodRef{Namespace: "apps", Name: "old", UID: "gone-uid", Node: "host-1", Annotations: map[string]string{"addr": "10.0.0.9"}}
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	go func() {
		_ = RunKubelet(kctx, KubeletOptions{Client: cs, Nodes: map[string]NodeSpec{"host-1": {Name: "host-1", IP: netip.MustParseAddr("192.0.2.1")}}, Wirer: w})
	}()
	waitFor(t, "old pod unwired", func() error {
		if w.isWired("apps/old") {
			return errors.New("still wired")
		}
		return nil
	})
}
