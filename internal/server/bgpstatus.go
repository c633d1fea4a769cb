package server

import (
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
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/topology"
)

// keyBGPStatus holds each host's last BGP status report:
// status/bgp/<host>. It lies outside keyAll on purpose: a report is not
// allocation state, so it neither wakes the agents' long polls nor enters
// the allocator's reload.
const keyBGPStatus = "status/bgp/"

// maxBGPStatusBody bounds a report: a few peers and the host's announced
// prefixes.
const maxBGPStatusBody = 1 << 20

// putBGPStatus answers PUT /v1/hosts/{host}/bgp: the host's agent reports
// what its speaker does. The record is replaced whole (CAS on the revision
// read, retried on conflict).
func (a *API) putBGPStatus(w http.ResponseWriter, r *http.Request, id Identity) error {
	host := r.PathValue("host")
	if err := mayActOnHost(id, host); err != nil {
		return &apiError{http.StatusForbidden, "", err.Error()}
	}
	var st api.BGPStatus
	if err := decode(r, maxBGPStatusBody, &st); err != nil {
		return err
	}
	if st.Host != "" && st.Host != host {
		return &apiError{http.StatusBadRequest, "host", fmt.Sprintf("the report names host %q but is sent for %q", st.Host, host)}
	}
	for i, p := range st.Peers {
		if !p.Address.IsValid() {
			return &apiError{http.StatusBadRequest, fmt.Sprintf("peers[%d].address", i), "required: the peer's address"}
		}
	}
	if err := a.checkAnnounced(r.Context(), host, st.Announced); err != nil {
		return err
	}
	st.Host, st.ReportedAt = host, time.Now().UTC()
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := a.state.putOutsideState(r.Context(), keyBGPStatus+host, v); err != nil {
		return fmt.Errorf("record the BGP status of %s: %w", host, err)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// checkAnnounced refuses announcements a host may not make, so that `ctl
// bgp` shows no prefix the host does not own: the host must route by bgp in
// some network, and each prefix must lie inside what the routing core says
// it announces there (routing.Advertisements: its blocks merged, or its
// leaf group's prefixes; never space of another host). Inside, not equal:
// a report may trail the state by a sync (a block claimed since merges
// two announced prefixes into one). A report that announces nothing is
// accepted from any host: it is how a stopped speaker clears its record.
func (a *API) checkAnnounced(ctx context.Context, host string, announced []netip.Prefix) error {
	if len(announced) == 0 {
		return nil
	}
	var allowed []netip.Prefix
	inBGP := false
	err := a.state.View(ctx, func(al *ipam.Allocator, _ *topologyRecord) error {
		if al == nil {
			return nil
		}
		h, ok := al.Host(host)
		if !ok {
			return nil
		}
		t := al.Topology()
		for network := range bgpGroups(t, h) {
			inBGP = true
			in := routing.InputFrom(t.Network(network), al.Hosts(), al.Blocks(network), al.GroupPrefixes(network), nil)
			ps, err := routing.Advertisements(in, host)
			if err != nil {
				return err
			}
			allowed = append(allowed, ps...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !inBGP {
		return &apiError{http.StatusBadRequest, "announced", fmt.Sprintf("host %s is in no group that routes by bgp, so it may announce nothing; it announces %s", host, netx.Join(announced, ", ", ""))}
	}
	for _, p := range announced {
		if !p.IsValid() || p != p.Masked() || !netx.CoveredBy(p, allowed) {
			return &apiError{http.StatusBadRequest, "announced", fmt.Sprintf("host %s announces %s, which is not inside what it may announce (its blocks merged, or its group's prefixes): %s", host, p, netx.Join(allowed, ", ", "nothing yet"))}
		}
	}
	return nil
}

// putOutsideState creates or replaces key (outside v1/: status, not
// allocation state), as a CAS on the revision it read, and notes the commit
// so the state stays contiguous through it (no reload on the next
// allocation).
func (s *State) putOutsideState(ctx context.Context, key string, v []byte) error {
	for attempt := 0; ; attempt++ {
		op := store.Create(key, v)
		kv, err := s.st.Get(ctx, key)
		switch {
		case err == nil:
			op = store.Update(key, v, kv.Revision)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		rev, err := s.st.Txn(ctx, op)
		if err == nil {
			s.wroteOutsideState(rev)
			return nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= 5 {
			return err
		}
	}
}

// getBGP answers GET /v1/bgp: per host whose leaf group routes by bgp in
// some network (or that has reported), its last report or that it has not
// reported. Reports of hosts no longer registered are left out.
func (a *API) getBGP(w http.ResponseWriter, r *http.Request, _ Identity) error {
	out, err := a.bgpReport(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// bgpReport is GET /v1/bgp's answer (and the topology page's sessions).
func (a *API) bgpReport(ctx context.Context) (api.BGPReport, error) {
	kvs, _, err := a.state.st.List(ctx, keyBGPStatus)
	if err != nil {
		return api.BGPReport{}, fmt.Errorf("read BGP status: %w", err)
	}
	reports := map[string]*api.BGPStatus{}
	for _, kv := range kvs {
		var st api.BGPStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			a.log.Warn("unreadable BGP status record", "key", kv.Key, "err", err)
			continue
		}
		reports[strings.TrimPrefix(kv.Key, keyBGPStatus)] = &st
	}
	out := api.BGPReport{Hosts: []api.BGPHostReport{}}
	err = a.state.View(ctx, func(al *ipam.Allocator, _ *topologyRecord) error {
		if al == nil {
			return nil
		}
		t := al.Topology()
		for _, h := range al.Hosts() {
			groups := bgpGroups(t, h)
			st := reports[h.Name]
			if len(groups) == 0 && st == nil {
				continue
			}
			out.Hosts = append(out.Hosts, api.BGPHostReport{Host: h.Name, Groups: groups, Reported: st != nil, Status: st})
		}
		return nil
	})
	if err != nil {
		return api.BGPReport{}, err
	}
	slices.SortFunc(out.Hosts, func(x, y api.BGPHostReport) int { return strings.Compare(x.Host, y.Host) })
	return out, nil
}

// bgpGroups are h's leaf groups that route by bgp, by network.
func bgpGroups(t *topology.Topology, h ipam.HostInfo) map[string]string {
	var out map[string]string
	for network, path := range h.Groups {
		n := t.Network(network)
		if n == nil || path == "" {
			continue
		}
		if g := n.Tree.Group(path); g != nil && g.Mode == topology.ModeBGP {
			if out == nil {
				out = map[string]string{}
			}
			out[network] = path
		}
	}
	return out
}
