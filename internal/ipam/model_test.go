package ipam

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// TestModel drives the allocator with random operations on random small
// topologies and checks, after every operation, the brute-force oracle of
// oracle_test.go, a shadow model of the live endpoints, a replica built
// only from the returned changes, and that failures change nothing.
//
// A failure names its seed; -model.seed=N replays just that one, and
// -model.seeds and -model.ops make a longer soak.
func TestModel(t *testing.T) {
	seeds, ops := 200, 150
	if testing.Short() {
		seeds, ops = 40, 100
	}
	if *modelSeeds > 0 {
		seeds = *modelSeeds
	}
	if *modelOps > 0 {
		ops = *modelOps
	}
	first := uint64(0)
	if *modelSeed >= 0 {
		first, seeds = uint64(*modelSeed), 1
	}
	for seed := first; seed < first+uint64(seeds); seed++ {
		runModel(t, seed, ops)
		if t.Failed() {
			return
		}
	}
}

var (
	modelSeed  = flag.Int("model.seed", -1, "run TestModel for this seed only")
	modelSeeds = flag.Int("model.seeds", 0, "number of TestModel seeds (default 200, 40 with -short)")
	modelOps   = flag.Int("model.ops", 0, "operations per TestModel seed (default 150)")
)

// model is one random run: the allocator under test, a replica fed only
// with the changes it returns, and a shadow of the live endpoints.
type model struct {
	t       *testing.T
	seed    uint64
	r       *rand.Rand
	top     *topology.Topology
	spec    string
	opts    Options
	a       *Allocator
	replica *Allocator
	initial view
	live    map[string]Endpoint // shadow: every allocated, unreleased endpoint
	ids     []string            // every ID ever used
	nextID  int
	history []string
	failed  bool
	// log is every change so far: a server restart replays it.
	log []Change
	// agents are the hosts' agents: pods get addresses from their pools.
	agents map[string]*modelAgent
}

// modelAgent is a host's agent as internal/agent drives the per-host
// allocator: a Pool per network over the agent's blocks, and the pods it
// gave addresses to (its node-local state, which survives a restart).
type modelAgent struct {
	pools map[string]*Pool
	pods  map[string]Endpoint
}

func runModel(t *testing.T, seed uint64, ops int) {
	r := rand.New(rand.NewPCG(seed, 0x7e77a1e))
	top, spec := genTopology(r)
	opts := Options{}
	if r.IntN(2) == 0 {
		opts.Mode = Static
	}
	// Budgets a little above the initial floors, so growth runs into them.
	probe, _, err := New(top, opts)
	if err != nil {
		t.Fatalf("seed %d: New: %v\n%s", seed, err, spec)
	}
	for _, n := range top.Networks {
		vpc, bgp := probe.RouteFloors(n.Name)
		if vpc > 0 && r.IntN(4) > 0 {
			opts.Budgets.VPC = max(opts.Budgets.VPC, vpc+r.IntN(3))
		}
		if bgp > 0 && r.IntN(4) > 0 {
			opts.Budgets.BGP = max(opts.Budgets.BGP, bgp+r.IntN(2))
		}
	}
	a, changes, err := New(top, opts)
	if err != nil {
		t.Fatalf("seed %d: New: %v", seed, err)
	}
	m := &model{t: t, seed: seed, r: r, top: top, spec: spec, opts: opts, a: a, replica: emptyAllocator(top, opts), live: map[string]Endpoint{},
		log: slices.Clone(changes), agents: map[string]*modelAgent{}}
	if err := m.replica.Apply(changes); err != nil {
		m.fail("replaying New's changes: %v", err)
	}
	m.initial = snapshot(a)
	m.checkState(m.initial, nil)
	// Start with a few hosts, so that most operations find one.
	for range 3 {
		m.step(0)
	}
	for i := 0; i < ops && !m.failed; i++ {
		if k := r.IntN(140); k < 100 {
			m.step(k)
		} else {
			m.agentStep(k - 100)
		}
	}
}

func (m *model) fail(format string, args ...any) {
	m.t.Helper()
	if m.failed {
		return
	}
	m.failed = true
	hist := m.history
	if len(hist) > 25 {
		hist = hist[len(hist)-25:]
	}
	m.t.Errorf("seed %d (mode %v, budgets %+v): %s\nlast operations:\n  %s\ntopology: %s",
		m.seed, m.opts.Mode, m.opts.Budgets, fmt.Sprintf(format, args...), strings.Join(hist, "\n  "), m.spec)
}

func (m *model) pick(xs []string) string { return xs[m.r.IntN(len(xs))] }

var hostNames = []string{"h0", "h1", "h2", "h3", "h4", "s0", "s1", "s2", "s3"}

func (m *model) networkName() string {
	if m.r.IntN(20) == 0 {
		return "nonet"
	}
	return m.top.Networks[m.r.IntN(len(m.top.Networks))].Name
}

func (m *model) hostName() string {
	hs := m.a.Hosts()
	if len(hs) > 0 && m.r.IntN(10) > 0 {
		return hs[m.r.IntN(len(hs))].Name
	}
	return m.pick(hostNames)
}

func (m *model) labels(name string) map[string]string {
	if h, ok := m.a.Host(name); ok && m.r.IntN(2) == 0 {
		// Relabel: change one label of the current set.
		l := h.Labels
		if l == nil {
			l = map[string]string{}
		}
		i := m.r.IntN(len(labelKeys))
		if m.r.IntN(4) == 0 {
			delete(l, labelKeys[i])
		} else {
			l[labelKeys[i]] = m.pick(labelValues[i])
		}
		return l
	}
	l := map[string]string{}
	if m.r.IntN(2) == 0 {
		// Labels some leaf of every tree admits (or nearly: trees may
		// want contradicting labels).
		for _, tr := range m.top.Trees {
			leaf := tr.Leaves[m.r.IntN(len(tr.Leaves))]
			for g := leaf; g != nil; g = g.Parent {
				sl, _ := g.Selector.Labels()
				maps.Copy(l, sl)
			}
		}
		return l
	}
	for i, k := range labelKeys {
		if m.r.IntN(5) > 0 {
			l[k] = m.pick(slices.Concat(labelValues[i], []string{"z"})) // "z": admitted by few
		}
	}
	if m.r.IntN(4) == 0 {
		l["gpu"] = "true"
	}
	return l
}

// randAddr picks an address worth asking for: anywhere in a network, in
// the host's group, in a reservation, or one already handed out.
func (m *model) randAddr(host, network string) netip.Addr {
	n := m.top.Network(network)
	if n == nil {
		n = m.top.Networks[m.r.IntN(len(m.top.Networks))]
	}
	within := []netip.Prefix{n.CIDR}
	switch m.r.IntN(4) {
	case 0:
		if h, ok := m.a.Host(host); ok {
			if ps := m.a.GroupPrefixes(n.Name)[h.Groups[n.Name]]; len(ps) > 0 {
				within = ps
			}
		}
	case 1:
		if rs := reservedIn(m.top, n); len(rs) > 0 {
			within = rs
		}
	case 2:
		if eps := m.a.Endpoints(); len(eps) > 0 {
			return eps[m.r.IntN(len(eps))].Addr
		}
	}
	p := within[m.r.IntN(len(within))]
	return netx.AddOffset(p.Addr(), m.r.Uint64N(min(netx.Size(p), 1<<20)), 0)
}

// step runs one random operation; k (0–99) picks which.
func (m *model) step(k int) {
	var (
		desc    string
		changes []Change
		err     error
	)
	before := snapshot(m.a)
	var post func(after view) // operation-specific checks
	switch {
	case k < 12:
		name := m.pick(hostNames)
		spec := HostSpec{Name: name, Labels: m.labels(name)}
		if m.r.IntN(6) == 0 {
			spec.IP = netip.AddrFrom4([4]byte{192, 168, 0, byte(1 + m.r.IntN(5))})
		}
		desc = fmt.Sprintf("AddHost(%s, %v, %v)", name, spec.IP, spec.Labels)
		changes, err = m.a.AddHost(spec)
		post = func(after view) { m.checkAddHost(spec, before, after, err) }
	case k < 15:
		name := m.hostName()
		desc = fmt.Sprintf("RemoveHost(%s)", name)
		changes, err = m.a.RemoveHost(name)
		post = func(after view) {
			_, known := m.a.Host(name)
			if err == nil {
				for id, e := range m.live {
					if e.Host == name {
						delete(m.live, id)
					}
				}
				delete(m.agents, name) // the host is gone, with its pods
			}
			if known || (err == nil) != hostIn(before, name) {
				m.fail("RemoveHost(%s): err %v, known before %v, after %v", name, err, hostIn(before, name), known)
			}
		}
	case k < 28:
		host, network := m.hostName(), m.networkName()
		desc = fmt.Sprintf("ClaimBlock(%s, %s)", host, network)
		var p netip.Prefix
		p, changes, err = m.a.ClaimBlock(host, network)
		post = func(after view) {
			if err != nil {
				m.checkExhausted(host, network, "", false, before, err)
				return
			}
			b, ok := blockIn(after, network, p)
			if !ok || b.Host != host || b.Used != 0 || b.Group != hostGroup(after, host, network) || len(changes) == 0 || changes[len(changes)-1].Kind != BlockClaimed {
				m.fail("ClaimBlock returned %s: block %+v (%v), changes %v", p, b, ok, changes)
			}
		}
	case k < 34:
		host, network := m.hostName(), m.networkName()
		p := pfx("10.255.255.0/30")
		if bs := before.Nets[network].Blocks; len(bs) > 0 && m.r.IntN(8) > 0 {
			b := bs[m.r.IntN(len(bs))]
			p = b.Prefix
			if m.r.IntN(3) > 0 {
				host = b.Host
			}
			// An agent releases only blocks it has emptied (and the server
			// refuses to release an agent block the agent reported in use).
			if host == b.Host && b.Issuer == IssuerAgent && !m.agentEmpty(b.Host, network, p) {
				host = "intruder"
			}
		}
		desc = fmt.Sprintf("ReleaseBlock(%s, %s, %s)", host, network, p)
		changes, err = m.a.ReleaseBlock(host, network, p)
		post = func(after view) {
			b, ok := blockIn(before, network, p)
			want := ok && b.Host == host && b.Used == 0
			if (err == nil) != want {
				m.fail("ReleaseBlock: err %v, block before %+v (%v)", err, b, ok)
			}
			if ok && b.Host != host && !errors.Is(err, ErrInvalid) && hostIn(before, host) {
				m.fail("invariant 5: ReleaseBlock by non-owner %s of %s's block: err %v", host, b.Host, err)
			}
		}
	case k < 86:
		req := m.endpointRequest()
		desc = fmt.Sprintf("AllocateEndpoint(%+v)", req)
		var ep Endpoint
		ep, changes, err = m.a.AllocateEndpoint(req)
		post = func(after view) { m.checkAllocate(req, ep, changes, before, err) }
	default:
		id := "unknown"
		if len(m.ids) > 0 && m.r.IntN(10) > 0 {
			id = m.ids[m.r.IntN(len(m.ids))]
		}
		desc = fmt.Sprintf("ReleaseEndpoint(%s)", id)
		changes, err = m.a.ReleaseEndpoint(id)
		post = func(after view) { m.checkReleaseEndpoint(id, before, after, err) }
	}
	m.history = append(m.history, fmt.Sprintf("%s -> %v, %v", desc, changes, err))
	m.log = append(m.log, changes...)
	after := snapshot(m.a)
	if err != nil {
		m.checkError(desc, err)
		// (f) a failed operation changes nothing.
		if len(changes) != 0 {
			m.fail("%s failed (%v) but returned changes %v", desc, err, changes)
		}
		if d := diffViews(before, after); d != "" {
			m.fail("%s failed (%v) and changed the state (-before +after):\n%s", desc, err, d)
		}
	}
	post(after)
	m.checkState(after, changes)
	m.checkBudgets(before, after)
}

func (m *model) endpointRequest() EndpointRequest {
	req := EndpointRequest{Host: m.hostName(), Namespace: m.pick(namespaces)}
	if len(m.ids) > 0 && m.r.IntN(4) == 0 {
		req.ID = m.ids[m.r.IntN(len(m.ids))]
		if e, ok := m.live[req.ID]; ok && m.r.IntN(3) > 0 {
			// (g) the same request again.
			req.Host, req.Namespace = e.Host, e.Namespace
		}
	} else {
		req.ID = fmt.Sprintf("e%d", m.nextID)
		m.nextID++
		m.ids = append(m.ids, req.ID)
	}
	if m.r.IntN(3) == 0 {
		req.Network = m.networkName()
	}
	if m.r.IntN(4) == 0 {
		req.Addr = m.randAddr(req.Host, req.Network)
	}
	return req
}

// checkError: every error wraps a sentinel callers can branch on, and none
// is an internal error.
func (m *model) checkError(desc string, err error) {
	for _, s := range []error{ErrExhausted, ErrRouteBudget, ErrNoGroup, ErrNotFound, ErrInvalid, ErrConflict} {
		if errors.Is(err, s) {
			if strings.Contains(err.Error(), "internal error") {
				m.fail("%s: internal error: %v", desc, err)
			}
			return
		}
	}
	m.fail("%s: error wraps no sentinel: %v", desc, err)
}

// checkState runs the oracle, the static-plan check, the route floors, the
// shadow model and the replica.
func (m *model) checkState(after view, changes []Change) {
	m.t.Helper()
	if bad := violations(m.top, after); len(bad) > 0 {
		m.fail("invariants broken:\n  %s", strings.Join(bad, "\n  "))
	}
	// The free-space cache must equal free space computed from scratch.
	for name, ns := range m.a.s.nets {
		for g, cached := range ns.free {
			var blocks []netip.Prefix
			for p, b := range ns.blocks {
				if b.group == g {
					blocks = append(blocks, p)
				}
			}
			if want := netx.Subtract(ns.owned[g], blocks...); !slices.Equal([]netip.Prefix(cached), want) {
				m.fail("network %s group %s: cached free space %v, computed %v", name, g.Path, cached, want)
			}
		}
	}
	// Check must agree with the oracle: a state the oracle accepts has no
	// findings.
	if f := m.a.Check(); len(f) > 0 {
		m.fail("Check reports findings on a valid state: %+v", f)
	}
	if m.opts.Mode == Static {
		for name, nv := range after.Nets {
			if !maps.EqualFunc(m.initial.Nets[name].Prefixes, nv.Prefixes, slices.Equal) {
				m.fail("static mode: group prefixes of %s changed from %v to %v", name, m.initial.Nets[name].Prefixes, nv.Prefixes)
			}
		}
	}
	for _, n := range m.top.Networks {
		vpc, bgp := viewRouteFloors(n, after.Nets[n.Name])
		if v2, b2 := m.a.RouteFloors(n.Name); v2 != vpc || b2 != bgp {
			m.fail("RouteFloors(%s) = %d, %d; the group prefixes say %d, %d", n.Name, v2, b2, vpc, bgp)
		}
	}
	// The shadow: every live endpoint is there with its address, and
	// nothing else is.
	got := map[string]Endpoint{}
	for _, e := range after.Endpoints {
		got[e.ID] = e
	}
	if !maps.Equal(m.live, got) {
		m.fail("endpoints differ from the shadow model (-shadow +allocator):\n%s", cmp.Diff(m.live, got, cmpOpts...))
	}
	// (e) the changes are complete: the replica, fed only with them,
	// matches. Now and then also check that a change list with a bad
	// change at its end is refused whole (exercising every inverse).
	if len(changes) > 0 && m.r.IntN(5) == 0 {
		rb := snapshot(m.replica)
		bad := append(slices.Clone(changes), Change{Kind: "bogus"})
		if err := m.replica.Apply(bad); err == nil {
			m.fail("Apply of a list ending in a bogus change succeeded")
		}
		if d := diffViews(rb, snapshot(m.replica)); d != "" {
			m.fail("failed Apply changed the replica (-before +after):\n%s", d)
		}
	}
	if err := m.replica.Apply(changes); err != nil {
		m.fail("replaying %v on the replica: %v", changes, err)
	}
	if d := diffViews(after, snapshot(m.replica)); d != "" {
		m.fail("replica built from the changes differs (-allocator +replica):\n%s", d)
	}
}

// checkBudgets: a route floor only rises while it stays within its budget.
func (m *model) checkBudgets(before, after view) {
	for _, n := range m.top.Networks {
		v0, b0 := viewRouteFloors(n, before.Nets[n.Name])
		v1, b1 := viewRouteFloors(n, after.Nets[n.Name])
		if b := m.opts.Budgets.VPC; b > 0 && v1 > b && v1 > v0 {
			m.fail("vpc routes of %s rose from %d to %d, past the budget %d", n.Name, v0, v1, b)
		}
		if b := m.opts.Budgets.BGP; b > 0 && b1 > b && b1 > b0 {
			m.fail("bgp routes of %s rose from %d to %d, past the budget %d", n.Name, b0, b1, b)
		}
	}
}

func (m *model) checkAddHost(spec HostSpec, before, after view, err error) {
	placeable, ipOK := true, true
	for _, tr := range m.top.Trees {
		if _, sh, ok := tr.StaticHost(spec.Name); ok {
			ipOK = ipOK && (!spec.IP.IsValid() || spec.IP == sh.IP)
		} else if len(bestLeaves(tr, spec.Labels)) == 0 {
			placeable = false
		}
	}
	switch {
	case err == nil && (!placeable || !ipOK):
		m.fail("AddHost succeeded but placeable=%v ipOK=%v", placeable, ipOK)
	case err != nil && placeable && ipOK:
		m.fail("AddHost of a placeable host failed: %v", err)
	case errors.Is(err, ErrNoGroup) && (placeable || !strings.Contains(err.Error(), spec.Name)):
		m.fail("AddHost: ErrNoGroup for a placeable host or without its name: %v", err)
	}
	if err != nil {
		return
	}
	h, _ := hostOf(after, spec.Name)
	old, existed := hostOf(before, spec.Name)
	// Ties go to the leaf with fewest hosts, then file order; a host
	// keeps its leaf among equals.
	for _, tr := range m.top.Trees {
		if _, _, ok := tr.StaticHost(spec.Name); ok {
			continue
		}
		net0 := tr.Networks[0].Name
		best := bestLeaves(tr, spec.Labels)
		got := tr.Group(h.Groups[net0])
		if existed && slices.ContainsFunc(best, func(g *topology.Group) bool { return g.Path == old.Groups[net0] }) {
			if got.Path != old.Groups[net0] {
				m.fail("relabelled host %s moved from %s to %s among equals", spec.Name, old.Groups[net0], got.Path)
			}
			continue
		}
		count := func(g *topology.Group) int {
			n := 0
			for _, o := range before.Hosts {
				if o.Groups[net0] == g.Path {
					n++
				}
			}
			return n
		}
		for _, g := range best {
			if g == got {
				break
			}
			if count(g) <= count(got) {
				m.fail("host %s placed in %s (%d hosts) though %s comes first with %d", spec.Name, got.Path, count(got), g.Path, count(g))
			}
		}
	}
	// Blocks the host held in groups it left: the non-empty ones stay,
	// the empty ones go.
	for _, n := range m.top.Networks {
		for _, b := range before.Nets[n.Name].Blocks {
			if b.Host != spec.Name {
				continue
			}
			_, kept := blockIn(after, n.Name, b.Prefix)
			if b.Used > 0 && !kept {
				m.fail("relabel released non-empty block %s", b.Prefix)
			}
			if b.Issuer == IssuerServer && b.Used == 0 && b.Group != h.Groups[n.Name] && kept {
				m.fail("relabel kept empty server block %s of the old group %s", b.Prefix, b.Group)
			}
			if b.Issuer == IssuerAgent && !kept {
				m.fail("relabel released agent block %s (the agent drains it)", b.Prefix)
			}
		}
	}
}

func (m *model) checkAllocate(req EndpointRequest, ep Endpoint, changes []Change, before view, err error) {
	prev, wasLive := m.live[req.ID]
	if err != nil {
		if wasLive && req.Host == prev.Host && req.Network == "" && !req.Addr.IsValid() {
			m.fail("(g) re-allocating live endpoint %s failed: %v", req.ID, err)
		}
		if !req.Addr.IsValid() {
			m.checkExhausted(req.Host, req.Network, req.Namespace, true, before, err)
		}
		return
	}
	if wasLive {
		if req.Host != prev.Host || (req.Network != "" && req.Network != prev.Network) || (req.Addr.IsValid() && req.Addr != prev.Addr) {
			m.fail("endpoint %s lives at %+v, yet %+v succeeded; want ErrInvalid", req.ID, prev, req)
		}
		if prev != ep || len(changes) != 0 {
			m.fail("(g) re-allocating %s gave %+v (had %+v) and changes %v", req.ID, ep, prev, changes)
		}
		return
	}
	m.live[req.ID] = ep
	if ep.ID != req.ID || ep.Host != req.Host || ep.Namespace != req.Namespace {
		m.fail("endpoint %+v does not answer %+v", ep, req)
	}
	if req.Network != "" && ep.Network != req.Network {
		m.fail("endpoint in %s, %s requested", ep.Network, req.Network)
	}
	if req.Network == "" && !req.Addr.IsValid() && m.opts.Budgets == (Budgets{}) {
		// Selection: the namespace's default, then the first allowed
		// network with room; every network passed over is full.
		var order []*topology.Network
		for _, def := range []bool{true, false} {
			for _, n := range m.top.Networks {
				if n.Default == def && n.Allows(req.Namespace) {
					order = append(order, n)
				}
			}
		}
		for _, n := range order {
			if n.Name == ep.Network {
				break
			}
			m.checkExhausted(req.Host, n.Name, req.Namespace, true, before, fmt.Errorf("%w: passed over for %s", ErrExhausted, ep.Network))
		}
	}
	if req.Addr.IsValid() && ep.Addr != req.Addr {
		m.fail("endpoint at %s, %s requested", ep.Addr, req.Addr)
	}
	if n := len(changes); n == 0 || changes[n-1].Kind != EndpointAdded || changes[n-1].Addr != ep.Addr || changes[n-1].Endpoint != req.ID {
		m.fail("allocation changes %v do not end with the endpoint", changes)
	}
	// (g) asking again returns the same endpoint and changes nothing.
	again, ch, err := m.a.AllocateEndpoint(req)
	if err != nil || len(ch) != 0 {
		m.fail("(g) repeated AllocateEndpoint: %v, changes %v", err, ch)
	}
	if again != ep {
		m.fail("(g) repeated AllocateEndpoint gave %+v, first %+v", again, ep)
	}
}

// checkExhausted: ErrExhausted (with no budget refusal) means what it says.
// Static: the host's group has no free block. Elastic: growth may take any
// free space of the network, so the whole network has no free block.
func (m *model) checkExhausted(host, network, namespace string, allocating bool, before view, err error) {
	if !errors.Is(err, ErrExhausted) || errors.Is(err, ErrRouteBudget) {
		return
	}
	nets := []string{network}
	if network == "" {
		nets = nil
		for _, n := range m.top.Networks {
			if n.Allows(namespace) {
				nets = append(nets, n.Name)
			}
		}
	}
	h, _ := hostOf(before, host)
	for _, name := range nets {
		n := m.top.Network(name)
		nv := before.Nets[name]
		if allocating {
			for _, b := range nv.Blocks {
				if b.Host == host && b.Issuer == IssuerServer && b.Group == h.Groups[name] && uint64(b.Used) < netx.Size(b.Prefix) {
					m.fail("ErrExhausted in %s though %s's block %s has room (%d used)", name, host, b.Prefix, b.Used)
				}
			}
		}
		// Where growth may look: the whole network, or inside the nearest
		// pinned group (pinned groups never grow; the allocator holds a
		// group to its pin in every network of its tree), or the leaf
		// itself in static mode.
		within := []netip.Prefix{n.CIDR}
		for g := n.Tree.Group(h.Groups[name]); g != nil; g = g.Parent {
			if m.opts.Mode == Static || g.Pinned.IsValid() {
				within = nv.Prefixes[g.Path]
				break
			}
		}
		if free := freeSlots(m.top, n, nv.Blocks, within); len(free) > 0 {
			m.fail("ErrExhausted in %s (%v mode) though blocks %v are free: %v", name, m.opts.Mode, free[:min(len(free), 4)], err)
		}
	}
}

// checkReleaseEndpoint checks the block hysteresis: the emptied block goes
// unless it is the host's last empty block in its (current) group.
func (m *model) checkReleaseEndpoint(id string, before, after view, err error) {
	e, wasLive := m.live[id]
	if err != nil {
		m.fail("ReleaseEndpoint(%s): %v", id, err)
		return
	}
	delete(m.live, id)
	if !wasLive {
		return
	}
	b, _ := blockIn(before, e.Network, e.Block)
	if b.Used > 1 {
		if nb, ok := blockIn(after, e.Network, e.Block); !ok || nb.Used != b.Used-1 {
			m.fail("block %s went from %d used to %+v (%v)", e.Block, b.Used, nb, ok)
		}
		return
	}
	leaf := hostGroup(before, e.Host, e.Network)
	otherEmpty := false
	for _, o := range before.Nets[e.Network].Blocks {
		if o.Host == e.Host && o.Issuer == IssuerServer && o.Prefix != e.Block && o.Used == 0 && o.Group == b.Group {
			otherEmpty = true
		}
	}
	wantRelease := b.Group != leaf || otherEmpty
	if _, kept := blockIn(after, e.Network, e.Block); kept == wantRelease {
		m.fail("emptied block %s (group %s, host in %s, another empty: %v): kept=%v", e.Block, b.Group, leaf, otherEmpty, kept)
	}
}

func hostOf(v view, name string) (HostInfo, bool) {
	i := slices.IndexFunc(v.Hosts, func(h HostInfo) bool { return h.Name == name })
	if i < 0 {
		return HostInfo{}, false
	}
	return v.Hosts[i], true
}

func hostIn(v view, name string) bool { _, ok := hostOf(v, name); return ok }

func hostGroup(v view, host, network string) string {
	h, _ := hostOf(v, host)
	return h.Groups[network]
}

func blockIn(v view, network string, p netip.Prefix) (BlockInfo, bool) {
	for _, b := range v.Nets[network].Blocks {
		if b.Prefix == p {
			return b, true
		}
	}
	return BlockInfo{}, false
}
