package server

import (
	"context"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/policy"
)

// TestPolicySource: the server as the policy compiler's source. Objects are
// checked as the API server would check them and written together or not
// at all; the view joins them with the reported pod addresses and the VM
// ports; a report wakes the policy long poll; labels merge; deletes and a
// reload from the store agree.
func TestPolicySource(t *testing.T) {
	st := openBolt(t, t.TempDir())
	s := newTestServer(t, st)
	s.setup()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go s.state.Follow(ctx)

	np := map[string]any{"metadata": map[string]any{"name": "a-in", "namespace": "x"},
		"spec": map[string]any{"podSelector": map[string]any{"matchLabels": map[string]string{"pod": "a"}}, "policyTypes": []string{"Ingress"}}}
	bad := map[string]any{"metadata": map[string]any{"name": "bad"},
		"spec": map[string]any{"podSelector": map[string]any{"matchLabels": map[string]string{"pod": "-a"}}}}
	// A node may read but not write; a bad object writes nothing.
	s.must(n1Token, "POST", "/v1/policy", map[string]any{"networkPolicies": []any{np}}, http.StatusForbidden)
	body := s.must(adminToken, "POST", "/v1/policy", map[string]any{"networkPolicies": []any{np, bad}}, http.StatusBadRequest)
	if body["field"] != "networkPolicies[1].spec.podSelector.matchLabels[pod]" {
		t.Errorf("bad policy: %v, want the field networkPolicies[1].spec.podSelector.matchLabels[pod]", body)
	}
	s.must(adminToken, "POST", "/v1/policy", map[string]any{"workloads": []any{map[string]any{"namespace": "x", "name": "a", "labels": map[string]string{"pod": "a", "bad key!": "v"}}}}, http.StatusBadRequest)
	if ps := s.policy(n1Token, ""); len(ps.Cluster.Policies)+len(ps.Cluster.Pods)+len(ps.Cluster.Namespaces) != 0 {
		t.Fatalf("refused writes left %+v", ps.Cluster)
	}

	res := s.must(adminToken, "POST", "/v1/policy", map[string]any{
		"networkPolicies":        []any{np},
		"clusterNetworkPolicies": []any{map[string]any{"metadata": map[string]any{"name": "no-metadata"}, "spec": map[string]any{"tier": "Admin", "priority": 10, "subject": map[string]any{"namespaces": map[string]any{}}, "egress": []any{map[string]any{"action": "Deny", "to": []any{map[string]any{"networks": []string{"169.254.169.254/32"}}}}}}}},
		"namespaces":             []any{map[string]any{"name": "x", "labels": map[string]string{"team": "blue"}}},
		"workloads":              []any{map[string]any{"namespace": "x", "name": "a", "labels": map[string]string{"pod": "a"}, "ports": []any{map[string]any{"name": "web", "containerPort": 80}}}},
	}, 200)
	if objs, _ := res["objects"].([]any); len(objs) != 4 {
		t.Errorf("apply answered %v, want 4 objects", res)
	}
	ps := s.policy(n1Token, "")
	wantPod := policy.Pod{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, Ports: []policy.ContainerPort{{Name: "web", Port: 80}}}
	if len(ps.Cluster.Pods) != 1 || !reflect.DeepEqual(ps.Cluster.Pods[0], wantPod) {
		t.Errorf("a workload before its address: %+v, want %+v", ps.Cluster.Pods, wantPod)
	}
	if len(ps.Cluster.Policies) != 1 || ps.Cluster.Policies[0].Key() != "x/a-in" || len(ps.Cluster.ClusterPolicies) != 1 {
		t.Errorf("policies: %+v %+v", ps.Cluster.Policies, ps.Cluster.ClusterPolicies)
	}

	// The pod's address arrives with n1's report, and wakes a long poll.
	block, vm := s.agentBlockAndVM("n1")
	before := s.policy(n1Token, "")
	polled := make(chan api.PolicyState, 1)
	go func() {
		var next api.PolicyState
		getAs(s.url, n1Token, "/v1/policy?after="+strconv.FormatInt(before.Revision, 10)+"&wait=20s", &next)
		polled <- next
	}()
	addr := block.Addr().Next()
	start := time.Now()
	rep := api.AddressReport{Full: true, Added: []ipam.ReportedAddress{{Network: "pods", Addr: addr, Block: block, Attachment: "c1/eth0", Pod: "x/a"}}}
	s.must(n1Token, "PUT", "/v1/hosts/n1/addresses", rep, 200)
	got := <-polled
	if time.Since(start) > 10*time.Second {
		t.Fatalf("the policy poll took %s: the report did not wake it", time.Since(start))
	}
	wantPod.Node, wantPod.IPs = "n1", []netip.Addr{addr}
	vmPod := policy.Pod{Namespace: VMPortNamespace, Name: "vm-1", Node: "n1", IPs: []netip.Addr{vm.Addr}}
	if !reflect.DeepEqual(got.Cluster.Pods, []policy.Pod{vmPod, wantPod}) {
		t.Errorf("after the report: pods %+v, want %+v", got.Cluster.Pods, []policy.Pod{vmPod, wantPod})
	}
	if names := nsNames(got.Cluster); !reflect.DeepEqual(names, []string{"default", "x"}) || got.Cluster.Namespaces[1].Labels["team"] != "blue" {
		t.Errorf("namespaces: %+v", got.Cluster.Namespaces)
	}
	if _, err := policy.Compile(&got.Cluster, policy.Node{Name: "n1"}); err != nil {
		t.Errorf("the view does not compile: %v", err)
	}

	// Labels merge; a workload is created by its first label.
	s.must(adminToken, "PATCH", "/v1/policy/workloads/x/a/labels", map[string]any{"set": map[string]string{"tier": "web"}, "remove": []string{"pod"}}, 200)
	s.must(adminToken, "PATCH", "/v1/policy/workloads/default/vm-1/labels", map[string]any{"set": map[string]string{"role": "db"}}, 200)
	s.must(adminToken, "PATCH", "/v1/policy/namespaces/x/labels", map[string]any{"remove": []string{"team"}}, 200)
	s.must(adminToken, "PATCH", "/v1/policy/namespaces/x/labels", map[string]any{}, http.StatusBadRequest)
	ps = s.policy(n1Token, "")
	if l := ps.Cluster.Pods[1].Labels; !reflect.DeepEqual(l, map[string]string{"tier": "web"}) {
		t.Errorf("x/a labels after the patch: %v", l)
	}
	if l := ps.Cluster.Pods[0].Labels; !reflect.DeepEqual(l, map[string]string{"role": "db"}) {
		t.Errorf("the VM port's labels: %v", l)
	}

	// Deletes; a missing object is a 404; a reloaded state agrees.
	s.must(adminToken, "DELETE", "/v1/policy/networkpolicies/x/a-in", nil, 200)
	s.must(adminToken, "DELETE", "/v1/policy/networkpolicies/x/a-in", nil, http.StatusNotFound)
	s.must(adminToken, "DELETE", "/v1/policy/networkpolicies/a-in", nil, http.StatusBadRequest)
	s.must(adminToken, "DELETE", "/v1/policy/things/a", nil, http.StatusNotFound)
	s.must(adminToken, "DELETE", "/v1/policy/clusternetworkpolicies/no-metadata", nil, 200)
	ps = s.policy(n1Token, "")
	if len(ps.Cluster.Policies)+len(ps.Cluster.ClusterPolicies) != 0 {
		t.Errorf("after the deletes: %+v %+v", ps.Cluster.Policies, ps.Cluster.ClusterPolicies)
	}
	fresh, err := NewState(ctx, st, s.state.log)
	if err != nil {
		t.Fatal(err)
	}
	reloaded, err := fresh.PolicyCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(reloaded.Cluster, ps.Cluster) {
		t.Errorf("reloaded from the store:\n%+v\nwant\n%+v", reloaded.Cluster, ps.Cluster)
	}
}

func (s *testServer) policy(token, query string) api.PolicyState {
	s.t.Helper()
	var ps api.PolicyState
	getAs(s.url, token, "/v1/policy"+query, &ps)
	return ps
}

func nsNames(c policy.Cluster) []string {
	var out []string
	for _, ns := range c.Namespaces {
		out = append(out, ns.Name)
	}
	return out
}
