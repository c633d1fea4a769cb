// Package agent is Terrane's node agent: it registers its host with the
// control plane, claims address blocks ahead of demand, gives pods addresses
// from them with no control-plane write on the hot path (node-local state
// only), serves the CNI plugin over a unix socket, and keeps the host's
// routing table equal to what the routing core computes from the cluster
// state it follows.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/topology"
)

// Server is the part of the control API the agent uses (*client.Client).
type Server interface {
	RegisterHost(ctx context.Context, name string, req api.HostRequest) (*api.HostResult, error)
	ClaimBlock(ctx context.Context, host, network string) (*api.BlockClaim, error)
	ReleaseBlock(ctx context.Context, host, network string, block netip.Prefix) ([]ipam.Change, error)
	// SnapshotOf reads the cluster state with the host's VM ports.
	SnapshotOf(ctx context.Context, host string, after int64, wait time.Duration) (*api.Snapshot, error)
	Heartbeat(ctx context.Context, host string) (*api.HeartbeatResult, error)
	ReportAddresses(ctx context.Context, host string, rep api.AddressReport) (*api.AddressReportResult, error)
}

// HostOps is what the agent changes on its host besides routes
// (*linux.Host).
type HostOps interface {
	EnsureRule(family, table, priority int) error
	LinkExists(name string) (bool, error)
	DeleteLink(name string) error
	InterfaceOf(addr netip.Addr) (string, error)
	SetSysctl(key, value string) error
	// PrepareEndpointLink sets what routing through a pod's or a VM
	// port's host-side device needs: the settings of
	// cniapi.HostSideSysctls (linux.Host: through rtnetlink, not /proc/sys).
	PrepareEndpointLink(name string) error
	// SetGSOMaxSize sets a link's GSO/GRO maximums (BIG TCP), capped at
	// what the device takes, and returns the size applied and undo, which
	// puts back what the link had (nil: nothing to put back).
	SetGSOMaxSize(name string, size int) (applied int, undo func() error, err error)
}

// Config is what an agent runs with.
type Config struct {
	Host string
	IP   netip.Addr
	// IP6 is the host's IPv6 address beside an IPv4 IP (a dual-stack
	// underlay): the host registers it, and its L2 peers route IPv6 blocks
	// via it.
	IP6    netip.Addr
	Labels map[string]string

	Server    Server
	Dataplane dataplane.Dataplane
	HostOps   HostOps
	// State is the node-local store (bolt in StateDir).
	State store.Store
	// Table is the routing table the dataplane owns; RulePriority the
	// policy rule that consults it.
	Table, RulePriority int
	// QueueDir holds releases the plugin queued while the agent was down.
	QueueDir string
	// ClaimAhead is how many free addresses each network keeps on the host
	// before a new block is claimed in the background; 0: a quarter of a
	// block (at least 1).
	ClaimAhead int
	// GSOMaxSize, when non-zero, turns BIG TCP on: the uplink and every
	// pod's veth pair get this GSO/GRO maximum (bytes, above 64 KiB),
	// capped at the uplink's tso_max_size. 0 leaves the kernel's 64 KiB.
	// The uplink's sizes are put back when Run returns.
	GSOMaxSize int
	// BigTCPBestEffort: where the kernel or the uplink refuses GSOMaxSize,
	// the agent logs why and runs at 64 KiB instead of failing to start
	// (BIG TCP as a default rather than asked for).
	BigTCPBestEffort bool
	// SetPodGSOMaxSize gives both ends of an existing pod's pair a GSO
	// size (linux.SetPodGSOMaxSize): with GSOMaxSize, the pods that were
	// wired before the agent started get it too. nil: they keep theirs.
	SetPodGSOMaxSize func(hostVeth, netns, ifName string, size int) error
	// NetnsExists reports whether a pod's network namespace still exists
	// (nil: a stat of the path).
	NetnsExists func(path string) bool
	// Poll is the long-poll wait on the server (0: 25 s); Resync how often
	// queued releases and dead pods are looked for (0: 5 s).
	Poll, Resync time.Duration
	// Heartbeat is how often the agent tells the server it is alive (0:
	// 10 s); the VPC reconciler aims aggregates only at hosts that did.
	Heartbeat time.Duration
	// Report and ReportMax batch the address reports: one is sent once
	// the host's addresses have not changed for Report (0: 1 s), or
	// ReportMax (0: 10 s) after the first change not yet reported, while
	// pods keep coming and going. So the server's counts lag by about a
	// second, and a node writes at most one report per ReportMax under
	// churn.
	Report, ReportMax time.Duration
	// SurplusHold is how long an empty block must have been surplus
	// before it is given back (0: 30 s): a node churning pods keeps its
	// blocks instead of releasing and claiming them again.
	SurplusHold time.Duration
	// BGP are the host's BGP settings besides the topology's (bgp.go).
	BGP BGPOptions
	// FastPath, when set, is kept in line with the local pods and the
	// networks after each route sync (fastpath.go).
	FastPath FastPath
	// Policy and PolicyTable, when both set, enforce the cluster's
	// NetworkPolicies and ClusterNetworkPolicies on this node (policy.go).
	Policy      PolicySource
	PolicyTable PolicyTable
	// PolicyStatusFile, when set, gets a PolicyStatus after each apply.
	PolicyStatusFile string
	Log              *slog.Logger
}

// Agent is a running node agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	local *localState

	mu    sync.Mutex
	ready string // "" when ready; else why not
	topo  *topology.Topology
	text  string
	snap  *api.Snapshot
	self  ipam.HostInfo
	pools map[string]*ipam.Pool
	eps   map[string]*endpoint // by attachment ID
	// claiming marks networks with a background claim in flight.
	claiming map[string]bool
	// surplusSince is when each network's surplus empty blocks became so.
	surplusSince map[string]map[netip.Prefix]time.Time
	// ports are the host's VM ports (vmports.go); rep what the server
	// holds of the host's addresses (report.go).
	ports map[string]*vmPort
	rep   reportState
	// refused are the release requests refused (orphans.go), so each is
	// logged once.
	refused map[ipam.OrphanKey]bool

	syncReq chan chan syncResult
	wg      sync.WaitGroup
	// runCtx is Run's context: background work an ADD starts (a claim
	// ahead) belongs to the agent, not to the request.
	runCtx context.Context

	// gso is the GSO size pods get (GSOMaxSize as the uplink took it; 0:
	// the kernel's default), set before the agent is ready.
	gso int
	// gsoUndo puts back the uplink's GSO/GRO sizes (nil: nothing to undo).
	gsoUndo func() error

	bgp   bgpState  // owned by the sync loop (bgp.go)
	fast  fastState // owned by the sync loop (fastpath.go)
	bgpMu sync.Mutex
	pol   policyState
	met   *agentMetrics
	off   offlineState // guarded by mu (offline.go)
}

type syncResult struct {
	diff dataplane.Diff
	err  error
}

// New checks cfg and loads the node-local state.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	switch {
	case cfg.Host == "":
		return nil, errors.New("agent: the host name is required (--host)")
	case cfg.Server == nil || cfg.Dataplane == nil || cfg.HostOps == nil || cfg.State == nil:
		return nil, errors.New("agent: server, dataplane, host and state are required")
	}
	if err := api.ValidateName("host", cfg.Host); err != nil {
		return nil, fmt.Errorf("agent: --%w", err) // the server would refuse it
	}
	if err := dataplane.ValidateTable(cfg.Table); err != nil {
		return nil, fmt.Errorf("agent: --table: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Poll == 0 {
		cfg.Poll = 25 * time.Second
	}
	if cfg.Resync == 0 {
		cfg.Resync = 5 * time.Second
	}
	if cfg.Report == 0 {
		cfg.Report = time.Second
	}
	if cfg.ReportMax == 0 {
		cfg.ReportMax = 10 * time.Second
	}
	if cfg.SurplusHold == 0 {
		cfg.SurplusHold = 30 * time.Second
	}
	if cfg.NetnsExists == nil {
		cfg.NetnsExists = netnsExists
	}
	if cfg.BGP.Reporter == nil {
		cfg.BGP.Reporter, _ = cfg.Server.(BGPReporter)
	}
	if cfg.BGP.ReportInterval == 0 {
		cfg.BGP.ReportInterval = 5 * time.Second
	}
	a := &Agent{cfg: cfg, log: cfg.Log, local: &localState{st: cfg.State}, ready: "starting",
		pools: map[string]*ipam.Pool{}, eps: map[string]*endpoint{}, claiming: map[string]bool{}, surplusSince: map[string]map[netip.Prefix]time.Time{}, ports: map[string]*vmPort{}, rep: reportState{full: true, orphaned: map[string]time.Time{}}, syncReq: make(chan chan syncResult, 64),
		bgp: bgpState{changed: make(chan struct{}, 1)}, pol: policyState{kick: make(chan struct{}, 1)}}
	a.met = newAgentMetrics(a)
	eps, err := a.local.load(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range eps {
		for _, ad := range e.addresses() {
			if err := a.pool(ad.Network).Mark(ad.Addr, ad.Block); err != nil {
				return nil, fmt.Errorf("the agent's state: %s: %w (two records hold one address; remove the state file to start afresh, pods then need re-creating)", e.ID(), err)
			}
		}
		a.eps[e.ID()] = e
	}
	return a, nil
}

func (a *Agent) pool(network string) *ipam.Pool {
	p := a.pools[network]
	if p == nil {
		p = ipam.NewPool()
		a.pools[network] = p
	}
	return p
}

// Run registers the host, reconciles the state kept across a restart,
// claims first blocks, programs routes and follows the server until ctx
// ends. The CNI socket may be served (Serve) before Run has finished
// starting: ADDs wait for readiness.
//
// Run returns at once with the cause when starting fails for a reason
// retrying cannot fix (a flag, the host, the agent's identity); a server
// that does not answer yet is retried.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	a.runCtx = ctx
	a.mu.Unlock()
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.syncLoop(ctx) }()
	go func() { defer a.wg.Done(); a.reportBGP(ctx) }()
	defer a.stopBGP() // after the sync loop has ended: it owns the speaker
	defer a.undoBigTCP()
	defer a.wg.Wait()
	defer cancel() // first: the loops end with Run, also when start fails

	if err := a.start(ctx); err != nil {
		return err
	}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.resyncLoop(ctx) }()
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.heartbeatLoop(ctx) }()
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.reportLoop(ctx) }()
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.portLoop(ctx) }()
	if a.enforcing() {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.policyLoop(ctx) }()
	}
	a.follow(ctx)
	return nil
}

// start does everything before the agent is ready, retrying the server
// until it answers. Errors retrying cannot fix end it: the host's set-up
// (an --ip no interface holds) and the server's refusal of the agent
// itself (see refusedForGood).
func (a *Agent) start(ctx context.Context) error {
	if err := a.prepareHost(); err != nil {
		return fmt.Errorf("prepare the host: %w", err)
	}
	var snap *api.Snapshot
	offline := false // started from the kept snapshot (offline.go)
	for attempt := 0; ; attempt++ {
		err := a.register(ctx)
		if err == nil {
			snap, err = a.cfg.Server.SnapshotOf(ctx, a.cfg.Host, 0, 0)
		}
		callErr := err
		if err == nil {
			err = a.applySnapshot(snap)
		}
		if err == nil {
			break
		}
		if refusedForGood(err) {
			return err
		}
		if callErr != nil && client.Unreachable(callErr) && ctx.Err() == nil {
			kept, ok, kerr := a.startOffline(ctx)
			if kerr != nil {
				a.log.Warn("cannot start from the kept cluster state", "err", kerr)
			}
			if ok {
				snap, offline = kept, true
				break
			}
		}
		a.setNotReady(err.Error())
		a.log.Warn("cannot start yet; retrying", "err", err)
		if !sleep(ctx, retryPause(attempt)) {
			return ctx.Err()
		}
	}
	if !offline {
		a.keepSnapshot(ctx, snap)
	}
	a.reconcile(ctx)
	if !offline { // the kept snapshot's release requests may be stale
		a.releaseOrphans(ctx, snap.Releases)
	}
	a.replayQueue(ctx)
	a.bigTCPExisting()
	for _, n := range a.networks() {
		if offline {
			break // no claim can succeed: follow claims once the server answers
		}
		if err := a.ensureFree(ctx, n, true); err != nil {
			a.log.Warn("no first block yet", "network", n, "err", err)
		}
	}
	// Policy before routes: a pod restored from the node-local state meets
	// its policy before the table routes it again.
	for attempt := 0; a.enforcing(); attempt++ {
		err := a.enforcePolicy()
		if err == nil {
			break
		}
		a.setNotReady("policy: " + err.Error())
		a.log.Warn("policy not enforced yet; retrying", "err", err)
		if !sleep(ctx, retryPause(attempt)) {
			return ctx.Err()
		}
	}
	if _, err := a.syncRoutes(ctx); err != nil {
		a.log.Warn("routes not all programmed", "err", err)
	}
	a.mu.Lock()
	a.ready = ""
	eps := len(a.eps) // ADDs may run from here on
	a.mu.Unlock()
	a.log.Info("agent ready", "networks", a.networks(), "endpoints", eps)
	return nil
}

// refusedForGood reports whether the server refused the agent for a reason
// only a change of its flags or credentials fixes: 401 (unknown
// credentials), 403 (an identity that may not act as this host) or 400
// naming a field of the request (the host name, its IP). A 400 without a
// field (no group admits the labels yet), a conflict (no topology yet) and
// a server that does not answer are retried: an admin or time fixes them.
func refusedForGood(err error) bool {
	var ae *client.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return true
	case http.StatusBadRequest:
		return ae.Field != ""
	}
	return false
}

// bigTCPUplink raises the uplink's GSO/GRO maximums to GSOMaxSize (capped
// at what its device takes); pods get what the uplink took: a pod's GSO
// packet larger than the uplink's limit would be cut up on the way out.
// The uplink's previous sizes are put back when Run returns (undoBigTCP).
// Refused, it fails the start, or with BigTCPBestEffort leaves the uplink
// as it was and runs at 64 KiB.
func (a *Agent) bigTCPUplink(up string) error {
	n, undo, err := a.cfg.HostOps.SetGSOMaxSize(up, a.cfg.GSOMaxSize)
	a.mu.Lock()
	a.gsoUndo = undo
	a.mu.Unlock()
	switch {
	case err != nil && a.cfg.BigTCPBestEffort:
		a.undoBigTCP()
		a.log.Info("BIG TCP off: the uplink refused it (IPv4 BIG TCP needs Linux 6.3 or later); pods run at 64 KiB", "uplink", up, "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("BIG TCP on the uplink %s: %w (turn it off with --big-tcp=false, or lower --big-tcp-size)", up, err)
	}
	a.mu.Lock()
	a.gso = n
	a.mu.Unlock()
	if n <= 65536 {
		a.log.Info("BIG TCP has no effect: the uplink's device takes GSO packets of 64 KiB at most (its tso_max_size)", "uplink", up)
	} else {
		a.log.Info("BIG TCP on", "uplink", up, "gso_max_size", n)
	}
	return nil
}

// undoBigTCP puts back the uplink's GSO/GRO sizes from before the agent
// raised them, after lowering every pod's pair to the kernel's 64 KiB: a
// pod never builds a packet larger than its uplink sends.
func (a *Agent) undoBigTCP() {
	a.mu.Lock()
	undo, raised := a.gsoUndo, a.gso > defaultGSOSize
	a.gsoUndo, a.gso = nil, 0
	a.mu.Unlock()
	if undo == nil {
		return
	}
	if raised {
		a.setPodsGSO(defaultGSOSize)
	}
	if err := undo(); err != nil {
		a.log.Warn("putting back the uplink's GSO sizes", "err", err)
		return
	}
	a.log.Info("BIG TCP undone: the uplink's GSO/GRO sizes are as before")
}

// bigTCPExisting gives the pods wired before the agent started the BIG
// TCP size new ones get (a pod at another size keeps working: the size
// only bounds the packets it builds).
//
// Without BIG TCP (off, or refused) they go to the kernel's 64 KiB: a pod
// wired by an earlier agent with BIG TCP must not build packets larger
// than the uplink sends, which the kernel would cut up in software.
func (a *Agent) bigTCPExisting() {
	a.mu.Lock()
	size := a.gso
	a.mu.Unlock()
	a.setPodsGSO(max(size, defaultGSOSize))
}

// defaultGSOSize is the kernel's GSO/GRO maximum (linux.DefaultGSOSize).
const defaultGSOSize = 65536

// setPodsGSO gives both ends of every pod's pair the GSO/GRO size.
func (a *Agent) setPodsGSO(size int) {
	if a.cfg.SetPodGSOMaxSize == nil {
		return
	}
	a.mu.Lock()
	eps := slices.Collect(maps.Values(a.eps))
	a.mu.Unlock()
	for _, e := range eps {
		if err := a.cfg.SetPodGSOMaxSize(e.HostVeth, e.Netns, e.IfName, size); err != nil {
			a.log.Warn("GSO size of an existing pod", "attachment", e.ID(), "size", size, "err", err)
		}
	}
}

func (a *Agent) setNotReady(reason string) {
	a.mu.Lock()
	a.ready = reason
	a.mu.Unlock()
}

// register adds or updates the host's record.
func (a *Agent) register(ctx context.Context) error {
	res, err := a.cfg.Server.RegisterHost(ctx, a.cfg.Host, api.HostRequest{IP: a.cfg.IP, IP6: a.cfg.IP6, Labels: a.cfg.Labels})
	if err != nil {
		return fmt.Errorf("register host %s: %w", a.cfg.Host, err)
	}
	a.mu.Lock()
	a.self = res.Host
	a.mu.Unlock()
	return nil
}

// prepareHost sets what routing through the host needs: the rule that
// consults Terrane's table, forwarding on the uplink, and the proxy-ARP
// gateway's route.
func (a *Agent) prepareHost() error {
	h := a.cfg.HostOps
	for _, fam := range []int{4, 6} {
		if err := h.EnsureRule(fam, a.cfg.Table, a.cfg.RulePriority); err != nil {
			return fmt.Errorf("policy rule for table %d: %w", a.cfg.Table, err)
		}
	}
	if a.cfg.IP.IsValid() {
		up, err := h.InterfaceOf(a.cfg.IP)
		if err != nil {
			return fmt.Errorf("--ip %s: %w (give the address the host's peers reach it on)", a.cfg.IP, err)
		}
		// Per interface, not net.ipv4.ip_forward: forwarding is decided on
		// the interface a packet comes in on.
		if err := h.SetSysctl("net/ipv4/conf/"+up+"/forwarding", "1"); err != nil {
			return err
		}
		if a.cfg.GSOMaxSize > 0 {
			if err := a.bigTCPUplink(up); err != nil {
				return err
			}
		}
	} else if a.cfg.GSOMaxSize > 0 && !a.cfg.BigTCPBestEffort {
		return errors.New("BIG TCP needs the host's address (--ip): it is set on the uplink that holds it")
	}
	if a.cfg.IP6.IsValid() || a.cfg.IP.Is6() {
		ip6 := a.cfg.IP6
		if !ip6.IsValid() {
			ip6 = a.cfg.IP
		}
		if _, err := h.InterfaceOf(ip6); err != nil {
			return fmt.Errorf("--ip6 %s: %w (give the IPv6 address the host's peers reach it on)", ip6, err)
		}
		// IPv6 forwards for every interface or none.
		if err := h.SetSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	return nil
}

// prepareVeth sets a pod's host-side interface up for routing: forwarding
// in, proxy ARP for the gateway answered at once, and strict reverse-path
// filtering so a pod cannot send from an address that is not its own.
func (a *Agent) prepareVeth(name string) error {
	return a.cfg.HostOps.PrepareEndpointLink(name)
}

// networks lists the networks the host is in, sorted.
func (a *Agent) networks() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for n, g := range a.self.Groups {
		if g != "" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// applySnapshot takes the cluster state in: the topology (parsed when its
// text changed), this host's record and its blocks. It asks for a route
// sync.
func (a *Agent) applySnapshot(s *api.Snapshot) error {
	if s.Topology == "" {
		return errors.New("the server has no topology yet; apply one with `terrane ctl topology apply FILE`")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if s.Topology != a.text {
		t, err := topology.Load([]byte(s.Topology))
		if err != nil {
			return fmt.Errorf("the server's topology does not load here: %w", err)
		}
		a.topo, a.text = t, s.Topology
	}
	self, ok := hostIn(s.Hosts, a.cfg.Host)
	if !ok {
		return fmt.Errorf("%w: %s is missing from the server (removed by an admin?); registering it again", errUnregistered, a.cfg.Host)
	}
	a.self, a.snap = self, s
	a.setPortsLocked(s.Ports)
	for _, n := range a.topo.Networks {
		var owned []netip.Prefix
		for _, b := range s.Blocks[n.Name] {
			// Blocks of a group the host has left drain: no new addresses.
			// The server's blocks on this host (VM ports) are never ours
			// to allocate in.
			if b.Host == a.cfg.Host && b.Issuer == ipam.IssuerAgent && b.Group == self.Groups[n.Name] {
				owned = append(owned, b.Prefix)
			}
		}
		if len(owned) == 0 && a.pools[n.Name] == nil {
			continue
		}
		p := a.pool(n.Name)
		before := openBlocks(p)
		dropped := p.SetOwned(owned)
		if len(dropped) > 0 {
			a.log.Info("blocks no longer ours", "network", n.Name, "blocks", dropped)
		}
		if len(dropped) > 0 || !slices.Equal(before, openBlocks(p)) {
			a.touchLocked() // the pool's blocks changed: the next report carries them
		}
	}
	a.requestSync()
	return nil
}

// openBlocks lists p's blocks, each with whether it is open.
func openBlocks(p *ipam.Pool) []string {
	var out []string
	for _, b := range p.Blocks() {
		out = append(out, fmt.Sprint(b, p.IsOpen(b)))
	}
	return out
}

func hostIn(hosts []ipam.HostInfo, name string) (ipam.HostInfo, bool) {
	for _, h := range hosts {
		if h.Name == name {
			return h, true
		}
	}
	return ipam.HostInfo{}, false
}

// follow long-polls the server and applies each new state: block changes
// anywhere in the cluster reach the routing table within one round trip.
func (a *Agent) follow(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		a.mu.Lock()
		after := int64(0)
		if a.snap != nil {
			after = a.snap.Revision
		}
		a.mu.Unlock()
		var s *api.Snapshot
		err := a.registerIfOffline(ctx)
		if err == nil {
			s, err = a.cfg.Server.SnapshotOf(ctx, a.cfg.Host, after, a.cfg.Poll)
			if ctx.Err() == nil {
				a.contact(err)
			}
		}
		if err == nil && s.Revision != after {
			err = a.applySnapshot(s)
			if err != nil && errors.Is(err, errUnregistered) {
				err = a.register(ctx)
			}
			if err == nil {
				a.keepSnapshot(ctx, s)
				a.releaseOrphans(ctx, s.Releases)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if client.Unreachable(err) {
				a.log.Debug("following the server", "err", err) // logged once by contact
			} else {
				a.log.Warn("following the server", "err", err)
			}
			if !sleep(ctx, retryPause(attempt)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		for _, n := range a.networks() {
			a.ensureFreeAsync(ctx, n)
		}
	}
}

var errUnregistered = errors.New("host not registered")

// resyncLoop replays queued releases, releases pods whose netns is gone,
// and gives back surplus empty blocks, every Resync.
func (a *Agent) resyncLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.replayQueue(ctx)
		a.reconcile(ctx)
		for _, n := range a.networks() {
			a.releaseSurplus(ctx, n)
		}
		// The routes too, whether or not anything changed: a sync that
		// failed is tried again, and a route someone removed comes back.
		a.requestSync()
	}
}

// requestSync asks for a route sync without waiting for it.
func (a *Agent) requestSync() {
	select {
	case a.syncReq <- nil:
	default: // one is queued already: it will see this change too
	}
}

// syncRoutes programs the routes the current state calls for and waits
// until a sync that started after this call has finished.
func (a *Agent) syncRoutes(ctx context.Context) (dataplane.Diff, error) {
	reply := make(chan syncResult, 1)
	select {
	case a.syncReq <- reply:
	case <-ctx.Done():
		return dataplane.Diff{}, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.diff, r.err
	case <-ctx.Done():
		return dataplane.Diff{}, ctx.Err()
	}
}

// syncLoop is the one writer of the routing table. Requests that queue up
// while a sync runs are served by one more sync: 30 concurrent ADDs cost a
// few table listings, not 30.
func (a *Agent) syncLoop(ctx context.Context) {
	for {
		var waiters []chan syncResult
		select {
		case <-ctx.Done():
			return
		case w := <-a.syncReq:
			waiters = append(waiters, w)
		}
	drain:
		for {
			select {
			case w := <-a.syncReq:
				waiters = append(waiters, w)
			default:
				break drain
			}
		}
		st, err := a.desired()
		var r syncResult
		if err != nil {
			r.err = err
		} else {
			r.diff, r.err = a.cfg.Dataplane.Apply(ctx, st)
			if !r.diff.Empty() {
				a.log.Debug("routes changed", "diff", r.diff.String())
			}
			a.syncFast(ctx, st, r.err)
		}
		if r.err != nil {
			a.log.Warn("route sync", "err", r.err)
		}
		// BGP failures do not fail the sync: an ADD waits for its kernel
		// route, not for the fabric.
		if err := a.syncBGP(ctx); err != nil && err.Error() != a.bgp.logged {
			a.log.Warn("bgp sync", "err", err)
			a.bgp.logged = err.Error()
		} else if err == nil {
			a.bgp.logged = ""
		}
		for _, w := range waiters {
			if w != nil {
				w <- r
			}
		}
	}
}

// desired is the host's routing table, as the routing core computes it
// from the state the agent follows (routing.HostState).
func (a *Agent) desired() (dataplane.State, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return routing.HostState(a.view(), routing.HostTable{Table: a.cfg.Table, Gateway: cniapi.GatewayV4})
}

// view is the cluster as the agent follows it and the host's endpoints,
// the input of every routing decision. a.mu must be held.
func (a *Agent) view() routing.HostView {
	v := routing.HostView{Topology: a.topo, Host: a.cfg.Host}
	if a.snap != nil {
		v.Hosts, v.Blocks, v.Groups = a.snap.Hosts, a.snap.Blocks, a.snap.Groups
	}
	for _, e := range a.eps {
		if e.policyPending {
			continue // routed once its ADD has applied its rules
		}
		for _, ad := range e.addresses() {
			v.Endpoints = append(v.Endpoints, routing.LocalEndpoint{Network: ad.Network, Addr: ad.Addr, Dev: e.HostVeth})
		}
	}
	for _, vp := range a.ports {
		if vp.wired {
			v.Endpoints = append(v.Endpoints, routing.LocalEndpoint{Network: vp.ep.Network, Addr: vp.ep.Addr, Dev: vp.dev})
		}
	}
	return v
}

// keep is how many free addresses network n keeps on the host.
func (a *Agent) keep(n string) uint64 {
	if a.cfg.ClaimAhead > 0 {
		return uint64(a.cfg.ClaimAhead)
	}
	if a.topo != nil {
		if net := a.topo.Network(n); net != nil {
			return max(netx.Size(netip.PrefixFrom(net.CIDR.Addr(), net.BlockBits))/4, 1)
		}
	}
	return 1
}

// ensureFree claims blocks until network n has its free addresses (at
// least one when first is set, keep otherwise).
func (a *Agent) ensureFree(ctx context.Context, n string, first bool) error {
	for {
		a.mu.Lock()
		free, keep := a.pool(n).Free(), a.keep(n)
		a.mu.Unlock()
		if free >= keep || (first && free > 0) {
			return nil
		}
		if err := a.claim(ctx, n); err != nil {
			return err
		}
	}
}

// ensureFreeAsync starts a background claim when network n runs low; one
// at a time per network, none while the server is unreachable.
func (a *Agent) ensureFreeAsync(ctx context.Context, n string) {
	a.mu.Lock()
	// Offline, a claim cannot succeed: follow claims ahead again as soon
	// as the server answers.
	low := a.pool(n).Free() < a.keep(n) && !a.offlineLocked()
	busy := a.claiming[n]
	if low && !busy {
		a.claiming[n] = true
	}
	a.mu.Unlock()
	if !low || busy {
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() { a.mu.Lock(); delete(a.claiming, n); a.mu.Unlock() }()
		if err := a.ensureFree(ctx, n, false); err != nil && ctx.Err() == nil {
			a.log.Warn("claiming a block ahead", "network", n, "err", err)
		}
	}()
}

// claim claims one block of network n from the server.
func (a *Agent) claim(ctx context.Context, n string) error {
	start := time.Now()
	res, err := a.cfg.Server.ClaimBlock(ctx, a.cfg.Host, n)
	a.met.observeClaim(n, start, err)
	if ctx.Err() == nil {
		a.contact(err)
	}
	if err != nil {
		return fmt.Errorf("claim a block of %s: %w", n, err)
	}
	a.mu.Lock()
	a.pool(n).Open(res.Block)
	a.touchLocked()
	a.mu.Unlock()
	a.log.Info("block claimed", "network", n, "block", res.Block)
	a.requestSync()
	return nil
}

// held keeps, of network n's surplus blocks, those that have been surplus
// for SurplusHold: a block emptied by churn is soon used again. a.mu is
// held.
func (a *Agent) held(n string, surplus []netip.Prefix, now time.Time) []netip.Prefix {
	since := a.surplusSince[n]
	if since == nil {
		since = map[netip.Prefix]time.Time{}
		a.surplusSince[n] = since
	}
	var out []netip.Prefix
	for p := range since {
		if !slices.Contains(surplus, p) {
			delete(since, p) // used again, or gone
		}
	}
	for _, p := range surplus {
		t, ok := since[p]
		if !ok {
			since[p] = now
			continue
		}
		if now.Sub(t) >= a.cfg.SurplusHold {
			out = append(out, p)
			delete(since, p)
		}
	}
	return out
}

// releaseSurplus gives back empty blocks network n does not need (once
// they have been surplus for SurplusHold), and the blocks of a group the
// host has left once they have drained.
func (a *Agent) releaseSurplus(ctx context.Context, n string) {
	a.mu.Lock()
	if a.offlineLocked() {
		a.mu.Unlock()
		return // kept for the outage; given back once the server answers
	}
	surplus := a.held(n, a.pool(n).Surplus(a.keep(n)), time.Now())
	if a.snap != nil {
		for _, b := range a.snap.Blocks[n] {
			if b.Host == a.cfg.Host && b.Issuer == ipam.IssuerAgent && !a.pool(n).IsOpen(b.Prefix) && a.pool(n).Empty(b.Prefix) {
				surplus = append(surplus, b.Prefix)
			}
		}
	}
	wasOpen := map[netip.Prefix]bool{}
	for _, b := range surplus {
		wasOpen[b] = a.pool(n).IsOpen(b)
		a.pool(n).Close(b)
	}
	a.mu.Unlock()
	if len(surplus) > 0 {
		if err := a.forgetKeptBlocks(ctx); err != nil {
			a.log.Warn("releasing blocks", "network", n, "blocks", surplus, "err", err)
			a.mu.Lock()
			for _, b := range surplus {
				if wasOpen[b] {
					a.pool(n).Open(b) // still ours: open it again
				}
			}
			a.mu.Unlock()
			return
		}
	}
	for _, b := range surplus {
		_, err := a.cfg.Server.ReleaseBlock(ctx, a.cfg.Host, n, b)
		var ae *client.APIError
		a.mu.Lock()
		switch {
		case err == nil, errors.As(err, &ae) && ae.Status == 404:
			if a.pool(n).Empty(b) {
				a.pool(n).Remove(b)
			}
			// The report carries the pool's blocks: without a change
			// noted, the server would hold the block as open here until
			// the next pod came or went, and its audit would find it.
			a.touchLocked()
			a.log.Info("block released", "network", n, "block", b)
		default:
			a.pool(n).Open(b) // still ours: open it again
			a.log.Warn("releasing a block", "network", n, "block", b, "err", err)
		}
		a.mu.Unlock()
	}
	if len(surplus) > 0 {
		a.requestSync()
	}
}

func retryPause(attempt int) time.Duration {
	return min(200*time.Millisecond<<min(attempt, 5), 5*time.Second)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
