package kube

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/server"
)

// eventually polls cond until it returns "" or the time is up.
func eventually(t *testing.T, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hostOf(t *testing.T, state *server.State, name string) (ipam.HostInfo, bool) {
	t.Helper()
	hs, err := state.Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Name == name {
			return h, true
		}
	}
	return ipam.HostInfo{}, false
}

// inGroup waits until host name is in group (network pods) with ip.
func inGroup(t *testing.T, state *server.State, name, group, ip string) {
	t.Helper()
	eventually(t, 20*time.Second, func() string {
		h, ok := hostOf(t, state, name)
		switch {
		case !ok:
			return "no host " + name
		case h.Groups["pods"] != group:
			return fmt.Sprintf("host %s in %v, want %s", name, h.Groups, group)
		case ip != "" && h.IP != netip.MustParseAddr(ip):
			return fmt.Sprintf("host %s has IP %s, want %s", name, h.IP, ip)
		}
		return ""
	})
}

// eventOn waits for an Event with reason on Node name and returns its message.
func eventOn(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, reason string) string {
	t.Helper()
	var msg string
	eventually(t, 20*time.Second, func() string {
		evs, err := cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + name})
		if err != nil {
			return err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Reason == reason {
				msg = e.Message
				return ""
			}
			seen = append(seen, e.Reason)
		}
		return fmt.Sprintf("no %s event on node %s (events: %v)", reason, name, seen)
	})
	return msg
}

func relabel(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels = labels
	if _, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("relabel %s: %v", name, err)
	}
}

func deleteNode(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string) {
	t.Helper()
	if err := cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete node %s: %v", name, err)
	}
}

func zone(z string, rack string) map[string]string {
	l := map[string]string{"topology.kubernetes.io/zone": z, "kubernetes.io/os": "linux"}
	if rack != "" {
		l["example.com/rack"] = rack
	}
	return l
}

// TestNodeController: against a real kube-apiserver, each Node becomes a
// host with its labels and InternalIP; a relabelled Node's host moves as
// the topology allows, and stays (with an Event) when its new labels fit
// no group; a Node no group admits gets an Event and no host; a deleted
// Node's host is removed after the grace period, never while its agent
// reports addresses in use, and a host registered by hand is never
// removed for want of a Node.
func TestNodeController(t *testing.T) {
	_, cs := testCluster(t)
	ctx := testCtx(t)
	state := testState(t)
	const grace = 2 * time.Second
	if _, err := state.RegisterHost(ctx, ipam.HostSpec{Name: "hypervisor-1", IP: netip.MustParseAddr("192.0.2.99"), Labels: zone("b", "")}); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewNodeController(NodeControllerOptions{Client: cs, Grace: grace, Recheck: 200 * time.Millisecond, Log: quietLog()}).Run(runCtx, state)
	}()
	t.Cleanup(func() { stop(); <-done })

	createNode(t, ctx, cs, "n1", "192.0.2.1", zone("a", "1"))
	createNode(t, ctx, cs, "n2", "192.0.2.2", zone("b", ""))
	inGroup(t, state, "n1", "zone-a/rack-1", "192.0.2.1")
	inGroup(t, state, "n2", "zone-b", "192.0.2.2")
	h, _ := hostOf(t, state, "n1")
	want := zone("a", "1")
	want[ManagedLabel] = ManagedValue
	if !maps.Equal(h.Labels, want) {
		t.Fatalf("host labels %v, want the Node's %v", h.Labels, want)
	}
	eventOn(t, ctx, cs, "n1", ReasonRegistered)

	// Unplaceable: no host, an Event that says why.
	createNode(t, ctx, cs, "lost", "192.0.2.3", zone("q", ""))
	msg := eventOn(t, ctx, cs, "lost", ReasonUnplaceable)
	if !strings.Contains(msg, "no group admits") || !strings.Contains(msg, "zone=q") {
		t.Fatalf("event message %q does not say why", msg)
	}
	if _, ok := hostOf(t, state, "lost"); ok {
		t.Fatal("an unplaceable Node became a host")
	}
	// Relabelled to fit: it is placed.
	relabel(t, ctx, cs, "lost", zone("b", ""))
	inGroup(t, state, "lost", "zone-b", "192.0.2.3")

	// Relabel: moves within the rules; labels that fit nowhere keep it.
	relabel(t, ctx, cs, "n1", zone("a", "2"))
	inGroup(t, state, "n1", "zone-a/rack-2", "")
	eventOn(t, ctx, cs, "n1", ReasonMoved)
	relabel(t, ctx, cs, "n1", zone("q", ""))
	eventOn(t, ctx, cs, "n1", ReasonNotMoved)
	inGroup(t, state, "n1", "zone-a/rack-2", "")

	// A deleted Node with pods: its agent reports an address in use.
	var block netip.Prefix
	if _, err := state.Do(ctx, func(al *ipam.Allocator) ([]ipam.Change, error) {
		var ch []ipam.Change
		var err error
		block, ch, err = al.ClaimBlock("n2", "pods")
		return ch, err
	}); err != nil {
		t.Fatal(err)
	}
	pod := ipam.ReportedAddress{Network: "pods", Addr: block.Addr().Next(), Block: block, Attachment: "c1/eth0", Pod: "default/web", Since: time.Now()}
	if _, err := state.MergeReport(ctx, "n2", api.AddressReport{Full: true, Added: []ipam.ReportedAddress{pod}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	deleteNode(t, ctx, cs, "n2")
	deleteNode(t, ctx, cs, "lost")
	eventually(t, 20*time.Second, func() string {
		if _, ok := hostOf(t, state, "lost"); ok {
			return "the host of deleted Node lost is still there"
		}
		return ""
	})
	if took := time.Since(deleted); took < grace {
		t.Fatalf("host removed %s after its Node, before the grace period (%s)", took, grace)
	}
	time.Sleep(grace)
	if _, ok := hostOf(t, state, "n2"); !ok {
		t.Fatal("the host of a deleted Node was removed while its agent reported an address in use")
	}
	// The pod goes: the host and its block go.
	if _, err := state.MergeReport(ctx, "n2", api.AddressReport{Full: true}, time.Now()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() string {
		if _, ok := hostOf(t, state, "n2"); ok {
			return "the host of deleted Node n2 is still there with nothing in use"
		}
		return ""
	})
	// Re-created within the grace period: the host stays.
	deleteNode(t, ctx, cs, "n1")
	createNode(t, ctx, cs, "n1", "192.0.2.1", zone("a", "2"))
	time.Sleep(grace + time.Second)
	inGroup(t, state, "n1", "zone-a/rack-2", "192.0.2.1")

	// The hand-registered host never had a Node: it stays.
	if _, ok := hostOf(t, state, "hypervisor-1"); !ok {
		t.Fatal("a host registered by hand was removed")
	}
}

// TestNodeControllerAfterRestart: a Node deleted while no controller ran
// loses its host once a controller starts and the grace period passes.
func TestNodeControllerAfterRestart(t *testing.T) {
	_, cs := testCluster(t)
	ctx := testCtx(t)
	state := testState(t)
	if _, err := state.RegisterHost(ctx, ipam.HostSpec{Name: "old", IP: netip.MustParseAddr("192.0.2.7"), Labels: map[string]string{"topology.kubernetes.io/zone": "b", ManagedLabel: ManagedValue}}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewNodeController(NodeControllerOptions{Client: cs, Grace: time.Second, Log: quietLog()}).Run(runCtx, state)
	}()
	t.Cleanup(func() { stop(); <-done })
	eventually(t, 20*time.Second, func() string {
		if _, ok := hostOf(t, state, "old"); ok {
			return "the host of a Node deleted before the controller started is still there"
		}
		return ""
	})
}

// TestRunLeader: of two servers campaigning for one Lease, one runs the
// controller at a time; when it stops (its lease released), the other
// takes over.
func TestRunLeader(t *testing.T) {
	_, cs := testCluster(t)
	ctx := testCtx(t)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var running, ran []string
	overlap := false
	start := func(id string) (context.CancelFunc, chan struct{}) {
		c, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			RunLeader(c, LeaderOptions{Client: cs, Namespace: agentNS, Name: DefaultLeaseName, Identity: id, Log: quietLog(),
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond},
				func(ctx context.Context) {
					mu.Lock()
					if len(running) > 0 {
						overlap = true
					}
					running = append(running, id)
					ran = append(ran, id)
					mu.Unlock()
					<-ctx.Done()
					mu.Lock()
					running = slices.DeleteFunc(running, func(x string) bool { return x == id })
					mu.Unlock()
				})
		}()
		return cancel, done
	}
	stopA, doneA := start("server-a")
	stopB, doneB := start("server-b")
	defer func() { stopB(); <-doneB }()
	leader := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(running) == 1 {
			return running[0]
		}
		return ""
	}
	eventually(t, 20*time.Second, func() string {
		if leader() == "" {
			return "no leader"
		}
		return ""
	})
	first := leader()
	time.Sleep(2 * time.Second) // renewals: still one
	if leader() != first {
		t.Fatalf("leader changed from %s to %q without a failure", first, leader())
	}
	stopFirst, doneFirst := stopA, doneA
	if first == "server-b" {
		stopFirst, doneFirst = stopB, doneB
		stopB, doneB = stopA, doneA
	}
	stopFirst()
	<-doneFirst
	eventually(t, 20*time.Second, func() string {
		if l := leader(); l == "" || l == first {
			return fmt.Sprintf("leader %q after %s stopped", l, first)
		}
		return ""
	})
	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Fatalf("two servers ran the controller at once: %v", ran)
	}
}
