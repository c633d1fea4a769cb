package agent

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/dataplane"
	"github.com/terrane-net/terrane/internal/dataplane/fake"
	"github.com/terrane-net/terrane/internal/policy"
)

// fakePolicy is a policy source over a fixed cluster (pods are added as
// the test creates them) and a table that records each rule set with
// whether the dataplane already routed each endpoint when it came.
type fakePolicy struct {
	mu      sync.Mutex
	cluster policy.Cluster
	changed chan struct{}
	dp      *fake.Dataplane
	applied []*policy.RuleSet
	// routedAtApply: for each address in an applied rule set, whether the
	// dataplane routed it at the first apply that held it.
	routedAtApply map[netip.Addr]bool
	// cost is how long an apply takes (an nftables transaction's time).
	cost time.Duration
}

func (f *fakePolicy) Cluster() (*policy.Cluster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.cluster
	b.Pods = append([]policy.Pod(nil), f.cluster.Pods...)
	return &b, nil
}

func (f *fakePolicy) Changed() <-chan struct{} { return f.changed }

func (f *fakePolicy) WaitPod(ctx context.Context, ns, name string) (policy.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.cluster.Pods {
		if p.Namespace == ns && p.Name == name {
			return p, nil
		}
	}
	return policy.Pod{}, fmt.Errorf("no pod %s/%s", ns, name)
}

func (f *fakePolicy) Apply(rs *policy.RuleSet) error {
	time.Sleep(f.cost)
	f.mu.Lock()
	defer f.mu.Unlock()
	routed := map[netip.Addr]bool{}
	for _, r := range f.dp.Routes() {
		if r.Dst.IsSingleIP() {
			routed[r.Dst.Addr()] = true
		}
	}
	for _, ep := range rs.Endpoints {
		for _, ip := range ep.IPs {
			if _, seen := f.routedAtApply[ip]; !seen {
				f.routedAtApply[ip] = routed[ip]
			}
		}
	}
	f.applied = append(f.applied, rs)
	return nil
}

func (f *fakePolicy) last() *policy.RuleSet {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.applied) == 0 {
		return nil
	}
	return f.applied[len(f.applied)-1]
}

func (f *fakePolicy) addPod(ns, name, node string, labels map[string]string) {
	f.mu.Lock()
	f.cluster.Pods = append(f.cluster.Pods, policy.Pod{Namespace: ns, Name: name, Node: node, Labels: labels})
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// TestAgentPolicyBeforeRoute: an ADD applies the rule set holding its pod
// (its address from the agent's records, before any status has it) before
// the pod's route exists; an ADD whose pod the source does not know fails
// and keeps nothing; an isolated pod stands aside from the fast path and a
// pod no policy selects rides it.
func TestAgentPolicyBeforeRoute(t *testing.T) {
	e := newEnv(t, flatTopology)
	ff := &fakeFast{pods: map[netip.Addr]string{}}
	e.fast = ff
	var fp *fakePolicy
	e.policy = func(name string, dp *fake.Dataplane) (PolicySource, PolicyTable) {
		fp = &fakePolicy{changed: make(chan struct{}, 1), dp: dp, routedAtApply: map[netip.Addr]bool{}}
		fp.cluster.Policies = []policy.NetworkPolicy{{
			Metadata: policy.ObjectMeta{Name: "isolate-db", Namespace: "default"},
			Spec:     policy.NetworkPolicySpec{PodSelector: policy.Selector{MatchLabels: map[string]string{"app": "db"}}},
		}}
		return fp, fp
	}
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()

	fp.addPod("default", "db", "n1", map[string]string{"app": "db"})
	fp.addPod("default", "web", "n1", map[string]string{"app": "web"})
	db, err := n.Add(ctx, addReq("db"))
	if err != nil {
		t.Fatal(err)
	}
	web, err := n.Add(ctx, addReq("web"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{db.Addr.Addr(), web.Addr.Addr()} {
		routed, ok := fp.routedAtApply[a]
		if !ok || routed {
			t.Errorf("%s: in an applied rule set %v, routed already then %v; want the rules before the route", a, ok, routed)
		}
	}
	rs := fp.last()
	ep, ok := rs.Endpoint(db.Addr.Addr())
	if !ok || !ep.Ingress.Isolated || ep.Pod != "default/db" {
		t.Fatalf("db's endpoint: %+v %v", ep, ok)
	}
	if ep, _ := rs.Endpoint(web.Addr.Addr()); ep.Ingress.Isolated {
		t.Error("web is isolated; no policy selects it")
	}
	waitFor(t, "the fast path to stand aside for db and carry web", func() bool {
		pods, _ := ff.snapshot()
		return pods[db.Addr.Addr()] == "aside" && pods[web.Addr.Addr()] != "" && pods[web.Addr.Addr()] != "aside"
	})

	if _, err := n.Add(ctx, addReq("ghost")); err == nil {
		t.Fatal("an ADD for a pod the policy source does not know succeeded")
	}
	n.mu.Lock()
	held := len(n.eps)
	n.mu.Unlock()
	if held != 2 {
		t.Errorf("after the refused ADD the agent holds %d endpoints, want 2", held)
	}

	if err := n.Del(ctx, addReq("db").Attachment); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "db's endpoint to leave the rule set", func() bool {
		_, ok := fp.last().Endpoint(db.Addr.Addr())
		return !ok
	})
}

// TestAgentPolicyBurst: concurrent ADDs share compiles and applies (fewer
// applies than ADDs), and still every pod is in an applied rule set before
// its route exists.
func TestAgentPolicyBurst(t *testing.T) {
	e := newEnv(t, flatTopology)
	var fp *fakePolicy
	e.policy = func(name string, dp *fake.Dataplane) (PolicySource, PolicyTable) {
		fp = &fakePolicy{changed: make(chan struct{}, 1), dp: dp, routedAtApply: map[netip.Addr]bool{}, cost: 5 * time.Millisecond}
		return fp, fp
	}
	n := e.startNode("n1", "192.168.10.11", "")
	const pods = 40
	for i := range pods {
		fp.addPod("default", fmt.Sprintf("p%d", i), "n1", nil)
	}
	fp.mu.Lock()
	before := len(fp.applied)
	fp.mu.Unlock()
	addrs := make([]netip.Addr, pods)
	var wg sync.WaitGroup
	errs := make([]error, pods)
	for i := range pods {
		wg.Go(func() {
			r, err := n.Add(context.Background(), addReq(fmt.Sprintf("p%d", i)))
			addrs[i], errs[i] = r.Addr.Addr(), err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ADD p%d: %v", i, err)
		}
	}
	fp.mu.Lock()
	applies := len(fp.applied) - before
	fp.mu.Unlock()
	for i, a := range addrs {
		if routed, ok := fp.routedAtApply[a]; !ok || routed {
			t.Errorf("p%d (%s): in an applied rule set %v, routed already then %v; want the rules before the route", i, a, ok, routed)
		}
	}
	if applies >= pods {
		t.Errorf("%d applies for %d concurrent ADDs: none shared", applies, pods)
	}
	t.Logf("%d concurrent ADDs, %d applies", pods, applies)
}

// TestAdoptLocalPods: the node's own pods get the agent's addresses
// whether the source lists them on this node, on none (a workload record
// not yet reported) or not at all; a pod the source places elsewhere, and a
// name the API would refuse, are left alone.
func TestAdoptLocalPods(t *testing.T) {
	a1, a2, b1 := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.3")
	c := &policy.Cluster{Pods: []policy.Pod{
		{Namespace: "x", Name: "here", Node: "n1", IPs: []netip.Addr{b1}},
		{Namespace: "x", Name: "record", Labels: map[string]string{"a": "b"}},
		{Namespace: "x", Name: "there", Node: "n2", IPs: []netip.Addr{b1}},
	}}
	local := map[string][]netip.Addr{
		"x/here": {a1, a2}, "x/record": {a1}, "x/there": {a2}, "x/unlisted": {a2}, "x/Bad_Name": {a1},
	}
	adoptLocalPods(c, "n1", local)
	want := []policy.Pod{
		{Namespace: "x", Name: "here", Node: "n1", IPs: []netip.Addr{a2, a1}},
		{Namespace: "x", Name: "record", Node: "n1", Labels: map[string]string{"a": "b"}, IPs: []netip.Addr{a1}},
		{Namespace: "x", Name: "there", Node: "n2", IPs: []netip.Addr{b1}},
		{Namespace: "x", Name: "unlisted", Node: "n1", IPs: []netip.Addr{a2}},
	}
	if !reflect.DeepEqual(c.Pods, want) {
		t.Errorf("adopted:\n%+v\nwant\n%+v", c.Pods, want)
	}
	if _, err := policy.Compile(c, policy.Node{Name: "n1"}); err != nil {
		t.Errorf("the adopted cluster does not compile: %v", err)
	}
}

// TestAgentRoutesComeBack: a pod's route removed behind the agent's back
// (another program, a failed sync) is back within a resync, with no change
// to the cluster to trigger it.
func TestAgentRoutesComeBack(t *testing.T) {
	e := newEnv(t, flatTopology)
	n := e.startNode("n1", "192.168.10.11", "")
	r, err := n.Add(context.Background(), addReq("p1"))
	if err != nil {
		t.Fatal(err)
	}
	dst := r.Addr
	has := func() bool {
		return slices.ContainsFunc(n.dp.Routes(), func(rt dataplane.Route) bool { return rt.Dst == dst })
	}
	if !has() {
		t.Fatalf("no route to %s after its ADD", dst)
	}
	n.dp.RemoveRoute(dst)
	if has() {
		t.Fatal("the fake kept the route")
	}
	waitFor(t, "the route to come back at the next resync", has)
}
