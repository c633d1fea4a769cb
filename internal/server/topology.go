package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/topology"
	"github.com/terrane-net/terrane/internal/usage"
)

func (a *API) getTopology(w http.ResponseWriter, r *http.Request, _ Identity) error {
	out, err := a.state.Topology(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// Topology is the applied topology, as GET /v1/topology answers it
// (ErrNoTopology before the first).
func (s *State) Topology(ctx context.Context) (*api.Topology, error) {
	var out *api.Topology
	err := s.View(ctx, func(_ *ipam.Allocator, tr *topologyRecord) error {
		if tr == nil {
			return ErrNoTopology
		}
		out = &api.Topology{Topology: string(tr.Source), Mode: tr.Mode, Budgets: tr.Budget, Revision: s.revOf(keyTopology)}
		return nil
	})
	return out, err
}

func (a *API) applyTopology(w http.ResponseWriter, r *http.Request, id Identity) error {
	var b api.TopologyRequest
	if err := decode(r, maxTopologyBody, &b); err != nil {
		return err
	}
	res, err := a.state.ApplyTopology(r.Context(), b)
	if err != nil {
		return err
	}
	if !res.DryRun {
		a.log.Info("topology applied", "by", id.Name, "revision", res.Revision, "replaces", res.Replaces, "writes", res.Writes)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (a *API) getPlan(w http.ResponseWriter, r *http.Request, _ Identity) error {
	return a.state.ViewCounted(r.Context(), func(al *ipam.Allocator, tr *topologyRecord, _ ipam.AuditOptions) error {
		if al == nil {
			return ErrNoTopology
		}
		nets, err := describeNetworks(al, tr)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, api.Report{Mode: tr.Mode, Networks: nets})
		return nil
	})
}

// describeNetworks is usage's report of every network: /v1/plan's and the
// topology page's figures.
func describeNetworks(al *ipam.Allocator, tr *topologyRecord) ([]usage.NetworkReport, error) {
	nets := []usage.NetworkReport{}
	for _, n := range al.Topology().Networks {
		d, err := usage.Describe(al, n, tr.Budget)
		if err != nil {
			return nil, err
		}
		nets = append(nets, d)
	}
	return nets, nil
}

func (s *State) revOf(key string) int64 { return s.revs[key] }

// ApplyTopology validates a topology, computes what changes, and (unless a
// dry run) writes every record that changes in one transaction. With live
// state the change is allowed only when every live block stays inside its
// host's group; otherwise the conflicts come back and nothing is written.
func (s *State) ApplyTopology(ctx context.Context, b api.TopologyRequest) (*api.TopologyResult, error) {
	t, err := topology.Load([]byte(b.Topology))
	if err != nil {
		var ve *topology.ValidationError
		if errors.As(err, &ve) {
			ae := &apiError{Status: http.StatusBadRequest, Msg: err.Error()}
			if len(ve.Errors) > 0 {
				ae.Field = "topology: " + ve.Errors[0].Path
			}
			return nil, ae
		}
		return nil, &apiError{http.StatusBadRequest, "topology", err.Error()}
	}
	if b.Mode == "" {
		b.Mode = ipam.Elastic.String()
	}
	mode, err := ipam.ParsePlanMode(b.Mode)
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, "mode", err.Error()}
	}
	if b.Budgets.VPC < 0 || b.Budgets.BGP < 0 {
		return nil, &apiError{http.StatusBadRequest, "budgets", "budgets must not be negative (0 = unbounded)"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 0; ; attempt++ {
		res, err := s.applyTopologyOnce(ctx, t, b, mode)
		var ce *store.ConflictError
		if errors.As(err, &ce) && attempt < 3 {
			continue // another server wrote meanwhile: plan again on fresh state
		}
		if errors.As(err, &ce) {
			return nil, errTopologyBusy
		}
		return res, err
	}
}

// errTopologyBusy: every attempt to apply a topology met another write.
var errTopologyBusy = &apiError{http.StatusConflict, "", "the state kept changing while the topology was being applied; retry"}

// TopologyRefusal tells whether ApplyTopology's err refuses the topology
// itself — invalid (the message names the field) or a change that would
// orphan live state (each conflict on a line of its own) — so that applying
// the same request again cannot succeed; msg is then the whole reason.
// Other errors (the store, a race with other writes) may pass on a retry.
func TopologyRefusal(err error) (msg string, refused bool) {
	var ae *apiError
	var ce *conflictError
	switch {
	case errors.As(err, &ce):
		var b strings.Builder
		b.WriteString(ce.msg)
		for _, f := range ce.findings {
			fmt.Fprintf(&b, "\n%s %s: %s", f.Kind, f.Subject, f.Detail)
		}
		return b.String(), true
	case errors.As(err, &ae) && ae != errTopologyBusy && ae.Status >= 400 && ae.Status < 500:
		if ae.Field != "" && !strings.Contains(ae.Msg, ae.Field) {
			return ae.Field + ": " + ae.Msg, true
		}
		return ae.Msg, true
	}
	return "", false
}

// applyTopologyOnce plans the change on the state as the store holds it now
// and commits it guarded: if any record was written after the listing the
// plan was made from (a host joining, a block claimed through another
// server), the commit fails with a conflict and nothing changes.
func (s *State) applyTopologyOnce(ctx context.Context, t *topology.Topology, b api.TopologyRequest, mode ipam.PlanMode) (*api.TopologyResult, error) {
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	listed := s.rev
	res := &api.TopologyResult{DryRun: b.DryRun, Replaces: s.revs[keyTopology]}
	if b.Replaces != 0 && b.Replaces != res.Replaces {
		return nil, &apiError{http.StatusConflict, "replaces", fmt.Sprintf("the topology is at revision %d, not %d: another one was applied since you read it; get it again and retry", res.Replaces, b.Replaces)}
	}
	opts := ipam.Options{Mode: mode, Budgets: b.Budgets}
	var next *ipam.Allocator
	var err error
	if s.alloc == nil {
		next, _, err = ipam.New(t, opts)
	} else {
		var conflicts []ipam.Finding
		next, conflicts, err = ipam.Rebase(s.alloc, t, opts)
		if err == nil && len(conflicts) > 0 {
			return nil, &conflictError{msg: fmt.Sprintf("the new topology would orphan live state (%d conflicts); nothing was changed", len(conflicts)), findings: conflicts}
		}
	}
	if err != nil {
		return nil, err
	}
	tr := &topologyRecord{Source: []byte(b.Topology), Mode: mode.String(), Budget: b.Budgets}
	ops, diff, err := s.topologyOps(next, tr)
	if err != nil {
		return nil, err
	}
	res.Diff, res.Writes = diff, len(ops)
	if b.DryRun || len(ops) == 0 {
		res.Revision = res.Replaces // nothing to write: the same topology stands
		if b.DryRun {
			res.Revision = 0
		}
		return res, nil
	}
	if len(ops)+1 > store.MaxTxnOps {
		return nil, &apiError{http.StatusConflict, "", fmt.Sprintf("the change writes %d records, more than one store transaction may hold (%d); apply it in smaller steps", len(ops), store.MaxTxnOps-1)}
	}
	rev, err := s.st.Txn(ctx, append(ops, store.Unchanged(keyAll, listed))...)
	if err != nil {
		s.stale = true
		return nil, fmt.Errorf("write topology (%d records): %w", len(ops), err)
	}
	s.committed(ops, rev)
	s.alloc, s.topo = next, tr
	res.Revision = rev
	return res, nil
}

// topologyOps lists the writes that take the store from the current state to
// next, and describes them for people.
func (s *State) topologyOps(next *ipam.Allocator, tr *topologyRecord) ([]store.Op, []string, error) {
	want := map[string][]byte{}
	put := func(k string, v any) error {
		b, err := json.Marshal(v)
		want[k] = b
		return err
	}
	if err := put(keySchema, schemaRecord{Version: schemaVersion}); err != nil {
		return nil, nil, err
	}
	if err := put(keyTopology, tr); err != nil {
		return nil, nil, err
	}
	for _, k := range recordKeys(next) {
		v, ok, err := record(next, k)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			want[k] = v
		}
	}
	var ops []store.Op
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		rev, exists := s.revs[k]
		if !exists {
			ops = append(ops, store.Create(k, want[k]))
			diff = append(diff, "+ "+describeKey(k, want[k]))
			continue
		}
		if s.alloc != nil && k != keyTopology && k != keySchema {
			if old, ok, _ := record(s.alloc, k); ok && bytes.Equal(old, want[k]) {
				continue
			}
		}
		if k == keyTopology && s.topo != nil {
			if old, _ := json.Marshal(s.topo); bytes.Equal(old, want[k]) {
				continue
			}
		}
		if k == keySchema {
			continue
		}
		ops = append(ops, store.Update(k, want[k], rev))
		diff = append(diff, "~ "+describeKey(k, want[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(s.revs)) {
		if _, ok := want[k]; !ok {
			ops = append(ops, store.Delete(k, s.revs[k]))
			diff = append(diff, "- "+k)
		}
	}
	return ops, diff, nil
}

// recordKeys lists every record an allocator's state consists of.
func recordKeys(a *ipam.Allocator) []string {
	var keys []string
	for _, n := range a.Topology().Networks {
		if len(a.GroupPrefixes(n.Name)) > 0 {
			keys = append(keys, groupsKey(n.Name))
		}
		for _, b := range a.Blocks(n.Name) {
			keys = append(keys, blockKey(n.Name, b.Prefix))
		}
	}
	for _, h := range a.Hosts() {
		keys = append(keys, hostKey(h.Name))
	}
	for _, e := range a.Endpoints() {
		keys = append(keys, endpointKey(e.ID))
	}
	for _, ns := range slices.Sorted(maps.Keys(a.NamespaceNetworks())) {
		keys = append(keys, namespaceKey(ns))
	}
	return keys
}

func describeKey(k string, v []byte) string {
	switch {
	case k == keyTopology:
		return "topology"
	case strings.HasPrefix(k, keyGroups):
		var r groupsRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Sprintf("groups of %s (unreadable: %v)", strings.TrimPrefix(k, keyGroups), err)
		}
		parts := make([]string, 0, len(r.Groups))
		for _, path := range slices.Sorted(maps.Keys(r.Groups)) {
			parts = append(parts, fmt.Sprintf("%s %v", path, r.Groups[path]))
		}
		return fmt.Sprintf("groups of %s: %s", strings.TrimPrefix(k, keyGroups), strings.Join(parts, "; "))
	default:
		return strings.TrimPrefix(k, "v1/")
	}
}
