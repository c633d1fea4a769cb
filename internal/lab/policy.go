package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/agent"
	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/policy/manifest"
)

// PolicyStatusFile is where a host's agent publishes the digest of the
// rule set it enforces (terrane agent writes policy.json in its state
// directory).
func (n Names) PolicyStatusFile(host string) string {
	return filepath.Join(n.HostDir(host), "state", "policy.json")
}

// EnforceTimeout bounds the wait for every agent to enforce a change.
const EnforceTimeout = 30 * time.Second

// WaitEnforced returns once every host's agent enforces the rule set the
// compiler makes of the cluster as the API holds it now: each agent's
// published digest equals the lab's own compile for that host.
func WaitEnforced(ctx context.Context, st *State) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, EnforceTimeout)
	defer cancel()
	b, err := backendOf(ctx, st)
	if err != nil {
		return 0, err
	}
	for {
		c, err := b.Cluster(ctx)
		if err != nil {
			return 0, err
		}
		want, err := hostDigests(st, c)
		if err != nil {
			return 0, err
		}
		lag := lagging(st, want)
		if len(lag) == 0 {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("not enforced within %s on %s (see their agents' logs in %s)", EnforceTimeout, strings.Join(lag, ", "), st.names().Logs())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// enforces reports whether host's agent enforces policy: the lab's source,
// unless the host's own agent flags turn it off (the last --policy wins, as
// for the agent).
func (s *State) enforces(host string) bool {
	mode := s.Policy
	args := slices.Concat(s.AgentArgs, s.HostAgentArgs[host])
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--policy="):
			mode = strings.TrimPrefix(a, "--policy=")
		case a == "--policy" && i+1 < len(args):
			mode = args[i+1]
		}
	}
	return mode != "" && mode != "none"
}

// hostDigests is, per host, the digest of the rule set the lab compiles
// for it from c: what its agent enforces once it is in step.
func hostDigests(st *State, c *policy.Cluster) (map[string]string, error) {
	want := map[string]string{}
	for _, h := range st.Scenario.Hosts {
		rs, err := policy.Compile(c, policy.Node{Name: h.Name, IPs: []netip.Addr{h.IP}})
		if err != nil {
			return nil, err
		}
		want[h.Name] = rs.Digest()
	}
	return want, nil
}

// lagging are the hosts, in the scenario's order, whose agent has not
// published the digest want holds for them.
func lagging(st *State, want map[string]string) []string {
	n := st.names()
	var lag []string
	for _, h := range st.Scenario.Hosts {
		if !st.enforces(h.Name) {
			continue
		}
		var got agent.PolicyStatus
		if b, err := os.ReadFile(n.PolicyStatusFile(h.Name)); err == nil {
			_ = json.Unmarshal(b, &got)
		}
		if got.Digest != want[h.Name] {
			lag = append(lag, h.Name)
		}
	}
	return lag
}

// ApplyPolicyFile applies every NetworkPolicy and ClusterNetworkPolicy of a
// YAML file (documents separated by ---), each checked first as the API
// server would; nothing is applied if one is bad.
func ApplyPolicyFile(ctx context.Context, st *State, data []byte) ([]string, error) {
	objs, err := manifest.Parse(data)
	if err != nil {
		return nil, err
	}
	b, err := backendOf(ctx, st)
	if err != nil {
		return nil, err
	}
	if err := b.Apply(ctx, objs); err != nil {
		return nil, err
	}
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.String()
	}
	return names, nil
}

// DeletePolicy deletes NAMESPACE/NAME (a NetworkPolicy) or NAME (a
// ClusterNetworkPolicy).
func DeletePolicy(ctx context.Context, st *State, ref string) error {
	b, err := backendOf(ctx, st)
	if err != nil {
		return err
	}
	return b.Delete(ctx, ref)
}

// Label sets (k=v) and removes (k-) labels of a pod (NAMESPACE/NAME) or a
// namespace.
func Label(ctx context.Context, st *State, kind, ref string, changes []string) error {
	ch, err := api.ParseLabelChanges(changes)
	if err != nil {
		return err
	}
	var ns, name string
	switch kind {
	case "pod":
		var ok bool
		if ns, name, ok = strings.Cut(ref, "/"); !ok {
			return fmt.Errorf("pod %q: give NAMESPACE/NAME", ref)
		}
	case "namespace":
		ns = ref
	default:
		return fmt.Errorf("label %s: label a pod or a namespace", kind)
	}
	b, err := backendOf(ctx, st)
	if err != nil {
		return err
	}
	return b.Label(ctx, ns, name, ch)
}

// LabelLatency sets a pod's label key to each of values in turn, count
// times, and measures each time how long after the API accepted the change
// every host's agent enforces the rule set it leads to (the agents' digests,
// polled every millisecond, against the lab's own compile).
func LabelLatency(ctx context.Context, st *State, podRef, key string, values []string, count int) ([]time.Duration, error) {
	ns, name, ok := strings.Cut(podRef, "/")
	if !ok || len(values) < 2 || count < 1 {
		return nil, fmt.Errorf("pod %q: give NAMESPACE/NAME, two values or more and a count", podRef)
	}
	b, err := backendOf(ctx, st)
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := range count {
		v := values[i%len(values)]
		if err := b.Label(ctx, ns, name, api.LabelChange{Set: map[string]string{key: v}}); err != nil {
			return nil, err
		}
		start := time.Now()
		deadline := start.Add(EnforceTimeout)
		// The source shows the change first.
		for p, _ := b.Pod(ctx, ns, name); p.Labels[key] != v; p, _ = b.Pod(ctx, ns, name) {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the policy source did not show %s=%s on %s", key, v, podRef)
			}
			time.Sleep(time.Millisecond)
		}
		c, err := b.Cluster(ctx)
		if err != nil {
			return nil, err
		}
		want, err := hostDigests(st, c)
		if err != nil {
			return nil, err
		}
		for len(lagging(st, want)) > 0 {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("change %d (%s=%s) not enforced within %s", i+1, key, v, EnforceTimeout)
			}
			time.Sleep(time.Millisecond)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}
