package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/fielderr"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/store"
)

// The server is a policy source for clusters without a Kubernetes API (the
// lab, VM ports): NetworkPolicies, ClusterNetworkPolicies, namespaces'
// labels and workloads' labels are records under v1/policy/, so writing
// one wakes every agent's long poll; the addresses come from the agents'
// reports (pods) and the server's endpoints (VM ports). See
// docs/design/policy.md.
const (
	keyPolicy           = "v1/policy/"
	keyPolicyNamespaces = keyPolicy + "namespaces/"             // <ns>: its labels
	keyPolicyWorkloads  = keyPolicy + "workloads/"              // <ns>/<name>: labels and ports
	keyPolicyNPs        = keyPolicy + "networkpolicies/"        // <ns>/<name>
	keyPolicyCNPs       = keyPolicy + "clusternetworkpolicies/" // <name>
)

// VMPortNamespace is the namespace of a VM port allocated without one.
const VMPortNamespace = "default"

// policyRecords are the policy objects as of the state's revision.
type policyRecords struct {
	namespaces map[string]policy.Namespace
	workloads  map[string]api.Workload // by namespace/name
	nps        map[string]policy.NetworkPolicy
	cnps       map[string]policy.ClusterNetworkPolicy
}

func newPolicyRecords() *policyRecords {
	return &policyRecords{namespaces: map[string]policy.Namespace{}, workloads: map[string]api.Workload{},
		nps: map[string]policy.NetworkPolicy{}, cnps: map[string]policy.ClusterNetworkPolicy{}}
}

// set records key's value (nil: the record is gone).
func (p *policyRecords) set(key string, value []byte) error {
	var err error
	switch {
	case strings.HasPrefix(key, keyPolicyNamespaces):
		name := strings.TrimPrefix(key, keyPolicyNamespaces)
		delete(p.namespaces, name)
		if value != nil {
			var ns policy.Namespace
			if err = json.Unmarshal(value, &ns); err == nil {
				ns.Name = name
				p.namespaces[name] = ns
			}
		}
	case strings.HasPrefix(key, keyPolicyWorkloads):
		ref := strings.TrimPrefix(key, keyPolicyWorkloads)
		delete(p.workloads, ref)
		if value != nil {
			var w api.Workload
			if err = json.Unmarshal(value, &w); err == nil {
				p.workloads[ref] = w
			}
		}
	case strings.HasPrefix(key, keyPolicyNPs):
		ref := strings.TrimPrefix(key, keyPolicyNPs)
		delete(p.nps, ref)
		if value != nil {
			var np policy.NetworkPolicy
			if err = json.Unmarshal(value, &np); err == nil {
				p.nps[ref] = np
			}
		}
	case strings.HasPrefix(key, keyPolicyCNPs):
		name := strings.TrimPrefix(key, keyPolicyCNPs)
		delete(p.cnps, name)
		if value != nil {
			var cnp policy.ClusterNetworkPolicy
			if err = json.Unmarshal(value, &cnp); err == nil {
				p.cnps[name] = cnp
			}
		}
	}
	return err
}

// loadPolicy reads the policy records out of a state listing. s.mu is
// held.
func (s *State) loadPolicy(kvs []store.KV) {
	s.policy = newPolicyRecords()
	for _, kv := range kvs {
		if !strings.HasPrefix(kv.Key, keyPolicy) {
			continue
		}
		if err := s.policy.set(kv.Key, kv.Value); err != nil {
			s.log.Warn("unreadable policy record; ignored until it is written again", "key", kv.Key, "err", err)
		}
	}
}

// policyWrite computes the records to write from the current ones: each
// key's new value, nil to delete it.
type policyWrite func(cur *policyRecords) (map[string][]byte, error)

// writePolicy commits what fn computes, a compare-and-swap on every record
// it touches, retried on conflict with a fresh state.
func (s *State) writePolicy(ctx context.Context, fn policyWrite) (int64, error) {
	for attempt := range maxConflictRetries {
		s.mu.Lock()
		rev, done, err := s.writePolicyLocked(ctx, fn)
		s.mu.Unlock()
		if done || err != nil {
			return rev, err
		}
		backoff(attempt + 1)
	}
	return 0, fmt.Errorf("write policy records: %w", store.ErrConflict)
}

func (s *State) writePolicyLocked(ctx context.Context, fn policyWrite) (rev int64, done bool, err error) {
	if s.stale {
		if err := s.reload(ctx); err != nil {
			return 0, false, err
		}
	}
	puts, err := fn(s.policy)
	if err != nil {
		return 0, true, err
	}
	var ops []store.Op
	for _, k := range slices.Sorted(maps.Keys(puts)) {
		v, cur := puts[k], s.revs[k]
		switch {
		case v == nil && cur == 0:
		case v == nil:
			ops = append(ops, store.Delete(k, cur))
		case cur == 0:
			ops = append(ops, store.Create(k, v))
		default:
			ops = append(ops, store.Update(k, v, cur))
		}
	}
	if len(ops) == 0 {
		return s.rev, true, nil
	}
	if len(ops) > store.MaxTxnOps {
		return 0, true, &apiError{http.StatusBadRequest, "", fmt.Sprintf("%d objects in one request; write at most %d at once", len(ops), store.MaxTxnOps)}
	}
	newRev, err := s.st.Txn(ctx, ops...)
	if errors.Is(err, store.ErrConflict) {
		s.stale = true
		s.retries++
		return 0, false, nil
	}
	if err != nil {
		return 0, true, fmt.Errorf("write policy records: %w", err)
	}
	s.committed(ops, newRev)
	for _, op := range ops {
		var v []byte
		if !op.Delete {
			v = op.Value
		}
		_ = s.policy.set(op.Key, v) // the values were marshalled here
	}
	return newRev, true, nil
}

// PolicyCluster is the policy compiler's input as the server holds it, and
// the revision it is consistent at (the newer of the state's and the
// address reports'). It is built once per change and shared by every long
// poll while Follow runs.
func (s *State) PolicyCluster(ctx context.Context) (api.PolicyState, error) {
	reports, repRev, err := s.reportsAt(ctx)
	if err != nil {
		return api.PolicyState{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stale {
		if err := s.reload(ctx); err != nil {
			return api.PolicyState{}, err
		}
	}
	out := api.PolicyState{Revision: max(s.rev, repRev)}
	var eps []ipam.Endpoint
	if s.alloc != nil {
		eps = s.alloc.Endpoints()
	}
	out.Cluster = s.policy.cluster(reports, eps)
	return out, nil
}

// cluster joins the records with the addresses: reported pod addresses by
// their pod (orphaned ones left out), VM ports by their ID. A workload
// record with no address yet is listed without node or address.
func (p *policyRecords) cluster(reports []ipam.HostReport, eps []ipam.Endpoint) policy.Cluster {
	pods := map[string]*policy.Pod{}
	pod := func(ns, name, host string) *policy.Pod {
		k := ns + "/" + name
		if pods[k] == nil {
			w := p.workloads[k]
			pods[k] = &policy.Pod{Namespace: ns, Name: name, Node: host, Labels: w.Labels, Ports: w.Ports}
		}
		return pods[k]
	}
	for _, r := range reports {
		for _, a := range r.Addresses {
			ns, name, ok := strings.Cut(a.Pod, "/")
			if !ok || a.Orphaned || !policy.ValidName(ns, name) {
				continue
			}
			if pd := pod(ns, name, r.Host); pd.Node == r.Host {
				pd.IPs = append(pd.IPs, a.Addr)
			}
		}
	}
	for _, e := range eps {
		ns := cmp.Or(e.Namespace, VMPortNamespace)
		if !policy.ValidName(ns, e.ID) {
			continue
		}
		if pd := pod(ns, e.ID, e.Host); pd.Node == e.Host {
			pd.IPs = append(pd.IPs, e.Addr)
		}
	}
	for k, w := range p.workloads {
		if pods[k] == nil {
			pods[k] = &policy.Pod{Namespace: w.Namespace, Name: w.Name, Labels: w.Labels, Ports: w.Ports}
		}
	}
	var c policy.Cluster
	names := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(pods)) {
		pd := pods[k]
		slices.SortFunc(pd.IPs, netip.Addr.Compare)
		pd.IPs = slices.Compact(pd.IPs)
		c.Pods = append(c.Pods, *pd)
		names[pd.Namespace] = true
	}
	for n := range p.namespaces {
		names[n] = true
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		ns := p.namespaces[n]
		ns.Name = n
		c.Namespaces = append(c.Namespaces, ns)
	}
	for _, k := range slices.Sorted(maps.Keys(p.nps)) {
		c.Policies = append(c.Policies, p.nps[k])
	}
	for _, k := range slices.Sorted(maps.Keys(p.cnps)) {
		c.ClusterPolicies = append(c.ClusterPolicies, p.cnps[k])
	}
	return c
}

// getPolicy answers GET /v1/policy[?after=REV[&wait=30s]]: the policy
// compiler's input. With after, it answers once the state or an address
// report is past after, or when wait passes: the agents' watch.
func (a *API) getPolicy(w http.ResponseWriter, r *http.Request, _ Identity) error {
	after, wait, err := longPoll(r)
	if err != nil {
		return err
	}
	a.state.waitPolicyPast(r.Context(), after, wait)
	ps, err := a.state.PolicyCluster(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ps)
	return nil
}

// longPoll reads a long poll's after and wait parameters.
func longPoll(r *http.Request) (after int64, wait time.Duration, err error) {
	q := r.URL.Query()
	if s := q.Get("after"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return 0, 0, &apiError{http.StatusBadRequest, "after", fmt.Sprintf("after %q: want a store revision (a whole number ≥ 0)", s)}
		}
		after = v
	}
	wait = 30 * time.Second
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxSnapshotWait {
			return 0, 0, &apiError{http.StatusBadRequest, "wait", fmt.Sprintf("wait %q: want a duration from 0s to %s", s, maxSnapshotWait)}
		}
		wait = d
	}
	return after, wait, nil
}

// waitPolicyPast returns once the state or an address report has a write
// after revision after, or when wait passes or ctx ends. Without Follow
// (which watches the reports too) it waits for the state only.
func (s *State) waitPolicyPast(ctx context.Context, after int64, wait time.Duration) {
	if after == 0 || wait == 0 {
		return
	}
	s.mu.Lock()
	following := s.following
	s.mu.Unlock()
	if !following {
		s.watchPast(ctx, after, wait)
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		seen, changed, reported, reportChanged := s.seen, s.changed, s.reportSeen, s.reportChanged
		s.mu.Unlock()
		if seen > after || reported > after {
			return
		}
		select {
		case <-changed:
		case <-reportChanged:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// followReports watches the address reports (outside v1/, so they wake no
// snapshot poll) and wakes the policy polls, whose pods' addresses they
// are. Follow runs it.
func (s *State) followReports(ctx context.Context) {
	var from int64
	for ctx.Err() == nil {
		events, errs := s.st.Watch(ctx, keyAddresses, from)
		for ev := range events {
			s.mu.Lock()
			if r := ev.KV.Revision; r > s.reportSeen {
				s.reportSeen = r
				close(s.reportChanged)
				s.reportChanged = make(chan struct{})
			}
			from = ev.KV.Revision + 1
			s.mu.Unlock()
		}
		if err := <-errs; err != nil && ctx.Err() == nil {
			from = 0 // compacted: from now; the next report wakes the polls
			select {
			case <-ctx.Done():
			case <-time.After(watchRetryPause):
			}
		}
	}
}

// applyPolicy answers POST /v1/policy: every object is checked as the API
// server would check it, then all are written in one transaction.
func (a *API) applyPolicy(w http.ResponseWriter, r *http.Request, _ Identity) error {
	var req api.PolicyApply
	if err := decode(r, maxPolicyBody, &req); err != nil {
		return err
	}
	puts, objects, err := policyPuts(&req)
	if err != nil {
		return err
	}
	rev, err := a.state.writePolicy(r.Context(), func(*policyRecords) (map[string][]byte, error) { return puts, nil })
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.PolicyResult{Objects: objects, Revision: rev})
	return nil
}

// maxPolicyBody bounds a policy apply: 128 objects of up to 16 KiB.
const maxPolicyBody = 2 << 20

// policyPuts checks an apply and renders its records. NetworkPolicies
// without a namespace go to "default".
func policyPuts(req *api.PolicyApply) (map[string][]byte, []string, error) {
	c := policy.Cluster{Namespaces: req.Namespaces, Policies: req.NetworkPolicies, ClusterPolicies: req.ClusterNetworkPolicies}
	for i := range c.Policies {
		c.Policies[i].Metadata.Namespace = cmp.Or(c.Policies[i].Metadata.Namespace, "default")
	}
	for _, wl := range req.Workloads {
		c.Pods = append(c.Pods, policy.Pod{Namespace: wl.Namespace, Name: wl.Name, Labels: wl.Labels, Ports: wl.Ports})
	}
	if err := c.Validate(); err != nil {
		return nil, nil, renamePolicyFields(err)
	}
	puts := map[string][]byte{}
	var objects []string
	put := func(key, what string, v any) error {
		if _, dup := puts[key]; dup {
			return &apiError{http.StatusBadRequest, "", what + " appears twice; give each object once"}
		}
		b, err := json.Marshal(v)
		puts[key] = b
		objects = append(objects, what)
		return err
	}
	var err error
	for _, np := range c.Policies {
		err = errors.Join(err, put(keyPolicyNPs+np.Key(), "NetworkPolicy "+np.Key(), np))
	}
	for _, cnp := range c.ClusterPolicies {
		err = errors.Join(err, put(keyPolicyCNPs+cnp.Metadata.Name, "ClusterNetworkPolicy "+cnp.Metadata.Name, cnp))
	}
	for _, ns := range c.Namespaces {
		err = errors.Join(err, put(keyPolicyNamespaces+ns.Name, "Namespace "+ns.Name, policy.Namespace{Labels: ns.Labels}))
	}
	for _, wl := range req.Workloads {
		ref := wl.Namespace + "/" + wl.Name
		err = errors.Join(err, put(keyPolicyWorkloads+ref, "Workload "+ref, wl))
	}
	if err != nil {
		return nil, nil, err
	}
	if len(puts) == 0 {
		return nil, nil, &apiError{http.StatusBadRequest, "", "no object to apply: give networkPolicies, clusterNetworkPolicies, namespaces or workloads"}
	}
	return puts, objects, nil
}

// renamePolicyFields gives the compiler's field paths the request's names;
// the answer's field is the first.
func renamePolicyFields(err error) error {
	var ve *fielderr.ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) == 0 {
		return &apiError{http.StatusBadRequest, "", err.Error()}
	}
	out := &fielderr.ValidationError{Subject: "policy apply"}
	for _, fe := range ve.Errors {
		for from, to := range map[string]string{"policies[": "networkPolicies[", "clusterPolicies[": "clusterNetworkPolicies[", "pods[": "workloads["} {
			if rest, ok := strings.CutPrefix(fe.Path, from); ok {
				fe.Path = to + rest
				break
			}
		}
		out.Errors = append(out.Errors, fe)
	}
	return &apiError{http.StatusBadRequest, out.Errors[0].Path, out.Error()}
}

// deletePolicyObject answers DELETE /v1/policy/{kind}/{ref...}: a
// NetworkPolicy (networkpolicies/NS/NAME), a ClusterNetworkPolicy
// (clusternetworkpolicies/NAME), a namespace's labels (namespaces/NS) or a
// workload (workloads/NS/NAME). Deleting what does not exist is a 404.
func (a *API) deletePolicyObject(w http.ResponseWriter, r *http.Request, _ Identity) error {
	kind, ref := r.PathValue("kind"), r.PathValue("ref")
	prefix, parts := "", 0
	switch kind {
	case "networkpolicies":
		prefix, parts = keyPolicyNPs, 2
	case "workloads":
		prefix, parts = keyPolicyWorkloads, 2
	case "clusternetworkpolicies":
		prefix, parts = keyPolicyCNPs, 1
	case "namespaces":
		prefix, parts = keyPolicyNamespaces, 1
	default:
		return &apiError{http.StatusNotFound, "kind", fmt.Sprintf("no policy kind %q: use networkpolicies, clusternetworkpolicies, namespaces or workloads", kind)}
	}
	if n := len(strings.Split(ref, "/")); n != parts || slices.Contains(strings.Split(ref, "/"), "") {
		want := map[int]string{1: "NAME", 2: "NAMESPACE/NAME"}[parts]
		return &apiError{http.StatusBadRequest, "ref", fmt.Sprintf("%s %q: give %s", kind, ref, want)}
	}
	key := prefix + ref
	rev, err := a.state.writePolicy(r.Context(), func(cur *policyRecords) (map[string][]byte, error) {
		if !cur.has(key) {
			return nil, &apiError{http.StatusNotFound, "ref", fmt.Sprintf("%s %s does not exist", kind, ref)}
		}
		return map[string][]byte{key: nil}, nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.PolicyResult{Objects: []string{kind + " " + ref}, Revision: rev})
	return nil
}

func (p *policyRecords) has(key string) bool {
	var ok bool
	switch {
	case strings.HasPrefix(key, keyPolicyNamespaces):
		_, ok = p.namespaces[strings.TrimPrefix(key, keyPolicyNamespaces)]
	case strings.HasPrefix(key, keyPolicyWorkloads):
		_, ok = p.workloads[strings.TrimPrefix(key, keyPolicyWorkloads)]
	case strings.HasPrefix(key, keyPolicyNPs):
		_, ok = p.nps[strings.TrimPrefix(key, keyPolicyNPs)]
	case strings.HasPrefix(key, keyPolicyCNPs):
		_, ok = p.cnps[strings.TrimPrefix(key, keyPolicyCNPs)]
	}
	return ok
}

// labelPolicyObject answers PATCH /v1/policy/namespaces/{ns}/labels and
// PATCH /v1/policy/workloads/{ns}/{name}/labels: the change is merged into
// the record as it is now (created when missing), in one compare-and-swap.
func (a *API) labelPolicyObject(w http.ResponseWriter, r *http.Request, _ Identity) error {
	var ch api.LabelChange
	if err := decode(r, maxBody, &ch); err != nil {
		return err
	}
	if len(ch.Set) == 0 && len(ch.Remove) == 0 {
		return &apiError{http.StatusBadRequest, "", "no label change: give set or remove"}
	}
	ns, name := r.PathValue("ns"), r.PathValue("name")
	what := "Namespace " + ns
	if name != "" {
		what = "Workload " + ns + "/" + name
	}
	rev, err := a.state.writePolicy(r.Context(), func(cur *policyRecords) (map[string][]byte, error) {
		var req api.PolicyApply
		if name == "" {
			nsr := cur.namespaces[ns]
			nsr.Name, nsr.Labels = ns, relabel(nsr.Labels, ch)
			req.Namespaces = []policy.Namespace{nsr}
		} else {
			wl, ok := cur.workloads[ns+"/"+name]
			if !ok {
				wl = api.Workload{Namespace: ns, Name: name}
			}
			wl.Labels = relabel(wl.Labels, ch)
			req.Workloads = []api.Workload{wl}
		}
		puts, _, err := policyPuts(&req)
		return puts, err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.PolicyResult{Objects: []string{what}, Revision: rev})
	return nil
}

func relabel(cur map[string]string, ch api.LabelChange) map[string]string {
	out := maps.Clone(cur)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, ch.Set)
	for _, k := range ch.Remove {
		delete(out, k)
	}
	return out
}
