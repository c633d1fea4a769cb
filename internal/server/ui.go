package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/ui"
)

// The topology page (internal/ui) under /ui/: the page, the same page
// again for the script's live refresh (/ui/view), a stream of server-sent
// events saying when to refresh (/ui/events), and the search box's
// answers (/ui/search). Each needs the credentials of the API's reads.

// uiStatusPoll is how often the event stream looks at what changes
// outside the allocation state (BGP reports, heartbeats, the VPC
// reconciler); the state and the address reports wake it at once.
const uiStatusPoll = 2 * time.Second

// uiPing keeps an idle event stream's connection open through proxies.
const uiPing = 20 * time.Second

// uiMinChange is the least time between two "change" events of one
// stream: each makes the page fetch /ui/view, which reads the whole state
// under its lock, so a busy cluster must not make an open page refresh
// after every write.
const uiMinChange = time.Second

// uiMaxStreams bounds the open event streams (pages) of one server.
const uiMaxStreams = 64

// uiStreams ends the event streams when the server shuts down (an open
// stream would hold http.Server.Shutdown for its whole timeout) and counts
// the open ones.
type uiStreams struct {
	once sync.Once
	stop sync.Once
	done chan struct{}
	open atomic.Int32
}

func (u *uiStreams) closed() chan struct{} {
	u.once.Do(func() { u.done = make(chan struct{}) })
	return u.done
}

// StopStreams ends every open event stream of the topology page; the
// server calls it when it shuts down (http.Server.RegisterOnShutdown).
func (a *API) StopStreams() {
	a.streams.stop.Do(func() { close(a.streams.closed()) })
}

func (a *API) uiRoutes() {
	a.mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	a.route("GET /ui/{$}", RoleNode, a.uiPage)
	a.route("GET /ui/view", RoleNode, a.uiPage)
	a.route("GET /ui/events", RoleNode, a.uiEvents)
	a.route("GET /ui/search", RoleNode, a.uiSearch)
}

// uiInput gathers what the page shows: the BGP report and the hosts'
// signs of life first (each reads the state itself), then, in one view of
// the state, the allocator (with the agents' reports) and usage's report
// of every network — the figures /v1/plan answers.
func (a *API) uiInput(ctx context.Context, fn func(in ui.Input) error) error {
	bgp, err := a.bgpReport(ctx)
	if err != nil {
		return err
	}
	seen, err := a.state.Heartbeats(ctx)
	if err != nil {
		return err
	}
	vpc := &api.VPCStatus{Tables: []api.VPCTableStatus{}}
	if a.vpc != nil {
		st := a.vpc.Status()
		vpc = &st
	}
	return a.state.ViewCounted(ctx, func(al *ipam.Allocator, tr *topologyRecord, o ipam.AuditOptions) error {
		in := ui.Input{Title: "server", Live: true, Revision: a.state.rev, BGP: &bgp, VPC: vpc, Seen: seen, Now: o.Now}
		if al == nil || tr == nil {
			in.Title = "server (no topology applied yet)"
			return fn(in)
		}
		nets, err := describeNetworks(al, tr)
		if err != nil {
			return err
		}
		in.Alloc, in.Reports, in.Mode = al, nets, tr.Mode
		return fn(in)
	})
}

func (a *API) uiPage(w http.ResponseWriter, r *http.Request, _ Identity) error {
	var v *ui.View
	err := a.uiInput(r.Context(), func(in ui.Input) error {
		v = ui.Build(in) // a copy: rendered after the state's lock is let go
		return nil
	})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := ui.Render(&buf, v); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", ui.ContentSecurityPolicy())
	_, _ = w.Write(buf.Bytes())
	return nil
}

// uiSearch answers the search box: an address with `ctl endpoints
// explain`'s answer (ipam's Explain on the counted state, as GET
// /v1/addresses/{addr}); a VM port by its endpoint ID and a pod by its
// name (namespace/name, or the name alone) with the explanation of their
// address; a host with its groups and blocks.
func (a *API) uiSearch(w http.ResponseWriter, r *http.Request, _ Identity) error {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" {
		return &apiError{http.StatusBadRequest, "q", "q is required: an address, a pod (namespace/name), a VM port's ID or a host's name"}
	}
	seen, err := a.state.Heartbeats(r.Context())
	if err != nil {
		return err
	}
	ans := ui.Answer{Query: q, Kind: "none"}
	err = a.state.ViewCounted(r.Context(), func(al *ipam.Allocator, _ *topologyRecord, o ipam.AuditOptions) error {
		if al == nil {
			return ErrNoTopology
		}
		explain := func(kind string, addr netip.Addr) {
			ex := al.Explain(addr, o)
			ans.Kind, ans.Explanation = kind, &ex
		}
		if addr, err := netip.ParseAddr(q); err == nil {
			if ex := al.Explain(addr, o); len(ex.Places) > 0 {
				ans.Kind, ans.Explanation = "address", &ex
			} else {
				ans.Message = fmt.Sprintf("%s is in no network of the topology", addr)
			}
			return nil
		}
		if h, ok := ui.HostOf(ui.Input{Alloc: al, Live: true, Seen: seen, Now: o.Now}, q); ok {
			ans.Kind, ans.Host = "host", &h
			return nil
		}
		if ep, ok := al.Endpoint(q); ok {
			explain("vm-port", ep.Addr)
			return nil
		}
		var pods []ipam.ReportedAddress
		for _, rep := range al.Reports() {
			for _, ad := range rep.Addresses {
				_, name, _ := strings.Cut(ad.Pod, "/")
				if ad.Pod == q || name == q || ad.Attachment == q {
					pods = append(pods, ad)
				}
			}
		}
		switch {
		case len(pods) == 1 || (len(pods) > 1 && !slices.ContainsFunc(pods, func(p ipam.ReportedAddress) bool { return p.Pod != pods[0].Pod })):
			explain("pod", pods[0].Addr) // one pod (with one address per network)
			ans.Query = pods[0].Pod
		case len(pods) > 1:
			var names []string
			for _, p := range pods {
				names = append(names, p.Pod)
			}
			slices.Sort(names)
			ans.Message = fmt.Sprintf("%d pods are named %s: %s; search one by namespace/name", len(names), q, strings.Join(slices.Compact(names), ", "))
		default:
			ans.Message = fmt.Sprintf("nothing is named %q: not an address, host, VM port or pod this server knows", q)
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// uiEvents streams server-sent events: "change" (data: the revision)
// whenever what the page shows may have moved. The state's own writes
// and the agents' address reports wake it at once, from the same
// broadcast that wakes the agents' long polls (State.Follow); BGP
// reports, heartbeats and the VPC reconciler are looked at every
// uiStatusPoll. The stream sends only when a mark of all that changed.
func (a *API) uiEvents(w http.ResponseWriter, r *http.Request, _ Identity) error {
	fl, ok := w.(http.Flusher)
	if !ok {
		return &apiError{http.StatusInternalServerError, "", "this connection cannot stream events"}
	}
	if a.streams.open.Add(1) > uiMaxStreams {
		a.streams.open.Add(-1)
		return &apiError{http.StatusServiceUnavailable, "", fmt.Sprintf("%d topology pages are open on this server, the most it serves; close one, or open the page on another server", uiMaxStreams)}
	}
	defer a.streams.open.Add(-1)
	ctx := r.Context()
	// The wake-up channels are taken before each mark is read: a change
	// after that closes them, so none falls between a mark and the wait.
	wakers := func() (<-chan struct{}, <-chan struct{}) {
		a.state.mu.Lock()
		defer a.state.mu.Unlock()
		return a.state.changed, a.state.reportChanged
	}
	changed, reportChanged := wakers()
	last, err := a.uiMark(ctx)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(format string, args ...any) bool {
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	if !send("retry: 1000\nevent: hello\ndata: %d\n\n", a.state.Stats().Revision) {
		return nil
	}
	tick := time.NewTicker(uiStatusPoll)
	defer tick.Stop()
	wrote := time.Now()
	recheck := false // after a pause: look again at once (a wake-up may have come in it)
	for {
		if !recheck {
			select {
			case <-ctx.Done():
				return nil
			case <-a.streams.closed():
				return nil
			case <-changed:
			case <-reportChanged:
			case <-tick.C:
			}
		}
		recheck = false
		changed, reportChanged = wakers()
		mark, err := a.uiMark(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.log.Debug("topology page: cannot read the state's marks", "err", err)
			continue
		}
		switch {
		case mark != last:
			last = mark
			if !send("event: change\ndata: %d\n\n", a.state.Stats().Revision) {
				return nil
			}
			wrote = time.Now()
			// Changes meanwhile are coalesced into the next event.
			select {
			case <-ctx.Done():
				return nil
			case <-a.streams.closed():
				return nil
			case <-time.After(uiMinChange):
			}
			recheck = true
		case time.Since(wrote) >= uiPing:
			if !send(": ping\n\n") {
				return nil
			}
			wrote = time.Now()
		}
	}
}

// uiMark sums up everything the page shows that can change: the
// revisions of the state and of the address reports (with Follow; without
// it, each report's generation), each host's BGP report without its
// receipt time, which hosts are silent, and the VPC reconciler's state.
func (a *API) uiMark(ctx context.Context) (uint64, error) {
	h := fnv.New64a()
	s := a.state
	s.mu.Lock()
	following, seen, reported, rev := s.following, s.seen, s.reportSeen, s.rev
	s.mu.Unlock()
	fmt.Fprintln(h, seen, rev)
	if following {
		fmt.Fprintln(h, reported)
	} else {
		reports, err := s.Reports(ctx)
		if err != nil {
			return 0, err
		}
		for _, r := range reports {
			fmt.Fprintln(h, r.Host, r.Generation)
		}
	}
	kvs, _, err := s.st.List(ctx, keyBGPStatus)
	if err != nil {
		return 0, err
	}
	for _, kv := range kvs {
		var st api.BGPStatus
		if json.Unmarshal(kv.Value, &st) == nil {
			st.ReportedAt = time.Time{}
			b, _ := json.Marshal(st)
			fmt.Fprintln(h, kv.Key, string(b))
		}
	}
	beats, err := s.Heartbeats(ctx)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	var silent []string
	for host, at := range beats {
		if now.Sub(at) >= ui.SilentAfter {
			silent = append(silent, host)
		}
	}
	slices.Sort(silent)
	fmt.Fprintln(h, silent, len(beats))
	if a.vpc != nil {
		st := a.vpc.Status()
		fmt.Fprintln(h, st.Active, st.Holder, st.Revision, st.LastError)
		for _, t := range st.Tables {
			fmt.Fprintln(h, t.ID, t.Families, t.Instances, t.Checked, t.LastError, t.Problems, t.RouteLimitHit)
		}
	}
	return h.Sum64(), nil
}
