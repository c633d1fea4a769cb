package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/server"
)

// TestTopologyController: the ConfigMap's topology is applied at start and
// on every change; an invalid one, one that would orphan live blocks, or a
// ConfigMap without the key is refused with a Warning Event carrying the
// exact reason, and the applied topology stays as it was.
func TestTopologyController(t *testing.T) {
	_, cs := testCluster(t)
	ctx := testCtx(t)
	createNamespace(t, ctx, cs, agentNS, nil)
	state := testState(t) // testTopology applied
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "terrane-topology", Namespace: agentNS},
		Data: map[string]string{TopologyKey: testTopology + "      - {name: zone-c, assignment: {matchLabels: {topology.kubernetes.io/zone: c}}}\n"}}
	cm, err := cs.CoreV1().ConfigMaps(agentNS).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Another ConfigMap in the namespace is none of the controller's.
	if _, err := cs.CoreV1().ConfigMaps(agentNS).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other"},
		Data: map[string]string{TopologyKey: "garbage"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewTopologyController(TopologyControllerOptions{Client: cs, Namespace: agentNS, Name: "terrane-topology", Log: quietLog()}).Run(run, state)
	}()
	t.Cleanup(func() { stop(); <-done })

	wantTopology(t, state, cm.Data[TopologyKey])
	topologyEvent(t, ctx, cs, ReasonTopologyApplied, "replacing revision")
	applied, err := state.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// A live block in rack-1: a topology without rack-1 would orphan it.
	if _, err := state.RegisterHost(ctx, HostSpec(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: zone("a", "1")}})); err != nil {
		t.Fatal(err)
	}
	if _, err := state.Do(ctx, claim("n1", "pods")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data map[string]string
		want string
	}{
		{"invalid", map[string]string{TopologyKey: strings.Replace(testTopology, "10.0.0.0/16", "10.0.0.0/33", 1)}, "10.0.0.0/33"},
		{"orphaning", map[string]string{TopologyKey: strings.Replace(testTopology, `          - {name: rack-1, assignment: {matchLabels: {example.com/rack: "1"}}}
`, "", 1)}, "n1"},
		{"no key", map[string]string{"topology.yml": testTopology}, "data.topology.yaml"},
		{"bad budget", map[string]string{TopologyKey: testTopology, TopologyBudgetKey: "vpc=lots"}, "data.route-budget"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur, err := cs.CoreV1().ConfigMaps(agentNS).Get(ctx, "terrane-topology", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cur.Data = tc.data
			if _, err := cs.CoreV1().ConfigMaps(agentNS).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			msg := topologyEvent(t, ctx, cs, ReasonTopologyRefused, tc.want)
			t.Logf("event: %s", msg)
			now, err := state.Topology(ctx)
			if err != nil || now.Revision != applied.Revision || now.Topology != applied.Topology {
				t.Fatalf("after a refused ConfigMap the topology is %+v (%v), want revision %d unchanged", now, err, applied.Revision)
			}
		})
	}

	// Fixed: applied again, with the mode from the ConfigMap.
	cur, err := cs.CoreV1().ConfigMaps(agentNS).Get(ctx, "terrane-topology", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Data = map[string]string{TopologyKey: testTopology, TopologyModeKey: "elastic", TopologyBudgetKey: "vpc=40"}
	if _, err := cs.CoreV1().ConfigMaps(agentNS).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wantTopology(t, state, testTopology)
	if now, _ := state.Topology(ctx); now.Mode != "elastic" || now.Budgets.VPC != 40 {
		t.Fatalf("mode %s budgets %+v, want elastic and vpc=40", now.Mode, now.Budgets)
	}
}

func wantTopology(t *testing.T, state *server.State, text string) {
	t.Helper()
	eventually(t, 20*time.Second, func() string {
		cur, err := state.Topology(context.Background())
		if err != nil {
			return err.Error()
		}
		if cur.Topology != text {
			return "the applied topology is not the ConfigMap's:\n" + cur.Topology
		}
		return ""
	})
}

// topologyEvent waits for an Event of reason on the topology ConfigMap
// whose message contains want, and returns the message.
func topologyEvent(t *testing.T, ctx context.Context, cs kubernetes.Interface, reason, want string) string {
	t.Helper()
	var msg string
	eventually(t, 20*time.Second, func() string {
		evs, err := cs.CoreV1().Events(agentNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=ConfigMap,involvedObject.name=terrane-topology,reason=" + reason})
		if err != nil {
			return err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if strings.Contains(e.Message, want) {
				msg = e.Message
				return ""
			}
			seen = append(seen, e.Message)
		}
		return fmt.Sprintf("no %s event containing %q on the ConfigMap: %q", reason, want, seen)
	})
	return msg
}

// claim is a State.Do operation that claims a block for host.
func claim(host, network string) func(al *ipam.Allocator) ([]ipam.Change, error) {
	return func(al *ipam.Allocator) ([]ipam.Change, error) {
		_, ch, err := al.ClaimBlock(host, network)
		return ch, err
	}
}
