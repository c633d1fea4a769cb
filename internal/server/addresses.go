package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/store"
)

// Address reports: each agent tells the server the addresses it handed out
// (PUT /v1/hosts/{host}/addresses), in deltas, at most every few seconds
// and only when something changed. The server keeps the last report of each
// host in addresses/<host>, outside v1/ like heartbeats: a report neither
// wakes the agents' long polls nor makes a server reload its state. Views
// that count addresses (blocks, utilisation, check, explain) read every
// report with one List.
const keyAddresses = "addresses/"

// maxReportBody bounds a report: a host with thousands of pods.
const maxReportBody = 4 << 20

func addressesKey(host string) string { return keyAddresses + host }

func (a *API) putAddresses(w http.ResponseWriter, r *http.Request, id Identity) error {
	host := r.PathValue("host")
	if err := mayActOnHost(id, host); err != nil {
		return &apiError{http.StatusForbidden, "", err.Error()}
	}
	var rep api.AddressReport
	if err := decode(r, maxReportBody, &rep); err != nil {
		return err
	}
	if err := a.requireRegistered(r.Context(), host); err != nil {
		return err
	}
	res, err := a.state.MergeReport(r.Context(), host, rep, time.Now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// errStaleBase: a delta on a generation the server does not hold.
var errStaleBase = errors.New("stale base")

// MergeReport applies a host's report to its stored one and writes it, a
// compare-and-swap on the record's revision.
func (s *State) MergeReport(ctx context.Context, host string, rep api.AddressReport, now time.Time) (api.AddressReportResult, error) {
	if err := checkReport(rep); err != nil {
		return api.AddressReportResult{}, err
	}
	key := addressesKey(host)
	for attempt := range maxConflictRetries {
		kv, err := s.st.Get(ctx, key)
		var cur ipam.HostReport
		switch {
		case errors.Is(err, store.ErrNotFound):
			kv = store.KV{}
		case err != nil:
			return api.AddressReportResult{}, fmt.Errorf("read the address report of %s: %w", host, err)
		default:
			if err := json.Unmarshal(kv.Value, &cur); err != nil {
				cur = ipam.HostReport{} // unreadable: a full report replaces it
			}
		}
		next, err := merge(cur, rep)
		if errors.Is(err, errStaleBase) {
			return api.AddressReportResult{}, &apiError{http.StatusConflict, "base", fmt.Sprintf("base %d: the server holds generation %d of host %s's addresses; send a full report", rep.Base, cur.Generation, host)}
		}
		if err != nil {
			return api.AddressReportResult{}, err
		}
		next.Host, next.At = host, now.UTC()
		value, err := json.Marshal(next)
		if err != nil {
			return api.AddressReportResult{}, err
		}
		op := store.Create(key, value)
		if kv.Revision != 0 {
			op = store.Update(key, value, kv.Revision)
		}
		rev, err := s.st.Txn(ctx, op)
		if errors.Is(err, store.ErrConflict) {
			backoff(attempt + 1)
			continue
		}
		if err != nil {
			return api.AddressReportResult{}, fmt.Errorf("write the address report of %s: %w", host, err)
		}
		s.wroteOutsideState(rev)
		return api.AddressReportResult{Generation: next.Generation, Addresses: len(next.Addresses)}, nil
	}
	return api.AddressReportResult{}, fmt.Errorf("write the address report of %s: %w", host, store.ErrConflict)
}

// checkReport refuses a report that could not describe a host's pool.
func checkReport(rep api.AddressReport) error {
	bad := func(field, format string, args ...any) error {
		return &apiError{http.StatusBadRequest, field, fmt.Sprintf(field+": "+format, args...)}
	}
	for i, ad := range rep.Added {
		f := fmt.Sprintf("added[%d]", i)
		switch {
		case ad.Network == "":
			return bad(f+".network", "required")
		case !ad.Addr.IsValid():
			return bad(f+".addr", "required: the address in use")
		case !ad.Block.IsValid() || !ad.Block.Contains(ad.Addr):
			return bad(f+".block", "%s does not contain %s", ad.Block, ad.Addr)
		case ad.Attachment == "":
			return bad(f+".attachment", "required: the CNI attachment holding the address")
		}
	}
	for i, k := range rep.Removed {
		if k.Network == "" || !k.Addr.IsValid() {
			return bad(fmt.Sprintf("removed[%d]", i), "want {network, addr}")
		}
	}
	for i, b := range rep.Blocks {
		if b.Network == "" || !b.Prefix.IsValid() || b.Used < 0 {
			return bad(fmt.Sprintf("blocks[%d]", i), "want {network, prefix, used ≥ 0}")
		}
	}
	for i, p := range rep.Ports {
		if p.ID == "" {
			return bad(fmt.Sprintf("ports[%d].id", i), "required")
		}
	}
	return nil
}

// merge applies rep to cur: a full report replaces the addresses, a delta
// needs cur to be at rep.Base. Blocks and ports are replaced either way.
func merge(cur ipam.HostReport, rep api.AddressReport) (ipam.HostReport, error) {
	byKey := map[ipam.AddressKey]ipam.ReportedAddress{}
	if !rep.Full {
		if rep.Base != cur.Generation {
			return cur, errStaleBase
		}
		for _, ad := range cur.Addresses {
			byKey[ad.Key()] = ad
		}
		for _, k := range rep.Removed {
			delete(byKey, k)
		}
	}
	for _, ad := range rep.Added {
		byKey[ad.Key()] = ad
	}
	next := ipam.HostReport{Generation: cur.Generation + 1, Blocks: rep.Blocks, Ports: rep.Ports}
	next.Addresses = make([]ipam.ReportedAddress, 0, len(byKey))
	for _, ad := range byKey {
		next.Addresses = append(next.Addresses, ad)
	}
	slices.SortFunc(next.Addresses, func(x, y ipam.ReportedAddress) int {
		return cmp.Or(cmp.Compare(x.Network, y.Network), x.Addr.Compare(y.Addr))
	})
	if next.Blocks == nil {
		next.Blocks = []ipam.ReportedBlock{}
	}
	if next.Ports == nil {
		next.Ports = []ipam.ReportedPort{}
	}
	return next, nil
}

// Reports reads every host's last address report.
func (s *State) Reports(ctx context.Context) ([]ipam.HostReport, error) {
	out, _, err := s.reportsAt(ctx)
	return out, err
}

// reportsAt is Reports and the store revision of the listing.
func (s *State) reportsAt(ctx context.Context) ([]ipam.HostReport, int64, error) {
	kvs, rev, err := s.st.List(ctx, keyAddresses)
	if err != nil {
		return nil, 0, fmt.Errorf("list address reports: %w", err)
	}
	out := make([]ipam.HostReport, 0, len(kvs))
	for _, kv := range kvs {
		var r ipam.HostReport
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, 0, fmt.Errorf("address report %s: %w", kv.Key, err)
		}
		r.Host = strings.TrimPrefix(kv.Key, keyAddresses)
		out = append(out, r)
	}
	return out, rev, nil
}

// ViewCounted runs fn like View, on an allocator that also counts the
// addresses the agents reported, with the audit's options (heartbeats as
// signs of life, now).
func (s *State) ViewCounted(ctx context.Context, fn func(al *ipam.Allocator, tr *topologyRecord, o ipam.AuditOptions) error) error {
	// The audit takes the newer of a host's heartbeat and its report as its
	// sign of life, so the reports are listed once, here.
	seen, err := s.heartbeatRecords(ctx)
	if err != nil {
		return err
	}
	reports, err := s.Reports(ctx)
	if err != nil {
		return err
	}
	orphans, err := s.Orphans(ctx)
	if err != nil {
		return err
	}
	o := ipam.AuditOptions{Now: time.Now(), Seen: seen, Gone: s.audit.Gone, Grace: s.audit.Grace, Orphans: orphans}
	return s.View(ctx, func(al *ipam.Allocator, tr *topologyRecord) error {
		if al == nil {
			return fn(nil, tr, o)
		}
		al.SetReports(reports)
		defer al.SetReports(nil)
		return fn(al, tr, o)
	})
}

func (a *API) check(w http.ResponseWriter, r *http.Request, _ Identity) error {
	return a.state.ViewCounted(r.Context(), func(al *ipam.Allocator, _ *topologyRecord, o ipam.AuditOptions) error {
		rep := api.CheckReport{Findings: []ipam.Finding{}}
		if al != nil {
			rep.Findings = append(rep.Findings, al.Audit(o)...)
		}
		rep.Clean = len(rep.Findings) == 0
		writeJSON(w, http.StatusOK, rep)
		return nil
	})
}

// repair releases the VM ports the audit proves leaked (a live agent has
// not seen their device for the grace period), one transaction each, and
// nothing else.
func (a *API) repair(w http.ResponseWriter, r *http.Request, _ Identity) error {
	var req api.RepairRequest
	if err := decode(r, maxBody, &req); err != nil {
		return err
	}
	res := api.RepairResult{DryRun: req.DryRun, Released: []string{}, Left: []ipam.Finding{}}
	var release []string
	if err := a.state.ViewCounted(r.Context(), func(al *ipam.Allocator, _ *topologyRecord, o ipam.AuditOptions) error {
		if al == nil {
			return nil
		}
		for _, f := range al.Audit(o) {
			if f.Release != "" {
				release = append(release, f.Release)
			} else {
				res.Left = append(res.Left, f)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, id := range release {
		if !req.DryRun {
			if _, err := a.state.Do(r.Context(), func(al *ipam.Allocator) ([]ipam.Change, error) { return al.ReleaseEndpoint(id) }); err != nil {
				return fmt.Errorf("release leaked VM port %s: %w", id, err)
			}
			a.log.Info("released a leaked VM port", "endpoint", id)
		}
		res.Released = append(res.Released, id)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (a *API) explainAddress(w http.ResponseWriter, r *http.Request, _ Identity) error {
	s := r.PathValue("addr")
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return &apiError{http.StatusBadRequest, "addr", fmt.Sprintf("%q is not an IP address", s)}
	}
	return a.state.ViewCounted(r.Context(), func(al *ipam.Allocator, _ *topologyRecord, o ipam.AuditOptions) error {
		if al == nil {
			return ErrNoTopology
		}
		ex := al.Explain(addr, o)
		if len(ex.Places) == 0 {
			return &apiError{http.StatusNotFound, "addr", fmt.Sprintf("%s is in no network of the topology", addr)}
		}
		writeJSON(w, http.StatusOK, ex)
		return nil
	})
}
