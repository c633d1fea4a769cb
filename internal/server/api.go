package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/cloud/vpc"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/metrics"
	"github.com/terrane-net/terrane/internal/store"
)

// Request size limits: a topology is a few kilobytes (4 MiB cap, as
// topology.MaxFileSize); everything else is small.
const (
	maxTopologyBody = 5 << 20
	maxBody         = 64 << 10
)

// API serves Terrane's control API under /v1/.
type API struct {
	state *State
	auth  Authenticator
	log   *slog.Logger
	mux   *http.ServeMux
	met   *serverMetrics  // the event metrics (metrics.go)
	vpc   *vpc.Reconciler // nil without --vpc-config
	// failures, if set, hears of claims and allocations refused for want
	// of room or routes (Config.Failures).
	failures AllocationFailures
	streams  uiStreams // the topology page's event streams (ui.go)
}

// AllocationFailures hears of a host's block claim or endpoint allocation
// that the allocator refused because the network is full (ipam.ErrExhausted)
// or a route budget would be exceeded (ipam.ErrRouteBudget): what an
// operator must see (Kubernetes: an Event on the host's Node).
type AllocationFailures interface {
	AllocationFailed(host, network string, err error)
}

// SetAllocationFailures makes f hear of claims and allocations refused for
// want of room or routes.
func (a *API) SetAllocationFailures(f AllocationFailures) { a.failures = f }

// failed tells a.failures of a refusal for want of room or routes.
func (a *API) failed(host, network string, err error) {
	if a.failures != nil && (errors.Is(err, ipam.ErrExhausted) || errors.Is(err, ipam.ErrRouteBudget)) {
		a.failures.AllocationFailed(host, network, err)
	}
}

// NewAPI builds the handler. auth decides who the caller is.
func NewAPI(state *State, auth Authenticator, log *slog.Logger) *API {
	a := &API{state: state, auth: auth, log: log, mux: http.NewServeMux(), met: newServerMetrics()}
	a.mux.HandleFunc("GET /healthz", a.health)
	a.mux.HandleFunc("GET /readyz", a.health)
	a.mux.HandleFunc("GET /livez", a.live)
	a.mux.Handle("GET /metrics", metrics.Handler(a.registry()))
	a.route("GET /v1/topology", RoleNode, a.getTopology)
	a.route("POST /v1/topology", RoleAdmin, a.applyTopology)
	a.route("GET /v1/plan", RoleNode, a.getPlan)
	a.route("GET /v1/utilisation", RoleNode, a.getPlan)
	a.route("GET /v1/check", RoleAdmin, a.check)
	a.route("POST /v1/check/repair", RoleAdmin, a.repair)
	a.route("GET /v1/addresses/{addr}", RoleNode, a.explainAddress)
	a.route("PUT /v1/hosts/{host}/addresses", RoleNode, a.putAddresses)
	a.route("GET /v1/hosts", RoleNode, a.listHosts)
	a.route("PUT /v1/hosts/{host}", RoleNode, a.registerHost)
	a.route("PUT /v1/hosts/{host}/heartbeat", RoleNode, a.heartbeat)
	a.route("GET /v1/hosts/{host}/releases", RoleNode, a.getReleases)
	a.route("DELETE /v1/hosts/{host}", RoleAdmin, a.removeHost)
	a.route("GET /v1/blocks", RoleNode, a.listBlocks)
	a.route("GET /v1/snapshot", RoleNode, a.getSnapshot)
	a.route("GET /v1/vpc", RoleNode, a.getVPC)
	a.route("POST /v1/hosts/{host}/blocks", RoleNode, a.claimBlock)
	a.route("DELETE /v1/hosts/{host}/blocks/{network}/{addr}/{bits}", RoleNode, a.releaseBlock)
	a.route("GET /v1/namespaces", RoleNode, a.listNamespaces)
	a.route("PUT /v1/namespaces/{ns}", RoleAdmin, a.setNamespace)
	a.route("DELETE /v1/namespaces/{ns}", RoleAdmin, a.clearNamespace)
	a.route("GET /v1/endpoints", RoleNode, a.listEndpoints)
	a.route("POST /v1/endpoints", RoleNode, a.allocateEndpoint)
	a.route("DELETE /v1/endpoints/{id}", RoleNode, a.releaseEndpoint)
	a.route("PUT /v1/hosts/{host}/bgp", RoleNode, a.putBGPStatus)
	a.route("GET /v1/bgp", RoleNode, a.getBGP)
	a.route("GET /v1/policy", RoleNode, a.getPolicy)
	a.route("POST /v1/policy", RoleAdmin, a.applyPolicy)
	a.route("DELETE /v1/policy/{kind}/{ref...}", RoleAdmin, a.deletePolicyObject)
	a.route("PATCH /v1/policy/namespaces/{ns}/labels", RoleAdmin, a.labelPolicyObject)
	a.route("PATCH /v1/policy/workloads/{ns}/{name}/labels", RoleAdmin, a.labelPolicyObject)
	a.uiRoutes()
	return a
}

// ServeHTTP implements http.Handler. A request no route takes gets the
// API's JSON error, not the mux's plain-text 404 or 405.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := a.mux.Handler(r)
	if pattern != "" {
		a.mux.ServeHTTP(w, r)
		return
	}
	// The mux's own answer says which: 404, or 405 with the Allow header.
	mw := &muxAnswer{header: http.Header{}}
	h.ServeHTTP(mw, r)
	switch mw.status {
	case http.StatusMethodNotAllowed:
		allow := mw.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeError(w, &apiError{http.StatusMethodNotAllowed, "", fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, allow)})
	default:
		writeError(w, &apiError{http.StatusNotFound, "", fmt.Sprintf("no such path: %s %s; the API is under /v1/ (see docs/server.md)", r.Method, r.URL.Path)})
	}
}

// muxAnswer keeps the status and headers of the mux's error answer.
type muxAnswer struct {
	header http.Header
	status int
}

func (m *muxAnswer) Header() http.Header { return m.header }
func (m *muxAnswer) WriteHeader(status int) {
	if m.status == 0 {
		m.status = status
	}
}
func (m *muxAnswer) Write(b []byte) (int, error) {
	m.WriteHeader(http.StatusOK)
	return len(b), nil
}

type handler func(w http.ResponseWriter, r *http.Request, id Identity) error

// route registers a handler that needs at least role.
func (a *API) route(pattern string, role Role, h handler) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		id, err := a.auth.Authenticate(r)
		if errors.Is(err, ErrAuthUnavailable) {
			writeError(w, &apiError{http.StatusServiceUnavailable, "", err.Error() + "; try again"})
			return
		}
		if err != nil {
			writeError(w, &apiError{http.StatusUnauthorized, "", "authenticate with a bearer token or a client certificate issued by `terrane ctl certs`"})
			return
		}
		if role == RoleAdmin && id.Role != RoleAdmin {
			writeError(w, &apiError{http.StatusForbidden, "", fmt.Sprintf("%s needs an admin identity; %s is a %s", pattern, id.Name, id.Role)})
			return
		}
		if err := h(w, r, id); err != nil {
			writeError(w, err)
		}
	})
}

// apiError is an error with its HTTP status and, for bad input, the field.
type apiError struct {
	Status int
	Field  string
	Msg    string
}

func (e *apiError) Error() string { return e.Msg }

// conflictError is a refused topology change with its conflicts.
type conflictError struct {
	msg      string
	findings []ipam.Finding
}

func (e *conflictError) Error() string { return e.msg }

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	var ce *conflictError
	status, body := http.StatusInternalServerError, api.Error{Error: err.Error()}
	switch {
	case errors.As(err, &ae):
		status, body.Field = ae.Status, ae.Field
	case errors.As(err, &ce):
		status, body.Conflicts = http.StatusConflict, ce.findings
	case errors.Is(err, ipam.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ipam.ErrInvalid), errors.Is(err, ipam.ErrNoGroup):
		status = http.StatusBadRequest
	case errors.Is(err, ipam.ErrConflict), errors.Is(err, ipam.ErrExhausted), errors.Is(err, ipam.ErrRouteBudget), errors.Is(err, ErrNoTopology), errors.Is(err, store.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

// writeJSON answers v, encoded before anything is sent: a value that does
// not encode is a 500 with the reason, not a 200 cut short.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(api.Error{Error: "encode the answer: " + err.Error()}) // strings always encode
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A failed write means the caller has gone: there is no one to tell.
	_, _ = w.Write(append(b, '\n'))
}

// decode reads a JSON body strictly: bounded size, no unknown fields, no
// trailing data. Errors name the field where encoding/json does.
func decode(r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return &apiError{http.StatusBadRequest, "", "reading the request body: " + err.Error()}
	}
	if int64(len(body)) > limit {
		return &apiError{http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body is larger than %d bytes", limit)}
	}
	return decodeBytes(body, v)
}

func decodeBytes(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return &apiError{http.StatusBadRequest, te.Field, fmt.Sprintf("field %s: want %s, got JSON %s", te.Field, te.Type, te.Value)}
		case errors.As(err, &se):
			return &apiError{http.StatusBadRequest, "", fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)}
		case errors.Is(err, io.EOF):
			return &apiError{http.StatusBadRequest, "", "empty request body; send a JSON object"}
		case errors.Is(err, io.ErrUnexpectedEOF):
			return &apiError{http.StatusBadRequest, "", "malformed JSON: the body ends before the value does"}
		default:
			if field := badField(body, v); field != "" {
				// A value's text form (an address, a prefix) is wrong:
				// encoding/json does not say whose.
				return &apiError{http.StatusBadRequest, field, fmt.Sprintf("field %s: %v", field, err)}
			}
			return &apiError{http.StatusBadRequest, "", "request body: " + err.Error()}
		}
	}
	if dec.More() {
		return &apiError{http.StatusBadRequest, "", "request body holds more than one JSON value"}
	}
	return nil
}

// badField is the top-level field of body that v's type does not take
// alone, or "" when none is: the field of an error from a value's
// UnmarshalText, which encoding/json reports without it.
func badField(body []byte, v any) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return ""
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		one, err := json.Marshal(map[string]json.RawMessage{name: fields[name]})
		if err != nil {
			return ""
		}
		if json.Unmarshal(one, reflect.New(reflect.TypeOf(v).Elem()).Interface()) != nil {
			return name
		}
	}
	return ""
}

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	st := a.state.Stats()
	if st.LoadErr != nil {
		// The store holds records this server cannot load: it cannot serve
		// allocations until they are repaired or the store is reachable.
		writeJSON(w, http.StatusServiceUnavailable, api.Health{Status: "unhealthy", Revision: st.Revision, Error: st.LoadErr.Error()})
		return
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ok", Revision: st.Revision})
}

// live answers GET /livez: the process serves requests. Unlike /healthz
// and /readyz it does not depend on the store, so a liveness probe does not
// restart a server whose store is unreachable or holds records it cannot
// load (a restart would not fix either).
func (a *API) live(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok", Revision: a.state.Stats().Revision})
}

// validName refuses a host name or endpoint ID the API's name rule does
// not admit: such names break store keys, URL paths and `terrane ctl`
// tables, and could not be removed again.
func validName(field, value string) error {
	if err := api.ValidateName(field, value); err != nil {
		return &apiError{http.StatusBadRequest, field, err.Error()}
	}
	return nil
}

func (a *API) registerHost(w http.ResponseWriter, r *http.Request, id Identity) error {
	name := r.PathValue("host")
	if err := mayActOnHost(id, name); err != nil {
		return &apiError{http.StatusForbidden, "", err.Error()}
	}
	if err := validName("host", name); err != nil {
		return err
	}
	var b api.HostRequest
	if err := decode(r, maxBody, &b); err != nil {
		return err
	}
	ip := b.IP
	changes, err := a.state.Do(r.Context(), func(al *ipam.Allocator) ([]ipam.Change, error) {
		labels := b.Labels
		old, registered := al.Host(name)
		if registered && labels == nil {
			// Labels omitted: keep those an admin or the Node controller
			// gave the host (an agent in Kubernetes does not know them).
			labels = old.Labels
		}
		// A node may register itself, but moving a registered host between
		// groups (new labels) or addresses is an admin's decision. A node
		// may fill in the address of a host registered without one: the
		// Node controller registers a Node before its kubelet reports its
		// InternalIP, and the agent may come in between.
		ip6 := b.IP6
		if registered && !ip6.IsValid() {
			ip6 = old.IP6 // omitted: kept
		}
		if registered && id.Role != RoleAdmin &&
			(!maps.Equal(old.Labels, labels) || (ip.IsValid() && old.IP.IsValid() && old.IP != ip.Unmap()) ||
				(old.IP6.IsValid() && old.IP6 != ip6)) {
			return nil, &apiError{http.StatusForbidden, "labels", fmt.Sprintf("host %s is registered; only an admin may change its labels or IP", name)}
		}
		if ip6.IsValid() && (!ip6.Is6() || ip6.Is4In6()) {
			return nil, &apiError{http.StatusBadRequest, "ip6", fmt.Sprintf("ip6 %s: want an IPv6 address (the agent's --ip6)", ip6)}
		}
		return al.AddHost(ipam.HostSpec{Name: name, IP: ip.Unmap(), IP6: ip6, Labels: labels})
	})
	if err != nil {
		return err
	}
	res := api.HostResult{Changes: changes}
	if err := a.state.View(r.Context(), func(al *ipam.Allocator, _ *topologyRecord) error {
		res.Host, _ = al.Host(name)
		return nil
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (a *API) removeHost(w http.ResponseWriter, r *http.Request, _ Identity) error {
	changes, err := a.state.RemoveHost(r.Context(), r.PathValue("host"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.Changes{Changes: changes})
	return nil
}

func (a *API) listHosts(w http.ResponseWriter, r *http.Request, _ Identity) error {
	return a.state.View(r.Context(), func(al *ipam.Allocator, _ *topologyRecord) error {
		hosts := []ipam.HostInfo{}
		if al != nil {
			hosts = al.Hosts()
		}
		writeJSON(w, http.StatusOK, api.HostList{Hosts: hosts})
		return nil
	})
}

func (a *API) claimBlock(w http.ResponseWriter, r *http.Request, id Identity) error {
	host := r.PathValue("host")
	if err := mayActOnHost(id, host); err != nil {
		return &apiError{http.StatusForbidden, "", err.Error()}
	}
	var b api.BlockRequest
	if err := decode(r, maxBody, &b); err != nil {
		return err
	}
	if b.Network == "" {
		return &apiError{http.StatusBadRequest, "network", "network is required"}
	}
	var p netip.Prefix
	start, known := time.Now(), false
	changes, err := a.state.Do(r.Context(), func(al *ipam.Allocator) ([]ipam.Change, error) {
		var ch []ipam.Change
		var err error
		known = al.Topology().Network(b.Network) != nil
		p, ch, err = al.ClaimBlock(host, b.Network)
		return ch, err
	})
	a.met.observeClaim(b.Network, known, start, err)
	if err != nil {
		a.failed(host, b.Network, err)
		return err
	}
	writeJSON(w, http.StatusCreated, api.BlockClaim{Block: p, Changes: changes})
	return nil
}

func (a *API) releaseBlock(w http.ResponseWriter, r *http.Request, id Identity) error {
	host := r.PathValue("host")
	if err := mayActOnHost(id, host); err != nil {
		return &apiError{http.StatusForbidden, "", err.Error()}
	}
	addr, err := netip.ParseAddr(r.PathValue("addr"))
	bits, berr := strconv.Atoi(r.PathValue("bits"))
	if err != nil || berr != nil {
		return &apiError{http.StatusBadRequest, "block", "the block is named by its address and prefix length: /v1/hosts/HOST/blocks/NETWORK/10.0.0.16/28"}
	}
	p := netip.PrefixFrom(addr, bits)
	if !p.IsValid() || p.Masked() != p {
		return &apiError{http.StatusBadRequest, "block", fmt.Sprintf("%s/%d is not a block prefix", addr, bits)}
	}
	// The server counts only its own endpoints: an agent's block is empty
	// to it even with pods in it. Refuse while the agent reports any.
	network := r.PathValue("network")
	inUse := 0
	if err := a.state.ViewCounted(r.Context(), func(al *ipam.Allocator, _ *topologyRecord, _ ipam.AuditOptions) error {
		if al != nil {
			if b, ok := al.Block(network, p); ok && b.Host == host {
				inUse = b.Used
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if inUse > 0 {
		return &apiError{http.StatusConflict, "block", fmt.Sprintf("block %s of host %s holds %d addresses in use (as its agent reports them); release them first", p, host, inUse)}
	}
	changes, err := a.state.Do(r.Context(), func(al *ipam.Allocator) ([]ipam.Change, error) {
		return al.ReleaseBlock(host, network, p)
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.Changes{Changes: changes})
	return nil
}

func (a *API) listBlocks(w http.ResponseWriter, r *http.Request, _ Identity) error {
	network := r.URL.Query().Get("network")
	return a.state.ViewCounted(r.Context(), func(al *ipam.Allocator, _ *topologyRecord, _ ipam.AuditOptions) error {
		if network != "" && (al == nil || al.Topology().Network(network) == nil) {
			return &apiError{http.StatusNotFound, "network", fmt.Sprintf("the topology has no network %q; GET /v1/topology lists its networks", network)}
		}
		out := map[string][]ipam.BlockInfo{}
		if al != nil {
			for _, n := range al.Topology().Networks {
				if network == "" || network == n.Name {
					out[n.Name] = al.Blocks(n.Name)
				}
			}
		}
		writeJSON(w, http.StatusOK, api.BlockList{Blocks: out})
		return nil
	})
}

func (a *API) allocateEndpoint(w http.ResponseWriter, r *http.Request, id Identity) error {
	var b api.EndpointRequest
	if err := decode(r, maxBody, &b); err != nil {
		return err
	}
	switch {
	case b.ID == "":
		return &apiError{http.StatusBadRequest, "id", "id is required: the endpoint's stable name (e.g. the VM port ID)"}
	case b.Host == "":
		return &apiError{http.StatusBadRequest, "host", "host is required"}
	}
	if err := validName("id", b.ID); err != nil {
		return err
	}
	if err := validName("host", b.Host); err != nil {
		return err
	}
	if err := mayActOnHost(id, b.Host); err != nil {
		return &apiError{http.StatusForbidden, "", err.Error()}
	}
	req := ipam.EndpointRequest{ID: b.ID, Host: b.Host, Network: b.Network, Namespace: b.Namespace, Addr: b.Addr, Since: time.Now().UTC().Truncate(time.Second)}
	var ep ipam.Endpoint
	changes, err := a.state.Do(r.Context(), func(al *ipam.Allocator) ([]ipam.Change, error) {
		var ch []ipam.Change
		var err error
		ep, ch, err = al.AllocateEndpoint(req)
		return ch, err
	})
	if err != nil {
		a.failed(b.Host, b.Network, err)
		return err
	}
	if !ep.Addr.IsValid() { // idempotent repeat: nothing changed
		if err := a.state.View(r.Context(), func(al *ipam.Allocator, _ *topologyRecord) error {
			ep, _ = al.Endpoint(b.ID)
			return nil
		}); err != nil {
			return err
		}
	}
	res := api.EndpointResult{Endpoint: ep, Changes: changes, Created: len(changes) > 0}
	status := http.StatusCreated
	if !res.Created {
		status = http.StatusOK
	}
	writeJSON(w, status, res)
	return nil
}

func (a *API) releaseEndpoint(w http.ResponseWriter, r *http.Request, id Identity) error {
	epID := r.PathValue("id")
	var owner string
	if err := a.state.View(r.Context(), func(al *ipam.Allocator, _ *topologyRecord) error {
		if al != nil {
			if e, ok := al.Endpoint(epID); ok {
				owner = e.Host
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if owner != "" {
		if err := mayActOnHost(id, owner); err != nil {
			return &apiError{http.StatusForbidden, "", err.Error()}
		}
	}
	changes, err := a.state.Do(r.Context(), func(al *ipam.Allocator) ([]ipam.Change, error) {
		if e, ok := al.Endpoint(epID); ok {
			if err := mayActOnHost(id, e.Host); err != nil {
				return nil, &apiError{http.StatusForbidden, "", err.Error()}
			}
		}
		return al.ReleaseEndpoint(epID)
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.Changes{Changes: changes})
	return nil
}

func (a *API) listEndpoints(w http.ResponseWriter, r *http.Request, _ Identity) error {
	return a.state.View(r.Context(), func(al *ipam.Allocator, _ *topologyRecord) error {
		eps := []ipam.Endpoint{}
		if al != nil {
			eps = al.Endpoints()
		}
		writeJSON(w, http.StatusOK, api.EndpointList{Endpoints: eps})
		return nil
	})
}
