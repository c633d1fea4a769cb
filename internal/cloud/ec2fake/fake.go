// Package ec2fake is a local stand-in for the Amazon EC2 API, speaking its
// query protocol (form-encoded Action=…, XML answers with EC2's element
// names, errors as <Response><Errors><Error><Code>…) for the calls Terrane's
// VPC reconciler makes: DescribeRouteTables, CreateRoute, ReplaceRoute,
// DeleteRoute and ModifyInstanceAttribute (SourceDestCheck).
//
// It keeps route tables and instance attributes in memory, enforces a route
// limit per table (RouteLimitExceeded), can be told to throttle
// (RequestLimitExceeded) or fail calls, counts calls, and reports every
// change it applies to a hook — so tests, the lab and benchmarks can watch a
// table without polling. A *Fake is an http.Handler: serve it with
// net/http/httptest or Start.
package ec2fake

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/netx"
)

// DefaultRouteLimit is AWS's default "routes per route table" quota.
const DefaultRouteLimit = 50

// Route origins and states as EC2 spells them.
const (
	OriginCreateRouteTable = "CreateRouteTable" // the VPC's local route
	OriginCreateRoute      = "CreateRoute"
	StateActive            = "active"
	StateBlackhole         = "blackhole"
)

// Route is one entry of a route table.
type Route struct {
	Dst netip.Prefix
	// Instance is the target instance; empty for other targets.
	Instance string
	// Gateway is a gateway target: "local" for the VPC's own route, or an
	// igw-/nat- identifier added with AddRoute.
	Gateway string
	Origin  string
	State   string
}

// ChangeKind says what a Change did.
type ChangeKind string

// Kinds of changes.
const (
	RouteCreated    ChangeKind = "CreateRoute"
	RouteReplaced   ChangeKind = "ReplaceRoute"
	RouteDeleted    ChangeKind = "DeleteRoute"
	AttributeChange ChangeKind = "ModifyInstanceAttribute"
)

// Change is one mutation the fake applied.
type Change struct {
	Kind  ChangeKind
	Table string // route changes
	// Old is the route before (replace, delete), New after (create,
	// replace).
	Old, New Route
	// Instance and SourceDestCheck for attribute changes.
	Instance        string
	SourceDestCheck bool
	// Routes is the table's route count (origin CreateRoute) after the
	// change.
	Routes int
}

// Options configure a Fake.
type Options struct {
	// RouteLimit is the default limit of routes (origin CreateRoute) per
	// table; 0 means DefaultRouteLimit.
	RouteLimit int
	// OnChange, if set, is called after every change, synchronously and in
	// the order the changes were applied, without the fake's lock held (it
	// may call the fake's methods). It must not block for long: the EC2
	// call that made the change is answered after it returns.
	OnChange func(Change)
}

// Fake is an in-memory EC2 endpoint. It is safe for concurrent use.
type Fake struct {
	onChange func(Change)

	mu       sync.Mutex
	limit    int
	tables   map[string]*table
	srcDst   map[string]bool // instance → SourceDestCheck
	calls    map[string]int
	throttle func(action string) bool
	failures []failure
	requests int
	// hookMu serialises hook calls so they arrive in change order.
	hookMu sync.Mutex
}

type table struct {
	vpc    string
	limit  int
	routes map[netip.Prefix]Route
}

type failure struct {
	action, code, msg string
	status            int
}

// New returns an empty fake.
func New(opts Options) *Fake {
	limit := opts.RouteLimit
	if limit <= 0 {
		limit = DefaultRouteLimit
	}
	return &Fake{onChange: opts.OnChange, limit: limit, tables: map[string]*table{}, srcDst: map[string]bool{}, calls: map[string]int{}}
}

// AddRouteTable creates a table (rtb-…) with a local route for each of
// the VPC's CIDRs. Adding an existing table changes nothing.
func (f *Fake) AddRouteTable(id string, vpcCIDRs ...netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.tables[id]; ok {
		return
	}
	t := &table{vpc: "vpc-" + strings.TrimPrefix(id, "rtb-"), limit: f.limit, routes: map[netip.Prefix]Route{}}
	for _, c := range vpcCIDRs {
		c = c.Masked()
		t.routes[c] = Route{Dst: c, Gateway: "local", Origin: OriginCreateRouteTable, State: StateActive}
	}
	f.tables[id] = t
}

// AddRoute puts a route into a table as someone other than Terrane would
// (a NAT gateway, a peering), without calling the hook or counting a call.
// It fails only for an unknown table.
func (f *Fake) AddRoute(id string, r Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tables[id]
	if !ok {
		return fmt.Errorf("no route table %s", id)
	}
	r.Dst = r.Dst.Masked()
	if r.Origin == "" {
		r.Origin = OriginCreateRoute
	}
	if r.State == "" {
		r.State = StateActive
	}
	t.routes[r.Dst] = r
	return nil
}

// SetRouteLimit sets one table's route limit (routes of origin
// CreateRoute).
func (f *Fake) SetRouteLimit(id string, limit int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.tables[id]; ok {
		t.limit = limit
	}
}

// RouteTable returns a table's routes sorted by destination; ok is false
// for an unknown table.
func (f *Fake) RouteTable(id string) (routes []Route, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tables[id]
	if !ok {
		return nil, false
	}
	return t.sorted(), true
}

// RouteTables lists the tables' ids, sorted.
func (f *Fake) RouteTables() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.tables))
}

// SourceDestCheck reports an instance's attribute; known is false for an
// instance no call has named (EC2's default is true).
func (f *Fake) SourceDestCheck(instance string) (value, known bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.srcDst[instance]
	if !ok {
		return true, false
	}
	return v, true
}

// SetSourceDestCheck sets an instance's attribute directly (no hook).
func (f *Fake) SetSourceDestCheck(instance string, v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.srcDst[instance] = v
}

// Terminate marks every route to the instance as a blackhole, as EC2 does
// when an instance ends.
func (f *Fake) Terminate(instance string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.tables {
		for d, r := range t.routes {
			if r.Instance == instance {
				r.State = StateBlackhole
				t.routes[d] = r
			}
		}
	}
}

// Calls returns how many requests of each action the fake answered
// (throttled and failed ones included).
func (f *Fake) Calls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.calls)
}

// ResetCalls zeroes the call counts.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = map[string]int{}
}

// Throttle decides, per request, whether to answer RequestLimitExceeded
// (HTTP 503) instead; nil stops throttling.
func (f *Fake) Throttle(fn func(action string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttle = fn
}

// ThrottleNext throttles the next n requests, whatever their action.
func (f *Fake) ThrottleNext(n int) {
	var mu sync.Mutex
	f.Throttle(func(string) bool {
		mu.Lock()
		defer mu.Unlock()
		if n <= 0 {
			return false
		}
		n--
		return true
	})
}

// FailNext makes the next request of action (any action when empty) fail
// with an error of this code and HTTP status (0: 400).
func (f *Fake) FailNext(action, code, msg string, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if status == 0 {
		status = http.StatusBadRequest
	}
	f.failures = append(f.failures, failure{action: action, code: code, msg: msg, status: status})
}

func (t *table) sorted() []Route {
	out := slices.Collect(maps.Values(t.routes))
	slices.SortFunc(out, func(a, b Route) int { return netx.Less(a.Dst, b.Dst) })
	return out
}

// count is the number of routes the limit applies to.
func (t *table) count() int {
	n := 0
	for _, r := range t.routes {
		if r.Origin == OriginCreateRoute {
			n++
		}
	}
	return n
}

// Server is a Fake listening on a TCP address.
type Server struct {
	*Fake
	// URL is the endpoint to give the SDK: http://host:port.
	URL string
	srv *http.Server
	ln  net.Listener
}

// Start serves f on addr (e.g. 127.0.0.1:0) until Close.
func Start(f *Fake, addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Fake: f, URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}, ln: ln}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops serving.
func (s *Server) Close() error { return s.srv.Close() }
