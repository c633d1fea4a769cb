package kube

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/terrane-net/terrane/internal/agent"
	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane/fake"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/server"
	"github.com/terrane-net/terrane/internal/store/bolt"
)

const nodeToken = "node-n1-token-0123456789abcdef"

// hostOps stands in for the kernel of the agent's host: it records the
// links deleted.
type hostOps struct {
	mu      sync.Mutex
	deleted []string
}

func (h *hostOps) EnsureRule(int, int, int) error         { return nil }
func (h *hostOps) LinkExists(string) (bool, error)        { return true, nil }
func (h *hostOps) InterfaceOf(netip.Addr) (string, error) { return "eth0", nil }
func (h *hostOps) SetSysctl(string, string) error         { return nil }
func (h *hostOps) PrepareEndpointLink(string) error       { return nil }
func (h *hostOps) SetGSOMaxSize(_ string, size int) (int, func() error, error) {
	return size, func() error { return nil }, nil
}
func (h *hostOps) DeleteLink(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deleted = append(h.deleted, name)
	return nil
}
func (h *hostOps) wasDeleted(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.deleted, name)
}

// startAgent runs the real agent for host n1 against the API at url, as
// the node identity n1, with fakes for the kernel; every netns exists.
func startAgent(t *testing.T, url string) (*agent.Agent, *hostOps) {
	t.Helper()
	srv, err := client.New(client.Config{Server: url, Token: nodeToken})
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "agent.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	dp, _ := fake.New(fake.Options{Table: 250})
	host := &hostOps{}
	a, err := agent.New(context.Background(), agent.Config{Host: "n1", IP: netip.MustParseAddr("192.0.2.1"),
		Labels: map[string]string{"topology.kubernetes.io/zone": "a", "example.com/rack": "1"},
		Server: srv, Dataplane: dp, HostOps: host, State: st, Table: 250, RulePriority: 100,
		NetnsExists: func(string) bool { return true },
		Resync:      50 * time.Millisecond, Report: 20 * time.Millisecond, ReportMax: 100 * time.Millisecond, Poll: 5 * time.Second,
		QueueDir: filepath.Join(t.TempDir(), "queue"), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		st.Close()
	})
	waitUntil(t, "the agent ready", func() bool { return a.Status(ctx).Ready })
	return a, host
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func createPod(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name, node string) *corev1.Pod {
	t.Helper()
	no := false
	p, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "app", Image: "app:test"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	return p
}

// deletePod removes the Pod at once, as the kubelet does once its
// containers are gone (no kubelet runs here).
func deletePod(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	zero := int64(0)
	if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("delete pod %s/%s: %v", ns, name, err)
	}
	waitUntil(t, "pod "+name+" gone", func() bool {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}

// add is a CNI ADD of container cid for pod ns/name (uid "" as from a
// runtime that does not pass K8S_POD_UID; name "" as for a pod not from
// Kubernetes).
func add(t *testing.T, ctx context.Context, a *agent.Agent, cid, ns, name, uid string) (cniapi.Attachment, netip.Addr) {
	t.Helper()
	at := cniapi.Attachment{ContainerID: cid, IfName: "eth0"}
	resp, err := a.Add(ctx, cniapi.AddRequest{Attachment: at, Netns: "/run/netns/" + cid, PodNamespace: ns, PodName: name, PodUID: uid, HostVeth: cniapi.HostVeth(cid, "eth0")})
	if err != nil {
		t.Fatalf("ADD %s: %v", cid, err)
	}
	return at, resp.Addr.Addr()
}

func holds(a *agent.Agent, at cniapi.Attachment) bool {
	_, err := a.Check(context.Background(), at)
	return err == nil
}

// findings returns the check's findings of kind, by address.
func findings(t *testing.T, ctx context.Context, admin *client.Client, kind string) map[netip.Addr]ipam.Finding {
	t.Helper()
	rep, err := admin.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]ipam.Finding{}
	for _, f := range rep.Findings {
		if f.Kind == kind {
			out[f.Addr] = f
		}
	}
	return out
}

func reported(t *testing.T, ctx context.Context, state *server.State, at cniapi.Attachment) bool {
	t.Helper()
	r, _, err := state.Report(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(r.Addresses, func(ad ipam.ReportedAddress) bool { return ad.Attachment == at.ID() })
}

// TestPodControllerReleasesOrphans runs the Pod controller on a real
// kube-apiserver and a real server state, with the real agent of node n1
// following the server's API: a deleted Pod's address is marked (check
// shows it), then released by the agent after the grace (route, veth and
// report gone, request dropped, check clean); a Pod re-created under the
// same name still gets its stale address released; a Pod back within the
// grace is unmarked; addresses of live Pods and of attachments not from
// Kubernetes are never touched.
func TestPodControllerReleasesOrphans(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane; skipped with -short")
	}
	_, cs := testCluster(t)
	ctx := testCtx(t)
	const ns = "apps"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	createNode(t, ctx, cs, "n1", "192.0.2.1", map[string]string{"topology.kubernetes.io/zone": "a", "example.com/rack": "1"})

	state := testState(t)
	nodeAuth, err := server.ParseTokens([]byte(nodeToken + " node n1\n"))
	if err != nil {
		t.Fatal(err)
	}
	url := serveAPI(t, state, nodeAuth)
	admin, err := client.New(client.Config{Server: url, Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	ag, host := startAgent(t, url)

	gone := createPod(t, ctx, cs, ns, "gone", "n1")
	again := createPod(t, ctx, cs, ns, "again", "n1")
	createPod(t, ctx, cs, ns, "back", "n1")
	live := createPod(t, ctx, cs, ns, "live", "n1")
	atGone, addrGone := add(t, ctx, ag, "c-gone", ns, "gone", string(gone.UID))
	atAgain, addrAgain := add(t, ctx, ag, "c-again", ns, "again", string(again.UID))
	// A runtime that does not pass K8S_POD_UID: the name alone decides.
	atBack, addrBack := add(t, ctx, ag, "c-back", ns, "back", "")
	atLive, _ := add(t, ctx, ag, "c-live", ns, "live", string(live.UID))
	// Not from Kubernetes: no pod name.
	atVM, _ := add(t, ctx, ag, "c-plain", "", "", "")
	for _, at := range []cniapi.Attachment{atGone, atAgain, atBack, atLive, atVM} {
		waitUntil(t, at.ID()+" reported", func() bool { return reported(t, ctx, state, at) })
	}

	const grace, settle = 5 * time.Second, 300 * time.Millisecond
	cctx, stop := context.WithCancel(ctx)
	ctrlDone := make(chan struct{})
	go func() {
		defer close(ctrlDone)
		NewPodController(PodControllerOptions{Client: cs, Grace: grace, Settle: settle, Interval: 100 * time.Millisecond, Log: quietLog()}).Run(cctx, state)
	}()
	defer func() { stop(); <-ctrlDone }()

	// Phase 1: marked, visible in check and explain, nothing released.
	// Every mark is noticed after this: no release may come before it plus
	// the grace.
	deleted := time.Now()
	deletePod(t, ctx, cs, ns, "gone")
	deletePod(t, ctx, cs, ns, "again")
	again2 := createPod(t, ctx, cs, ns, "again", "n1") // same name, new UID
	deletePod(t, ctx, cs, ns, "back")
	var marks map[netip.Addr]ipam.Finding
	// The re-created pod's mark says so once the informer has the new Pod.
	waitUntil(t, "three orphan-pod findings", func() bool {
		marks = findings(t, ctx, admin, "orphan-pod")
		return len(marks) == 3 && strings.Contains(marks[addrAgain].Detail, "re-created")
	})
	for _, a := range []netip.Addr{addrGone, addrAgain, addrBack} {
		f, ok := marks[a]
		if !ok {
			t.Fatalf("no orphan-pod finding for %s: %+v", a, marks)
		}
		if f.Host != "n1" || f.Due.Sub(f.Since) != grace || len(f.Holders) != 1 || !strings.HasPrefix(f.Holders[0].Pod, ns+"/") || !strings.Contains(f.Detail, "release due at") {
			t.Errorf("finding %+v: want host n1, due = since + grace, the pod and the due time", f)
		}
	}
	if time.Since(deleted) < grace {
		for _, at := range []cniapi.Attachment{atGone, atAgain, atBack} {
			if !holds(ag, at) {
				t.Fatalf("%s released before the grace had passed", at.ID())
			}
		}
	}
	ex, err := admin.Explain(ctx, addrGone)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ex.Findings, func(f ipam.Finding) bool { return f.Kind == "orphan-pod" }) {
		t.Errorf("explain %s: findings %+v, want the orphan-pod mark", addrGone, ex.Findings)
	}

	// The pod comes back within the grace: unmarked.
	createPod(t, ctx, cs, ns, "back", "n1")
	waitUntil(t, "back unmarked", func() bool {
		_, marked := findings(t, ctx, admin, "orphan-pod")[addrBack]
		return !marked
	})

	// Phase 2: released by the agent like a CNI DEL.
	waitUntil(t, "orphans released by the agent", func() bool { return !holds(ag, atGone) && !holds(ag, atAgain) })
	if time.Since(deleted) < grace {
		t.Fatalf("released %s after the Pods were deleted, before the grace %s", time.Since(deleted), grace)
	}
	for _, at := range []cniapi.Attachment{atGone, atAgain} {
		if !host.wasDeleted(cniapi.HostVeth(at.ContainerID, at.IfName)) {
			t.Errorf("host veth of %s not deleted", at.ID())
		}
	}
	waitUntil(t, "the report without them", func() bool { return !reported(t, ctx, state, atGone) && !reported(t, ctx, state, atAgain) })
	waitUntil(t, "the requests dropped and check clean", func() bool {
		rels, err := state.Releases(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		rep, err := admin.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(rels) == 0 && rep.Clean
	})
	for _, at := range []cniapi.Attachment{atBack, atLive, atVM} {
		if !holds(ag, at) || !reported(t, ctx, state, at) {
			t.Errorf("%s released: its pod exists, or it is not from Kubernetes", at.ID())
		}
	}
	if st := state.Stats(); st.OrphanReleases != 2 {
		t.Errorf("OrphanReleases = %d, want 2", st.OrphanReleases)
	}

	// The re-created pod's new attachment is its own: never touched.
	atAgain2, _ := add(t, ctx, ag, "c-again-2", ns, "again", string(again2.UID))
	waitUntil(t, atAgain2.ID()+" reported", func() bool { return reported(t, ctx, state, atAgain2) })
	deadline := time.Now().Add(grace + time.Second)
	for time.Now().Before(deadline) {
		if !holds(ag, atAgain2) {
			t.Fatalf("%s of the live re-created pod released", atAgain2.ID())
		}
		if len(findings(t, ctx, admin, "orphan-pod")) != 0 {
			t.Fatalf("orphan-pod findings for live pods: %+v", findings(t, ctx, admin, "orphan-pod"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPodControllerIgnoresHostsThatAreNotNodes: a host with no Node of its
// name (a hypervisor, a host an admin registered) is never touched, however
// orphaned its pod addresses look, while a Node's host beside it is.
func TestPodControllerIgnoresHostsThatAreNotNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane; skipped with -short")
	}
	_, cs := testCluster(t)
	ctx := testCtx(t)
	state := testState(t)
	createNode(t, ctx, cs, "n2", "", nil)
	addrs := map[string]netip.Addr{}
	for _, h := range []string{"hv1", "n2"} {
		if _, err := state.RegisterHost(ctx, ipam.HostSpec{Name: h, Labels: map[string]string{"topology.kubernetes.io/zone": "b"}}); err != nil {
			t.Fatal(err)
		}
		var block netip.Prefix
		if _, err := state.Do(ctx, func(al *ipam.Allocator) ([]ipam.Change, error) {
			p, ch, err := al.ClaimBlock(h, "pods")
			block = p
			return ch, err
		}); err != nil {
			t.Fatal(err)
		}
		addrs[h] = block.Addr().Next()
		ad := ipam.ReportedAddress{Network: "pods", Addr: addrs[h], Block: block, Attachment: "c1/eth0", Pod: "apps/nowhere", PodUID: "u1", Since: time.Now().Add(-time.Hour)}
		if _, err := state.MergeReport(ctx, h, api.AddressReport{Full: true, Added: []ipam.ReportedAddress{ad}, Blocks: []ipam.ReportedBlock{{Network: "pods", Prefix: block, Used: 1, Open: true}}}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	releases := func(h string) []ipam.OrphanedAddress {
		rels, err := state.Releases(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		return rels
	}
	c := NewPodController(PodControllerOptions{Client: cs, Grace: 200 * time.Millisecond, Settle: time.Millisecond, Interval: 20 * time.Millisecond, Log: quietLog()})
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(cctx, state) }()
	defer func() { stop(); <-done }()
	waitUntil(t, "the release on Node n2", func() bool {
		rels := releases("n2")
		return len(rels) == 1 && rels[0].Addr == addrs["n2"] && rels[0].Reason == ipam.OrphanPodGone
	})
	waitUntil(t, "an Event on Node n2", func() bool {
		evs, err := cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Node,involvedObject.name=n2,reason=" + ReasonOrphanReleased})
		return err == nil && len(evs.Items) == 1 && strings.Contains(evs.Items[0].Message, addrs["n2"].String())
	})
	// hv1 was looked at as often (one queue, every 20 ms, since the seed).
	if rels := releases("hv1"); len(rels) != 0 {
		t.Fatalf("host hv1 without a Node: releases %+v", rels)
	}
	os, err := state.Orphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(os) != 1 || os[0].Host != "n2" {
		t.Fatalf("marks %+v, want n2's only", os)
	}
	// hv1 becomes a Node: now its orphan is released too.
	createNode(t, ctx, cs, "hv1", "", nil)
	waitUntil(t, "the release on hv1 once it is a Node", func() bool {
		rels := releases("hv1")
		return len(rels) == 1 && rels[0].Addr == addrs["hv1"]
	})
}
