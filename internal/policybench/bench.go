package policybench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netns"

	"github.com/terrane-net/terrane/internal/dataplane/nft"
	"github.com/terrane-net/terrane/internal/labbench"
	"github.com/terrane-net/terrane/internal/meter"
	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/policy/policygen"
)

// Ports the pair talks on: iperf3, the connection loop, and one no rule
// admits (to prove the policies are enforced).
const (
	iperfPort  = 5201
	connPort   = 5202
	deniedPort = 5203
)

// Options configure Run.
type Options struct {
	// Rules are the low and high numbers of rules per direction.
	Rules [2]int
	// Duration is each throughput and each connection-rate measurement's
	// length; Rounds how many times each configuration is measured.
	Duration time.Duration
	Rounds   int
	// ConnWorkers are the connection loop's concurrent clients.
	ConnWorkers int
	// Iptables is the iptables command of the linear rendering
	// (iptables-legacy, iptables-nft or iptables).
	Iptables string
	// SyncReps is how many times the full sync and the incremental change
	// are measured.
	SyncReps int
	// Progress receives progress lines; nil discards them.
	Progress func(format string, args ...any)
	// Meter, when set, counts the rounds' measurements, then the sync's
	// repetitions (a progress bar on a terminal).
	Meter meter.Meter
}

// DefaultOptions are the command's defaults.
func DefaultOptions() Options {
	return Options{Rules: [2]int{10, 10000}, Duration: 5 * time.Second, Rounds: 3, ConnWorkers: 2, Iptables: "iptables-legacy", SyncReps: 5}
}

// Validate checks sizes and names, each error naming its flag.
func (o *Options) Validate() error {
	var errs []error
	if o.Rules[0] < 1 || o.Rules[1] <= o.Rules[0] || o.Rules[1] > policygen.MaxPairRules {
		errs = append(errs, fmt.Errorf("--rules %d,%d: want LOW,HIGH with 1 <= LOW < HIGH <= %d", o.Rules[0], o.Rules[1], policygen.MaxPairRules))
	}
	if o.Duration < time.Second || o.Duration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("--duration %s: want whole seconds, at least 1s (iperf3 -t takes seconds)", o.Duration))
	}
	if o.Rounds < 1 {
		errs = append(errs, fmt.Errorf("--rounds %d: want at least 1", o.Rounds))
	}
	if o.ConnWorkers < 1 || o.ConnWorkers > 64 {
		errs = append(errs, fmt.Errorf("--conn-workers %d: want 1 to 64", o.ConnWorkers))
	}
	if o.SyncReps < 1 {
		errs = append(errs, fmt.Errorf("--sync-reps %d: want at least 1", o.SyncReps))
	}
	switch o.Iptables {
	case "iptables-legacy", "iptables-nft", "iptables":
	default:
		errs = append(errs, fmt.Errorf("--iptables %q: use iptables-legacy, iptables-nft or iptables", o.Iptables))
	}
	return errors.Join(errs...)
}

func (o *Options) progress(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(format, args...)
	}
}

// meter is o.Meter, or one that counts nothing.
func (o *Options) meter() meter.Meter { return meter.Or(o.Meter) }

// CheckEnvironment reports what the benchmark needs and this machine lacks:
// root, ip, nft, iperf3 and the iptables command.
func CheckEnvironment(iptables string) error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("the policy benchmark makes network namespaces and nftables tables: run it as root"))
	}
	for _, c := range []struct{ cmd, pkg string }{{"ip", "iproute2"}, {"nft", "nftables"}, {"iperf3", "iperf3"}, {iptables, "iptables"}, {iptables + "-restore", "iptables"}} {
		if _, err := exec.LookPath(c.cmd); err != nil {
			errs = append(errs, fmt.Errorf("the policy benchmark needs %s: apt-get install %s", c.cmd, c.pkg))
		}
	}
	return errors.Join(errs...)
}

// Result is what Run measured. Its JSON names are the interface of
// `terrane bench policy -o json`.
type Result struct {
	Machine labbench.Machine `json:"machine"`
	// LoadAvg are the 1-minute load averages when the run started and
	// ended (other work on the machine).
	LoadAvg     [2]float64 `json:"load_average_1m"`
	Iptables    string     `json:"iptables"`
	Rules       [2]int     `json:"rules_per_direction"`
	Rounds      int        `json:"rounds"`
	Seconds     float64    `json:"seconds_per_measurement"`
	ConnWorkers int        `json:"conn_workers"`
	Configs     []Config   `json:"configs"`
	Ratios      []Ratio    `json:"ratios"`
	Sync        Sync       `json:"sync"`
}

// Config is one way of enforcing (or not) the pair's policies.
type Config struct {
	Name      string `json:"name"`
	Dataplane string `json:"dataplane"` // none, nft, iptables
	// Rules per direction; Applied what the kernel held, read back after
	// installing: nftables set elements or iptables rules in the pods'
	// chains.
	Rules   int `json:"rules_per_direction"`
	Applied int `json:"applied"`
	// CompileMs is the time to compile (nft) or render (iptables) the
	// rules; InstallMs the median time to load them into the kernel.
	CompileMs float64 `json:"compile_ms"`
	InstallMs float64 `json:"install_ms"`
	// Denied: a connection to a port no rule admits timed out (with a
	// policy) or completed (without).
	DeniedPortBlocked bool    `json:"denied_port_blocked"`
	Gbps              Sample  `json:"gbps"`
	ConnPerSec        Sample  `json:"connections_per_second"`
	ConnFailures      int64   `json:"connection_failures"`
	Retransmits       []int64 `json:"retransmits"`
}

// Sample is one figure measured once per round.
type Sample struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Rounds []float64 `json:"rounds"`
}

func sample(xs []float64) Sample {
	if len(xs) == 0 {
		return Sample{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Sample{Median: m, Min: s[0], Max: s[len(s)-1], Rounds: slices.Clone(xs)}
}

// Ratio is A ÷ B, computed within each round (both measured minutes
// apart at most) and summarised over the rounds.
type Ratio struct {
	Name       string `json:"name"`
	A          string `json:"a"`
	B          string `json:"b"`
	Gbps       Sample `json:"gbps"`
	ConnPerSec Sample `json:"connections_per_second"`
}

// Sync is the full sync and the incremental change on one node of
// policygen.BigCluster.
type Sync struct {
	Pods      int    `json:"pods"`
	Policies  int    `json:"policies"`
	NodePods  int    `json:"node_pods"`
	Isolated  int    `json:"isolated_directions"`
	Elements  int    `json:"set_elements"`
	CompileMs Sample `json:"compile_ms"`
	ApplyMs   Sample `json:"apply_ms"`
	TotalMs   Sample `json:"total_ms"`
	// Incremental: one pod's label changes (and back, alternately); the
	// node's rule set is compiled again and the difference applied.
	ChangedEndpoints int    `json:"incremental_changed_endpoints"`
	IncCompileMs     Sample `json:"incremental_compile_ms"`
	IncApplyMs       Sample `json:"incremental_apply_ms"`
	IncTotalMs       Sample `json:"incremental_total_ms"`
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscan(string(b), &l)
	return l
}

// Run measures the pair's configurations round by round, then the full
// sync. The namespaces it makes are deleted before it returns.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := CheckEnvironment(o.Iptables); err != nil {
		return nil, err
	}
	ver, err := run(ctx, o.Iptables, "-V")
	if err != nil {
		return nil, err
	}
	res := &Result{Machine: labbench.ThisMachine(), Iptables: strings.TrimSpace(ver), Rules: o.Rules, Rounds: o.Rounds,
		Seconds: o.Duration.Seconds(), ConnWorkers: o.ConnWorkers}
	res.LoadAvg[0] = loadAvg()
	if err := runPair(ctx, o, res); err != nil {
		return nil, err
	}
	if err := runSync(ctx, o, res); err != nil {
		return nil, err
	}
	res.LoadAvg[1] = loadAvg()
	return res, nil
}

// dataplane installs and removes one configuration in the node namespace.
type dataplane struct {
	cfg       *Config
	install   func(ctx context.Context) error
	uninstall func(ctx context.Context) error
	applied   func(ctx context.Context) (int, error)
}

func runPair(ctx context.Context, o Options, res *Result) (err error) {
	o.progress("making the node and pod namespaces")
	pn, err := newPairNet(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := pn.close(); cerr != nil {
			o.progress("delete namespaces: %v (delete them with `ip netns del`)", cerr)
		}
	}()
	nodeNS, err := netns.GetFromName(pn.node)
	if err != nil {
		return err
	}
	defer nodeNS.Close()

	iperfCtx, stopIperf := context.WithCancel(context.WithoutCancel(ctx))
	iperfSrv := exec.CommandContext(iperfCtx, "ip", "netns", "exec", pn.server, "iperf3", "-s", "-p", fmt.Sprint(iperfPort))
	if err := iperfSrv.Start(); err != nil {
		stopIperf()
		return fmt.Errorf("start iperf3 -s: %w", err)
	}
	defer func() { stopIperf(); _ = iperfSrv.Wait() }()
	for _, port := range []int{connPort, deniedPort} {
		s, err := startAcceptServer(pn.server, port)
		if err != nil {
			return err
		}
		defer s.close()
	}
	if err := waitListening(ctx, pn.server, iperfPort); err != nil {
		return err
	}

	var dps []*dataplane
	dps = append(dps, &dataplane{cfg: &Config{Name: "none", Dataplane: "none"},
		install: func(context.Context) error { return nil }, uninstall: func(context.Context) error { return nil },
		applied: func(context.Context) (int, error) { return 0, nil }})
	for _, n := range o.Rules {
		c, err := policygen.Pair(n, pn.clientIP, pn.serverIP, iperfPort, connPort)
		if err != nil {
			return err
		}
		start := time.Now()
		rs, err := policy.Compile(c, policy.Node{Name: policygen.PairNode})
		if err != nil {
			return err
		}
		cfg := &Config{Name: fmt.Sprintf("nft-%d", n), Dataplane: "nft", Rules: n, CompileMs: ms(time.Since(start))}
		var tbl *nft.Table
		dps = append(dps, &dataplane{cfg: cfg,
			install: func(context.Context) error {
				var err error
				if tbl, err = nft.Open(int(nodeNS)); err != nil {
					return err
				}
				return tbl.Apply(rs)
			},
			uninstall: func(context.Context) error {
				err := tbl.Remove()
				return errors.Join(err, tbl.Close())
			},
			applied: func(ctx context.Context) (int, error) { return nftElements(ctx, pn.node) }})
	}
	for _, n := range o.Rules {
		c, err := policygen.Pair(n, pn.clientIP, pn.serverIP, iperfPort, connPort)
		if err != nil {
			return err
		}
		start := time.Now()
		rules, count, err := LinearRules(c, policygen.PairNode)
		if err != nil {
			return err
		}
		cfg := &Config{Name: fmt.Sprintf("iptables-%d", n), Dataplane: "iptables", Rules: n, CompileMs: ms(time.Since(start))}
		// One iptables rule per (peer, port): the last rule names two ports.
		if want := 2 * (n + 1); count != want {
			return fmt.Errorf("iptables rendering of %d rules per direction made %d rules, want %d", n, count, want)
		}
		dps = append(dps, &dataplane{cfg: cfg,
			install: func(ctx context.Context) error {
				cmd := exec.CommandContext(ctx, "ip", "netns", "exec", pn.node, o.Iptables+"-restore", "-w")
				cmd.Stdin = strings.NewReader(rules)
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("%s-restore: %w: %s", o.Iptables, err, out)
				}
				return nil
			},
			uninstall: func(ctx context.Context) error {
				for _, args := range [][]string{{"-F"}, {"-X"}} {
					if _, err := run(context.WithoutCancel(ctx), "ip", append([]string{"netns", "exec", pn.node, o.Iptables, "-w"}, args...)...); err != nil {
						return err
					}
				}
				return nil
			},
			applied: func(ctx context.Context) (int, error) { return iptablesRules(ctx, pn.node, o.Iptables) }})
	}

	type perRound struct{ gbps, cps map[string]float64 }
	rounds := make([]perRound, o.Rounds)
	installs := map[string][]float64{}
	gbps := map[string][]float64{}
	cps := map[string][]float64{}
	server := netip.AddrPortFrom(pn.serverIP, connPort)
	meter := o.meter()
	meter.SetTotal(o.Rounds * len(dps))
	meter.Step("%d rounds of %d configurations, %s of throughput and of connections each", o.Rounds, len(dps), o.Duration)
	for r := range o.Rounds {
		rounds[r] = perRound{gbps: map[string]float64{}, cps: map[string]float64{}}
		for i := range dps {
			dp := dps[(i+r)%len(dps)] // each round starts one configuration later
			cfg := dp.cfg
			start := time.Now()
			if err := dp.install(ctx); err != nil {
				return fmt.Errorf("%s: install: %w", cfg.Name, err)
			}
			installs[cfg.Name] = append(installs[cfg.Name], ms(time.Since(start)))
			m, err := measure(ctx, o, pn, dp, r == 0)
			uerr := dp.uninstall(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", cfg.Name, err)
			}
			if uerr != nil {
				return fmt.Errorf("%s: remove: %w", cfg.Name, uerr)
			}
			if m.failures > 0 && cfg.ConnFailures == 0 {
				o.progress("%s: %d connections to %s failed", cfg.Name, m.failures, server)
			}
			cfg.ConnFailures += m.failures
			cfg.Retransmits = append(cfg.Retransmits, m.retransmits)
			gbps[cfg.Name] = append(gbps[cfg.Name], m.gbps)
			cps[cfg.Name] = append(cps[cfg.Name], m.cps)
			rounds[r].gbps[cfg.Name], rounds[r].cps[cfg.Name] = m.gbps, m.cps
			o.progress("round %d/%d %-15s %6.2f Gbit/s %8.0f connections/s", r+1, o.Rounds, cfg.Name, m.gbps, m.cps)
			meter.Add(1)
		}
	}
	for _, dp := range dps {
		c := dp.cfg
		c.InstallMs = sample(installs[c.Name]).Median
		c.Gbps, c.ConnPerSec = sample(gbps[c.Name]), sample(cps[c.Name])
		res.Configs = append(res.Configs, *c)
	}
	lo, hi := o.Rules[0], o.Rules[1]
	for _, p := range [][3]string{
		{"nft high ÷ nft low", fmt.Sprintf("nft-%d", hi), fmt.Sprintf("nft-%d", lo)},
		{"iptables high ÷ iptables low", fmt.Sprintf("iptables-%d", hi), fmt.Sprintf("iptables-%d", lo)},
		{"nft high ÷ iptables high", fmt.Sprintf("nft-%d", hi), fmt.Sprintf("iptables-%d", hi)},
		{"nft low ÷ none", fmt.Sprintf("nft-%d", lo), "none"},
	} {
		var g, c []float64
		for _, rd := range rounds {
			g = append(g, rd.gbps[p[1]]/rd.gbps[p[2]])
			c = append(c, rd.cps[p[1]]/rd.cps[p[2]])
		}
		res.Ratios = append(res.Ratios, Ratio{Name: p[0], A: p[1], B: p[2], Gbps: sample(g), ConnPerSec: sample(c)})
	}
	return nil
}

type measurement struct {
	gbps, cps   float64
	failures    int64
	retransmits int64
}

// measure checks the configuration (on the first round: what the kernel
// holds, and that a port no rule admits is blocked exactly when a policy
// is installed), then runs iperf3 and the connection loop.
func measure(ctx context.Context, o Options, pn *pairNet, dp *dataplane, check bool) (measurement, error) {
	cfg := dp.cfg
	if check {
		n, err := dp.applied(ctx)
		if err != nil {
			return measurement{}, err
		}
		cfg.Applied = n
		if cfg.Dataplane != "none" && n < 2*cfg.Rules {
			return measurement{}, fmt.Errorf("the kernel holds %d rules or elements, want at least %d", n, 2*cfg.Rules)
		}
		ok, err := reachable(pn.client, netip.AddrPortFrom(pn.serverIP, deniedPort), 300*time.Millisecond)
		if err != nil {
			return measurement{}, err
		}
		cfg.DeniedPortBlocked = !ok
		if want := cfg.Dataplane != "none"; cfg.DeniedPortBlocked != want {
			return measurement{}, fmt.Errorf("a connection to port %d, which no rule admits, completed %v, want %v", deniedPort, ok, !want)
		}
	}
	// A bound, so a stuck iperf3 fails the run instead of hanging it.
	ictx, cancel := context.WithTimeout(ctx, o.Duration+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ictx, "ip", "netns", "exec", pn.client, "iperf3", "-c", pn.serverIP.String(), "-p", fmt.Sprint(iperfPort),
		"-t", fmt.Sprint(int(o.Duration.Seconds())), "-J").Output()
	if ctx.Err() != nil {
		return measurement{}, ctx.Err()
	}
	run, perr := labbench.ParseIperf(out)
	if perr != nil {
		return measurement{}, fmt.Errorf("iperf3 -c: %w", errors.Join(err, perr))
	}
	cps, failures, err := connRate(ctx, pn.client, netip.AddrPortFrom(pn.serverIP, connPort), o.Duration, o.ConnWorkers)
	if err != nil {
		return measurement{}, err
	}
	return measurement{gbps: run.Gbps, retransmits: run.Retransmits, cps: cps, failures: failures}, nil
}

// waitListening waits until a TCP port listens in a namespace (iperf3 -s
// starting).
func waitListening(ctx context.Context, ns string, port int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := run(ctx, "ip", "netns", "exec", ns, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port))
		if err == nil && strings.TrimSpace(out) != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("iperf3 -s does not listen on %d after 10 s", port)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// nftElements counts the elements of every set of Terrane's table in a
// namespace, as the kernel lists them.
func nftElements(ctx context.Context, ns string) (int, error) {
	out, err := run(ctx, "ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", nft.TableName)
	if err != nil {
		return 0, err
	}
	sets, err := nft.SetElements([]byte(out))
	if err != nil {
		return 0, err
	}
	n := 0
	for name, elems := range sets {
		if (strings.HasPrefix(name, "in") || strings.HasPrefix(name, "out")) && !strings.HasPrefix(name, "ingress") {
			n += elems
		}
	}
	return n, nil
}

// iptablesRules counts the rules of the pods' chains in a namespace.
func iptablesRules(ctx context.Context, ns, iptables string) (int, error) {
	out, err := run(ctx, "ip", "netns", "exec", ns, iptables, "-w", "-S")
	if err != nil {
		return 0, err
	}
	n := 0
	for line := range strings.Lines(out) {
		if (strings.HasPrefix(line, "-A "+iptIn) || strings.HasPrefix(line, "-A "+iptOut)) && !strings.HasSuffix(strings.TrimSpace(line), "-j DROP") {
			n++
		}
	}
	return n, nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
