package labbench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/lab"
)

// Fault kinds `bench chaos` injects, in the order of its schedule.
const (
	FaultEtcdLeaderKill = "etcd-leader-kill"
	FaultEtcdMemberKill = "etcd-member-kill"
	FaultEtcdPartition  = "etcd-partition"
	FaultServerKill     = "server-kill"
	FaultAgentKill      = "agent-kill"
	FaultHostLoss       = "host-loss"
)

// ChaosFaultKinds are the kinds of fault, in schedule order: a run with at
// least this many faults injects each once. A run without hosts has no
// agents and injects the control plane's only (ChaosOptions.FaultKinds).
var ChaosFaultKinds = []string{FaultEtcdLeaderKill, FaultEtcdMemberKill, FaultEtcdPartition, FaultServerKill, FaultAgentKill, FaultHostLoss}

// FaultKinds are the kinds a run with o injects, in schedule order.
func (o ChaosOptions) FaultKinds() []string {
	if o.Hosts == 0 {
		return ChaosFaultKinds[:4]
	}
	return ChaosFaultKinds
}

// ChaosOptions configure RunChaos.
type ChaosOptions struct {
	LabOptions
	// Servers is how many `terrane server` processes share the etcd
	// cluster (2 or 3); Workers how many load workers, each acting as one
	// host.
	Servers, Workers int
	// Rate is the operations (allocations and releases) per second of all
	// workers together; 0 means as fast as they go.
	Rate float64
	// Duration bounds the load; Allocations, when not 0, ends it once that
	// many allocations were acknowledged (whichever comes first).
	Duration    time.Duration
	Allocations int
	// Live is how many endpoints a worker holds at most: below it a worker
	// allocates, at it it releases its oldest.
	Live int
	// FaultEvery is the time between faults; each fault is healed after a
	// third of it. 0 means no faults.
	FaultEvery time.Duration
	// Faults, when not 0, ends the load once that many faults were
	// injected and recovered from, a third of FaultEvery after the last
	// (or at Duration or Allocations, whichever comes first).
	Faults int
	// Timeout bounds one API request; on an error a worker retries against
	// the next server.
	Timeout time.Duration
	// Hosts is how many lab hosts run an agent on the servers, each with
	// one probe pod for the whole run; 0 runs the API load alone. Churn
	// pods are created and deleted at PodRate per second, at most
	// PodsPerHost on a host. Every pod pings every other every
	// ProbeInterval while both exist.
	Hosts         int
	PodRate       float64
	PodsPerHost   int
	ProbeInterval time.Duration
	// KeepLogs, when set, is a directory the lab's logs are copied into
	// (NAME-logs) before the lab is removed.
	KeepLogs string
}

// Validate checks the sizes and names the flag at fault.
func (o *ChaosOptions) Validate() error {
	var errs []error
	if o.Servers < 2 || o.Servers > 3 {
		errs = append(errs, fmt.Errorf("--servers %d: want 2 or 3", o.Servers))
	}
	if o.Workers < 1 || o.Workers > 64 {
		errs = append(errs, fmt.Errorf("--workers %d: want 1 to 64", o.Workers))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("--rate %v: want operations per second, 0 for as fast as they go", o.Rate))
	}
	if o.Duration <= 0 && o.Allocations <= 0 {
		errs = append(errs, errors.New("--duration or --allocations: give a length for the run"))
	}
	if o.Allocations < 0 {
		errs = append(errs, fmt.Errorf("--allocations %d: want 0 (use --duration) or more", o.Allocations))
	}
	if o.Live < 1 || o.Live > 1000 {
		errs = append(errs, fmt.Errorf("--live %d: want 1 to 1000 endpoints per worker", o.Live))
	}
	if o.FaultEvery != 0 && o.FaultEvery < 3*time.Second {
		errs = append(errs, fmt.Errorf("--fault-every %s: want 0 (no faults) or at least 3s", o.FaultEvery))
	}
	if o.Faults < 0 || (o.Faults > 0 && o.FaultEvery == 0) {
		errs = append(errs, fmt.Errorf("--faults %d: want 0 (no limit) or a number of faults with --fault-every", o.Faults))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: want a positive duration", o.Timeout))
	}
	if o.Hosts != 0 && (o.Hosts < 2 || o.Hosts > 8) {
		errs = append(errs, fmt.Errorf("--hosts %d: want 0 (API load only) or 2 to 8", o.Hosts))
	}
	if o.Hosts > 0 {
		if o.PodRate < 0 {
			errs = append(errs, fmt.Errorf("--pod-rate %v: want pods created or deleted per second (0: no churn, the probe pods only)", o.PodRate))
		}
		if o.PodsPerHost < 1 || o.PodsPerHost > 20 {
			errs = append(errs, fmt.Errorf("--pods-per-host %d: want 1 to 20 churn pods per host", o.PodsPerHost))
		}
		if o.ProbeInterval < 10*time.Millisecond || o.ProbeInterval > time.Second {
			errs = append(errs, fmt.Errorf("--probe-interval %s: want 10ms to 1s", o.ProbeInterval))
		}
	}
	return errors.Join(errs...)
}

// ChaosResult is what a chaos run found. Its JSON names are the interface
// of `terrane bench chaos -o json`.
type ChaosResult struct {
	Machine Machine `json:"machine"`
	Members int     `json:"etcd_members"`
	Servers int     `json:"servers"`
	Workers int     `json:"workers"`
	Rate    float64 `json:"rate_per_second"`
	Seconds float64 `json:"seconds"`
	// Allocations and Releases are the operations the servers
	// acknowledged; Retries the failed requests retried against another
	// server.
	Allocations int `json:"allocations"`
	Releases    int `json:"releases"`
	Retries     int `json:"retries"`
	// Held is how many endpoints the workers hold at the end (acknowledged
	// and not released); Present how many the server lists.
	Held    int `json:"held"`
	Present int `json:"present"`
	// Duplicates are addresses held by two endpoints and blocks owned
	// twice or overlapping; Lost acknowledged, unreleased endpoints missing
	// (or at another address); LeakedAfterGC endpoints present that were
	// never acknowledged or were released, after the server's audit.
	Duplicates    int `json:"duplicates"`
	Lost          int `json:"lost"`
	LeakedAfterGC int `json:"leaked_after_gc"`
	// InDoubt are operations that never got an answer (the run ended or
	// every server refused them); they count neither as lost nor leaked.
	InDoubt int `json:"in_doubt"`
	// Examples name up to ten of each problem.
	Examples []string `json:"examples,omitempty"`
	// CheckClean and CheckFindings are the server's audit (ctl check) at
	// the end.
	CheckClean    bool         `json:"check_clean"`
	CheckFindings []string     `json:"check_findings,omitempty"`
	Faults        []ChaosFault `json:"faults"`
	// Unavailability is the longest time, over the whole run, in which no
	// worker's operation succeeded.
	UnavailableSeconds float64 `json:"unavailable_seconds"`

	// With hosts: Hosts run agents; Pods exist at the end (probe and
	// churn); PodAdds and PodDels are the CNI ADDs and DELs that
	// succeeded (the ADDs are in Allocations too), the failures those
	// that did not; PodsGoneWithHosts died with a lost host.
	Hosts             int `json:"hosts,omitempty"`
	Pods              int `json:"pods,omitempty"`
	PodAdds           int `json:"pod_adds,omitempty"`
	PodDels           int `json:"pod_dels,omitempty"`
	PodAddFailures    int `json:"pod_add_failures"`
	PodDelFailures    int `json:"pod_del_failures"`
	PodsGoneWithHosts int `json:"pods_gone_with_hosts,omitempty"`
	// ProbePairs are the ordered pairs of pods pinged (every pod pings
	// every other while both exist), Echoes the echoes sent and
	// EchoesLost those never answered; PairUnreachableSeconds is the
	// longest time any pair that should reach did not (PairUnreachable
	// names it).
	ProbePairs             int     `json:"probe_pairs,omitempty"`
	Echoes                 int     `json:"echoes,omitempty"`
	EchoesLost             int     `json:"echoes_lost"`
	PairUnreachableSeconds float64 `json:"pair_unreachable_seconds"`
	PairUnreachable        string  `json:"pair_unreachable,omitempty"`
}

// Bad is whether the run found duplicates, lost or leaked endpoints.
func (r *ChaosResult) Bad() bool { return r.Duplicates+r.Lost+r.LeakedAfterGC > 0 }

// ChaosFault is one injected fault.
type ChaosFault struct {
	Kind   string `json:"kind"`
	Target string `json:"target"`
	// AtSeconds is when it was injected, HealedSeconds when it was healed
	// (process started again, link up), RecoveredSeconds when every etcd
	// member and server served again — all from the start of the load.
	AtSeconds        float64 `json:"at_seconds"`
	HealedSeconds    float64 `json:"healed_seconds"`
	RecoveredSeconds float64 `json:"recovered_seconds"`
	// UnavailableSeconds is the longest time, from the fault until the
	// next (or the end of the load), in which no worker's operation
	// succeeded.
	UnavailableSeconds float64 `json:"unavailable_seconds"`
	// PairUnreachableSeconds is the longest time a pair of pods that
	// should reach did not, in an outage that began between this fault
	// and the next; PairUnreachable names the pair.
	PairUnreachableSeconds float64 `json:"pair_unreachable_seconds"`
	PairUnreachable        string  `json:"pair_unreachable,omitempty"`
	Error                  string  `json:"error,omitempty"`
}

// RunChaos builds the chaos lab — a 3-member etcd cluster, each member in
// its own namespace, o.Servers servers on it and, with o.Hosts, hosts with
// agents on those servers — drives allocations and releases through the
// servers' API, and pods through the agents, while faults are injected on
// a schedule and every pair of pods is pinged; then it heals
// everything and checks the state against what the servers and agents
// acknowledged. The lab is removed before it returns.
func RunChaos(ctx context.Context, o ChaosOptions) (res *ChaosResult, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c, down, err := upChaosLab(ctx, o)
	if down != nil {
		defer down()
	}
	if err != nil {
		return nil, err
	}
	res = &ChaosResult{Machine: thisMachine(), Members: chaosMembers, Servers: o.Servers, Workers: o.Workers, Rate: o.Rate, Hosts: o.Hosts}
	admin := c.admin.c
	if _, err := admin.ApplyTopology(ctx, api.TopologyRequest{Topology: chaosTopology}); err != nil {
		return nil, fmt.Errorf("apply the chaos topology: %w", err)
	}
	workers := make([]*chaosWorker, o.Workers)
	for w := range workers {
		if workers[w], err = newChaosWorker(c, w); err != nil {
			return nil, err
		}
		if err := workers[w].register(ctx); err != nil {
			return nil, err
		}
	}
	if o.Hosts > 0 {
		if c.pods, err = c.startPods(ctx); err != nil {
			return nil, err
		}
	}

	// The load, and the faults beside it.
	start := time.Now()
	av := &availability{start: start, last: start, cur: -1}
	loadCtx, stopLoad := context.WithCancel(ctx)
	if o.Duration > 0 {
		loadCtx, stopLoad = context.WithTimeout(ctx, o.Duration)
	}
	defer stopLoad()
	var acked atomic.Int64
	tokens := pace(loadCtx, o.Rate)
	o.progress("load: %d workers over %d servers, %v ops/s, faults every %s", o.Workers, o.Servers, o.Rate, o.FaultEvery)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			w.run(loadCtx, ctx, tokens, av, func() {
				if n := acked.Add(1); o.Allocations > 0 && n >= int64(o.Allocations) {
					stopLoad()
				}
			})
		})
	}
	if c.pods != nil {
		wg.Go(func() { c.pods.churn(loadCtx) })
	}
	wg.Go(func() { meterChaos(loadCtx, o, start, &acked) })
	faults, faultTimes := c.injectFaults(loadCtx, ctx, av)
	stopLoad()
	wg.Wait()
	end := time.Now()
	av.end(end)
	res.Seconds = end.Sub(start).Seconds()
	for i := range faults {
		faults[i].UnavailableSeconds = av.gaps[i].Seconds()
	}
	if c.pods != nil {
		per, longest, pairs, echoes, lost := c.pods.outages(faultTimes)
		for i := range faults {
			faults[i].PairUnreachableSeconds, faults[i].PairUnreachable = per[i].seconds, per[i].pair
		}
		res.ProbePairs, res.Echoes, res.EchoesLost = pairs, echoes, lost
		res.PairUnreachableSeconds, res.PairUnreachable = longest.seconds, longest.pair
	}
	res.Faults = faults
	res.UnavailableSeconds = av.longest.Seconds()

	// Heal (the fault loop healed its last fault) and wait until all
	// serve; then read the state from one server.
	o.progress("load ended after %.1f s: checking the state", res.Seconds)
	if err := c.waitMembers(ctx, 2*time.Minute); err != nil {
		return res, err
	}
	if err := c.waitServers(ctx, time.Minute); err != nil {
		return res, err
	}
	// Each host checks in as its agent would, so the audit below judges
	// the allocations, not hosts that never had an agent.
	for _, w := range workers {
		if err := w.do(ctx, func(cl *client.Client) error { _, err := cl.Heartbeat(ctx, w.host); return err }); err != nil {
			return res, fmt.Errorf("heartbeat of %s: %w", w.host, err)
		}
	}
	if c.pods != nil {
		if err := c.pods.verify(ctx, admin, res); err != nil {
			return res, err
		}
		res.Allocations += res.PodAdds
	}
	return res, verifyChaos(ctx, admin, workers, res)
}

// meterChaos follows the load on o's meter until loadCtx ends: the
// acknowledged allocations against --allocations, else the seconds
// against --duration.
func meterChaos(loadCtx context.Context, o ChaosOptions, start time.Time, acked *atomic.Int64) {
	m := o.meter()
	count := func() int { return int(time.Since(start).Seconds()) }
	if o.Allocations > 0 {
		m.SetTotal(o.Allocations)
		m.Step("%d allocations under faults", o.Allocations)
		count = func() int { return int(acked.Load()) }
	} else {
		m.SetTotal(int(o.Duration.Seconds()))
		m.Step("%s of load under faults", o.Duration)
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	done := 0
	for {
		select {
		case <-loadCtx.Done():
			return
		case <-t.C:
		}
		n := count()
		m.Add(n - done)
		done = n
	}
}

// startPods starts the agents of the lab's hosts on the servers and gives
// each host its probe pod.
func (c *chaosLab) startPods(ctx context.Context) (*chaosPods, error) {
	servers := c.serverURLs(0)
	n := c.o.names()
	c.o.progress("agents: %d hosts, each on %d servers", c.o.Hosts, len(servers))
	if err := lab.StartAgents(ctx, n.Lab, n.Dir, servers, nil); err != nil {
		return nil, err
	}
	p := newChaosPods(c.o)
	for _, h := range p.hosts {
		if err := p.addProbe(ctx, h); err != nil {
			return nil, fmt.Errorf("probe pod on %s: %w", h, err)
		}
	}
	return p, nil
}

// chaosTopology is one network in two groups: every API worker's host
// draws blocks in one, the lab's hosts (which route to each other's blocks
// directly, on one segment) in the other.
const chaosTopology = `networks:
  - {name: pods, cidr: 10.128.0.0/12, blockSize: 27, default: true}
topologies:
  - networks: [pods]
    groups:
      - {name: chaos, assignment: {matchLabels: {chaos: "yes"}}}
      - {name: hosts, assignment: {matchLabels: {chaos: "host"}}, routing: l2}
`

// injectFaults injects one fault every FaultEvery until loadCtx ends,
// kinds in FaultKinds order, heals each after a third of the interval and
// waits until everything serves again before the next. It always heals the
// fault it injected (with ctx, which outlives loadCtx). It returns the
// faults and when each was injected.
func (c *chaosLab) injectFaults(loadCtx, ctx context.Context, av *availability) ([]ChaosFault, []time.Time) {
	var (
		faults []ChaosFault
		times  []time.Time
	)
	if c.o.FaultEvery <= 0 {
		<-loadCtx.Done()
		return nil, nil
	}
	kinds := c.o.FaultKinds()
	hold := c.o.FaultEvery / 3
	t := time.NewTimer(c.o.FaultEvery)
	defer t.Stop()
	since := func() float64 { return time.Since(av.start).Seconds() }
	for i := 0; ; i++ {
		select {
		case <-loadCtx.Done():
			return faults, times
		case <-t.C:
		}
		t.Reset(c.o.FaultEvery)
		f := ChaosFault{Kind: kinds[i%len(kinds)], AtSeconds: since()}
		now := time.Now()
		times = append(times, now)
		av.fault(now)
		heal, err := c.inject(ctx, &f, i)
		c.o.progress("fault %d at %.1f s: %s %s", i+1, f.AtSeconds, f.Kind, f.Target)
		if err == nil {
			ht := time.NewTimer(hold)
			select {
			case <-ht.C:
			case <-ctx.Done():
			}
			ht.Stop()
			err = heal()
			f.HealedSeconds = since()
		}
		if err == nil {
			err = errors.Join(c.waitMembers(ctx, 2*time.Minute), c.waitServers(ctx, time.Minute))
			f.RecoveredSeconds = since()
		}
		if err != nil {
			f.Error = err.Error()
			c.o.progress("fault %s %s: %v", f.Kind, f.Target, err)
		}
		faults = append(faults, f)
		if err != nil {
			return faults, times
		}
		if c.o.Faults > 0 && len(faults) >= c.o.Faults {
			// The load goes on a while after the last recovery.
			wait := time.NewTimer(hold)
			select {
			case <-wait.C:
			case <-loadCtx.Done():
			}
			wait.Stop()
			return faults, times
		}
	}
}

// inject injects fault f (its kind set), the i-th of the run, and returns
// what heals it.
func (c *chaosLab) inject(ctx context.Context, f *ChaosFault, i int) (heal func() error, err error) {
	restart := func(p *chaosProc) func() error { return p.start }
	switch f.Kind {
	case FaultEtcdLeaderKill, FaultEtcdMemberKill, FaultEtcdPartition:
		leader, err := c.leader(ctx)
		if err != nil {
			return nil, err
		}
		target := leader
		// A member kill takes a follower; a partition alternates between
		// the leader and a follower.
		if f.Kind == FaultEtcdMemberKill || (f.Kind == FaultEtcdPartition && (i/len(c.o.FaultKinds()))%2 == 1) {
			target = (leader + 1 + rand.IntN(chaosMembers-1)) % chaosMembers
		}
		role := "follower"
		if target == leader {
			role = "leader"
		}
		f.Target = fmt.Sprintf("etcd%d (%s)", target, role)
		if f.Kind == FaultEtcdPartition {
			if err := c.setLink(ctx, target, false); err != nil {
				return nil, err
			}
			return func() error { return c.setLink(ctx, target, true) }, nil
		}
		c.members[target].kill(syscall.SIGKILL, 0)
		return restart(c.members[target]), nil
	case FaultServerKill:
		target := (i / len(c.o.FaultKinds())) % len(c.servers)
		f.Target = c.servers[target].role
		c.servers[target].kill(syscall.SIGKILL, 0)
		return restart(c.servers[target]), nil
	case FaultAgentKill:
		f.Target, heal, err = c.pods.killAgent(ctx)
		return heal, err
	case FaultHostLoss:
		f.Target, heal, err = c.pods.loseHost(ctx, c.admin.do)
		return heal, err
	}
	return nil, fmt.Errorf("unknown fault %q", f.Kind)
}

// verifyChaos runs the audit of admin's server, reads the state from it
// and compares both with what the workers were acknowledged.
func verifyChaos(ctx context.Context, admin *client.Client, workers []*chaosWorker, res *ChaosResult) error {
	held := map[string]netip.Addr{}
	released := map[string]bool{}
	doubt := map[string]bool{}
	var errs []error
	workerHost := map[string]bool{}
	for _, w := range workers {
		workerHost[w.host] = true
		res.Allocations += w.allocations
		res.Releases += w.releases
		res.Retries += w.retries
		for id, a := range w.held {
			held[id] = a
		}
		for id := range w.released {
			released[id] = true
		}
		for _, id := range w.inDoubt {
			doubt[id] = true
		}
		errs = append(errs, w.errs...)
	}
	res.Held, res.InDoubt = len(held), len(doubt)
	example := func(format string, args ...any) {
		if len(res.Examples) < 10 {
			res.Examples = append(res.Examples, fmt.Sprintf(format, args...))
		}
	}
	for _, err := range errs {
		example("in doubt: %v", err)
	}

	// The server's audit first (ctl check), then the state it leaves.
	check, err := admin.Check(ctx)
	if err != nil {
		return fmt.Errorf("ctl check: %w", err)
	}
	res.CheckClean = check.Clean
	for _, f := range check.Findings {
		res.CheckFindings = append(res.CheckFindings, fmt.Sprintf("%s %s: %s", f.Kind, f.Subject, f.Detail))
	}
	eps, err := admin.Endpoints(ctx)
	if err != nil {
		return fmt.Errorf("read endpoints: %w", err)
	}
	res.Present = len(eps)
	byAddr := map[string]string{}
	present := map[string]netip.Addr{}
	for _, e := range eps {
		key := e.Network + "/" + e.Addr.String()
		if other, ok := byAddr[key]; ok {
			res.Duplicates++
			example("duplicate: %s held by %s and %s", key, other, e.ID)
		}
		byAddr[key] = e.ID
		if !workerHost[e.Host] {
			continue // a pod's: chaosPods.verify judges those
		}
		present[e.ID] = e.Addr
		if _, ok := held[e.ID]; !ok && !doubt[e.ID] {
			res.LeakedAfterGC++
			why := "never acknowledged"
			if released[e.ID] {
				why = "released"
			}
			example("leaked: %s at %s (%s)", e.ID, e.Addr, why)
		}
	}
	for id, a := range held {
		if p, ok := present[id]; !ok || p != a {
			res.Lost++
			example("lost: %s acknowledged at %s, now %v", id, a, p)
		}
	}
	blocks, err := admin.Blocks(ctx, "")
	if err != nil {
		return fmt.Errorf("read blocks: %w", err)
	}
	for network, bs := range blocks {
		sort.Slice(bs, func(i, j int) bool { return bs[i].Prefix.Addr().Less(bs[j].Prefix.Addr()) })
		for i := 1; i < len(bs); i++ {
			if bs[i].Prefix.Overlaps(bs[i-1].Prefix) {
				res.Duplicates++
				example("duplicate block: %s %s (%s) and %s (%s)", network, bs[i-1].Prefix, bs[i-1].Host, bs[i].Prefix, bs[i].Host)
			}
		}
	}
	slices.Sort(res.Examples)
	return nil
}
