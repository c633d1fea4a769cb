package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/terrane-net/terrane/internal/agent"
	"github.com/terrane-net/terrane/internal/fielderr"
	"github.com/terrane-net/terrane/internal/lab/labkube"
	"github.com/terrane-net/terrane/internal/policy"
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
	if st.Kube == nil {
		return 0, errors.New("the lab runs without Kubernetes: policies need lab up --k8s")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, EnforceTimeout)
	defer cancel()
	view, err := labkube.PolicyView(ctx, st.Kube.Kubeconfig)
	if err != nil {
		return 0, err
	}
	for {
		c, err := view.Cluster()
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
	if st.Kube == nil {
		return nil, errors.New("the lab runs without Kubernetes: policies need lab up --k8s")
	}
	var objs []json.RawMessage
	var names []string
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		sc := &Scenario{Policies: []json.RawMessage{js}}
		if errs := sc.checkPolicies(); len(errs) > 0 {
			for j := range errs {
				errs[j].Path = strings.TrimPrefix(strings.TrimPrefix(errs[j].Path, "policies[0]"), ".")
			}
			return nil, fmt.Errorf("document %d: %w", i+1, &fielderr.ValidationError{Subject: "policy", Errors: errs})
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct{ Name, Namespace string }
		}
		_ = json.Unmarshal(sc.Policies[0], &meta)
		names = append(names, strings.TrimPrefix(meta.Kind+" "+strings.Trim(meta.Metadata.Namespace+"/"+meta.Metadata.Name, "/"), " "))
		objs = append(objs, sc.Policies[0])
	}
	if len(objs) == 0 {
		return nil, errors.New("no policy in the file")
	}
	dyn, err := labkube.Dynamic(st.Kube.Kubeconfig)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if err := labkube.ApplyPolicy(ctx, dyn, o); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// DeletePolicy deletes NAMESPACE/NAME (a NetworkPolicy) or NAME (a
// ClusterNetworkPolicy).
func DeletePolicy(ctx context.Context, st *State, ref string) error {
	if st.Kube == nil {
		return errors.New("the lab runs without Kubernetes: policies need lab up --k8s")
	}
	dyn, err := labkube.Dynamic(st.Kube.Kubeconfig)
	if err != nil {
		return err
	}
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		return labkube.DeletePolicy(ctx, dyn, "NetworkPolicy", ns, name)
	}
	return labkube.DeletePolicy(ctx, dyn, "ClusterNetworkPolicy", "", ref)
}

// Label sets (k=v) and removes (k-) labels of a pod (NAMESPACE/NAME) or a
// namespace.
func Label(ctx context.Context, st *State, kind, ref string, changes []string) error {
	if st.Kube == nil {
		return errors.New("the lab runs without Kubernetes: labels need lab up --k8s")
	}
	labels := map[string]*string{}
	for _, c := range changes {
		if k, ok := strings.CutSuffix(c, "-"); ok && !strings.Contains(c, "=") {
			labels[k] = nil
			continue
		}
		k, v, ok := strings.Cut(c, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q: give KEY=VALUE to set a label or KEY- to remove it", c)
		}
		labels[k] = &v
	}
	if len(labels) == 0 {
		return errors.New("no label change: give KEY=VALUE or KEY-")
	}
	cs, err := labkube.NewClient(st.Kube.Kubeconfig)
	if err != nil {
		return err
	}
	switch kind {
	case "pod":
		ns, name, ok := strings.Cut(ref, "/")
		if !ok {
			return fmt.Errorf("pod %q: give NAMESPACE/NAME", ref)
		}
		return labkube.LabelPod(ctx, cs, ns, name, labels)
	case "namespace":
		return labkube.LabelNamespace(ctx, cs, ref, labels)
	}
	return fmt.Errorf("label %s: label a pod or a namespace", kind)
}

// LabelLatency sets a pod's label key to each of values in turn, count
// times, and measures each time how long after the API accepted the change
// every host's agent enforces the rule set it leads to (the agents' digests,
// polled every millisecond, against the lab's own compile).
func LabelLatency(ctx context.Context, st *State, podRef, key string, values []string, count int) ([]time.Duration, error) {
	if st.Kube == nil {
		return nil, errors.New("the lab runs without Kubernetes: policies need lab up --k8s")
	}
	ns, name, ok := strings.Cut(podRef, "/")
	if !ok || len(values) < 2 || count < 1 {
		return nil, fmt.Errorf("pod %q: give NAMESPACE/NAME, two values or more and a count", podRef)
	}
	view, err := labkube.PolicyView(ctx, st.Kube.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := labkube.NewClient(st.Kube.Kubeconfig)
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := range count {
		v := values[i%len(values)]
		if err := labkube.LabelPod(ctx, cs, ns, name, map[string]*string{key: &v}); err != nil {
			return nil, err
		}
		start := time.Now()
		deadline := start.Add(EnforceTimeout)
		// The view sees the change first (the lab's own informer).
		for p, _ := view.Pod(ns, name); p.Labels[key] != v; p, _ = view.Pod(ns, name) {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the API did not show %s=%s on %s", key, v, podRef)
			}
			time.Sleep(time.Millisecond)
		}
		c, err := view.Cluster()
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
