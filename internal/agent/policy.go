package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/policy"
)

// PolicySource is where the cluster's policy comes from: the Kubernetes API
// (kube.PolicySource) in a cluster.
type PolicySource interface {
	// Cluster is everything the compiler reads, as the source has it now.
	Cluster() (*policy.Cluster, error)
	// Changed receives a value after any change to what Cluster returns.
	Changed() <-chan struct{}
	// WaitPod waits until the source knows the pod.
	WaitPod(ctx context.Context, namespace, name string) (policy.Pod, error)
}

// PolicyTable enforces compiled rule sets (nft.Table over the host's
// nftables).
type PolicyTable interface {
	Apply(rs *policy.RuleSet) error
}

// PolicyWaitPod bounds how long an ADD waits for its pod to reach the policy
// source: the pod exists in the API before the kubelet asks for its network,
// so this is the informer's lag.
var PolicyWaitPod = 10 * time.Second

// policyState is the enforcer's: the last rule set applied (for the fast
// path, which stands aside for isolated pods) and a kick for changes of the
// local endpoints.
type policyState struct {
	mu      sync.Mutex // serialises compile and apply
	applied *policy.RuleSet
	// compiler compiles the node's rule set, deciding again only what a
	// change reached (under mu).
	compiler *policy.Compiler
	kick     chan struct{}
	// gmu guards the ADDs waiting for a shared enforcement
	// (enforceShared); running is set while one of them runs it.
	gmu     sync.Mutex
	waiting []chan error
	running bool
}

// enforcing reports whether the agent enforces policy.
func (a *Agent) enforcing() bool { return a.cfg.Policy != nil && a.cfg.PolicyTable != nil }

// kickPolicy asks the policy loop to compile again (local endpoints
// changed).
func (a *Agent) kickPolicy() {
	if !a.enforcing() {
		return
	}
	select {
	case a.pol.kick <- struct{}{}:
	default:
	}
}

// policyLoop compiles and applies the node's rule set whenever the source or
// the local endpoints change, and every resync to repair a failed apply.
func (a *Agent) policyLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Resync)
	defer t.Stop()
	for {
		if err := a.enforcePolicy(); err != nil {
			a.log.Warn("policy not enforced", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.cfg.Policy.Changed():
		case <-a.pol.kick:
		case <-t.C:
		}
	}
}

// enforcePolicy compiles the node's rule set from the source and the local
// endpoints and applies it. Local pods' addresses are the agent's own
// records, which exist before the pod's status reports them.
func (a *Agent) enforcePolicy() error {
	a.pol.mu.Lock()
	defer a.pol.mu.Unlock()
	c, err := a.cfg.Policy.Cluster()
	if err != nil {
		return err
	}
	a.mu.Lock()
	local := map[string][]netip.Addr{}
	for _, e := range a.eps {
		if e.PodName != "" {
			k := e.PodNamespace + "/" + e.PodName
			for _, ad := range e.addresses() {
				local[k] = append(local[k], ad.Addr)
			}
		}
	}
	a.mu.Unlock()
	adoptLocalPods(c, a.cfg.Host, local)
	if a.pol.compiler == nil {
		a.pol.compiler = policy.NewCompiler(policy.Node{Name: a.cfg.Host, IPs: []netip.Addr{a.cfg.IP}})
	}
	rs, err := a.pol.compiler.Compile(c)
	if err != nil {
		return fmt.Errorf("compile: %w", err)
	}
	// A pod becoming isolated leaves the fast path before its rules are
	// applied, so no packet bypasses them; the sync loop then records it.
	before, after := a.isolatedLocked(), a.isolatedOf(rs)
	newly := false
	for _, ip := range slices.SortedFunc(maps.Keys(after), netip.Addr.Compare) {
		if before[ip] {
			continue
		}
		newly = true
		if fp := a.cfg.FastPath; fp != nil && ip.Is4() {
			if err := fp.StandAside(ip); err != nil {
				return fmt.Errorf("ebpf fast path: stand aside for %s: %w", ip, err)
			}
		}
	}
	if err := a.cfg.PolicyTable.Apply(rs); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	changed := newly || len(after) != len(before)
	a.pol.applied = rs
	if err := a.writePolicyStatus(rs, len(after)); err != nil {
		a.log.Warn("policy status file", "err", err)
	}
	if changed && a.cfg.FastPath != nil {
		a.requestSync() // pods no longer isolated rejoin the fast path
	}
	return nil
}

// adoptLocalPods gives the node's own pods their addresses from the
// agent's records, which exist before any source reports them. A pod the
// source lists on no node (the server's workload record of a pod not yet
// reported) or not at all (a pod with no record) is this node's; a pod
// the source places on another node is left there.
func adoptLocalPods(c *policy.Cluster, node string, local map[string][]netip.Addr) {
	for _, addrs := range local {
		slices.SortFunc(addrs, netip.Addr.Compare)
	}
	listed := map[string]bool{}
	for i := range c.Pods {
		p := &c.Pods[i]
		listed[p.Key()] = true
		if addrs, ok := local[p.Key()]; ok && (p.Node == node || p.Node == "") {
			p.Node, p.IPs = node, addrs
		}
	}
	for _, k := range slices.Sorted(maps.Keys(local)) {
		ns, name, _ := strings.Cut(k, "/")
		if !listed[k] && policy.ValidName(ns, name) {
			c.Pods = append(c.Pods, policy.Pod{Namespace: ns, Name: name, Node: node, IPs: local[k]})
		}
	}
}

// enforceBeforeReachable is an ADD's step between the address and the
// route: it waits for the pod to reach the policy source and applies the
// rule set that covers it, so the pod's first packet already meets its
// policy.
func (a *Agent) enforceBeforeReachable(ctx context.Context, e *endpoint) error {
	if !a.enforcing() || e.PodName == "" {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, PolicyWaitPod)
	defer cancel()
	if _, err := a.cfg.Policy.WaitPod(wctx, e.PodNamespace, e.PodName); err != nil {
		return err
	}
	if err := a.enforceShared(); err != nil {
		return err
	}
	a.mu.Lock()
	e.policyPending = false
	a.mu.Unlock()
	return nil
}

// enforceShared is enforcePolicy for concurrent ADDs: those that arrive
// while one compiles and applies wait and share the next compile and apply,
// which covers all of their endpoints (each was recorded before it asked).
// A burst of pods costs a few nftables transactions, not one each.
func (a *Agent) enforceShared() error {
	ch := make(chan error, 1)
	a.pol.gmu.Lock()
	a.pol.waiting = append(a.pol.waiting, ch)
	if a.pol.running {
		a.pol.gmu.Unlock()
		return <-ch
	}
	a.pol.running = true
	for {
		batch := a.pol.waiting
		a.pol.waiting = nil
		a.pol.gmu.Unlock()
		err := a.enforcePolicy()
		for _, w := range batch {
			w <- err
		}
		a.pol.gmu.Lock()
		if len(a.pol.waiting) == 0 {
			a.pol.running = false
			a.pol.gmu.Unlock()
			return <-ch
		}
	}
}

// isolatedLocked reports the local addresses the last applied rule set
// isolates in either direction. a.pol.mu is held.
func (a *Agent) isolatedLocked() map[netip.Addr]bool { return a.isolatedOf(a.pol.applied) }

func (a *Agent) isolatedOf(rs *policy.RuleSet) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	if rs == nil {
		return out
	}
	for _, ep := range rs.Endpoints {
		if ep.Ingress.Isolated || ep.Egress.Isolated {
			for _, ip := range ep.IPs {
				out[ip] = true
			}
		}
	}
	return out
}

// PolicyStatus is what the agent writes to Config.PolicyStatusFile after
// each apply: the digest of the rule set the node enforces
// (policy.RuleSet.Digest) and its size.
type PolicyStatus struct {
	Digest    string    `json:"digest"`
	Endpoints int       `json:"endpoints"`
	Isolated  int       `json:"isolated"`
	Applied   time.Time `json:"applied"`
}

func (a *Agent) writePolicyStatus(rs *policy.RuleSet, isolated int) error {
	if a.cfg.PolicyStatusFile == "" {
		return nil
	}
	st := PolicyStatus{Digest: rs.Digest(), Endpoints: len(rs.Endpoints), Isolated: isolated, Applied: time.Now().UTC()}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := a.cfg.PolicyStatusFile + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, a.cfg.PolicyStatusFile)
}
