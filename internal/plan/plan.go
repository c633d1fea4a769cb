// Package plan simulates a topology before anything is deployed: hosts join,
// endpoints are allocated, and the resulting prefixes, blocks, utilisation
// and route counts are reported against their budgets. It runs the real
// allocator and routing core; it does no I/O.
package plan

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/meter"
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
	"github.com/terrane-net/terrane/internal/usage"
)

// DefaultVPCBudget is AWS's default route table limit.
const DefaultVPCBudget = 50

// MaxFill bounds --fill: a network with more addresses than this is planned
// with --pods-per-host instead.
const MaxFill = 1 << 21

// Options say what to simulate.
type Options struct {
	Mode ipam.PlanMode
	// Budgets bound the VPC table and each ToR; 0 means unbounded.
	Budgets ipam.Budgets
	// PodsPerHost endpoints are allocated on every host in every network.
	PodsPerHost int
	// Fill keeps allocating until the first failure, instead.
	Fill bool
	// Skew is the share of endpoints sent to the first leaf group (0..1);
	// the rest spread evenly over all hosts.
	Skew float64
	// Meter, when set, follows the allocation of each network (a fill of
	// a large network takes seconds); nil counts nothing.
	Meter meter.Meter
}

// meterEvery is how many endpoints the meter is told of at once: the
// allocation loop stays free of the meter's cost.
const meterEvery = 1024

// Report is the plan's result; its JSON field names are stable (docs/plan.md).
type Report struct {
	Fits     bool                  `json:"fits"`
	Errors   []string              `json:"errors"`
	Mode     string                `json:"mode"`
	Fill     bool                  `json:"fill"`
	Networks []usage.NetworkReport `json:"networks"`
}

// Run simulates the topology. Every error it returns is a problem with the
// input (exit status 2); a plan that does not fit is a Report with Fits
// false. hosts may be nil: then the topology's static
// hosts join, plus one synthetic host per leaf group that lists none,
// carrying the labels its selectors ask for.
func Run(t *topology.Topology, hosts []ParsedHost, opts Options) (*Report, error) {
	rep, _, err := Simulate(t, hosts, opts)
	return rep, err
}

// Simulate is Run that also returns the simulated allocator, for views
// that draw the state the report sums up (terrane plan --html).
func Simulate(t *topology.Topology, hosts []ParsedHost, opts Options) (*Report, *ipam.Allocator, error) {
	if math.IsNaN(opts.Skew) || opts.Skew < 0 || opts.Skew > 1 {
		return nil, nil, fmt.Errorf("--skew %v: must be between 0 and 1", opts.Skew)
	}
	if opts.PodsPerHost < 0 {
		return nil, nil, fmt.Errorf("--pods-per-host %d: must not be negative", opts.PodsPerHost)
	}
	if opts.Fill {
		for _, n := range t.Networks {
			if netx.Size(n.CIDR) > MaxFill {
				return nil, nil, fmt.Errorf("network %s (%s) has more than %d addresses to fill; plan it with --pods-per-host instead of --fill", n.Name, n.CIDR, MaxFill)
			}
		}
	}
	a, _, err := ipam.New(t, ipam.Options{Mode: opts.Mode, Budgets: opts.Budgets})
	if err != nil {
		return nil, nil, err
	}
	if hosts == nil {
		hosts = syntheticHosts(t)
	}
	for _, h := range hosts {
		if _, err := a.AddHost(ipam.HostSpec{Name: h.Name, IP: h.IP, Labels: h.Labels}); err != nil {
			return nil, nil, err
		}
	}
	rep := &Report{Fits: true, Errors: []string{}, Mode: opts.Mode.String(), Fill: opts.Fill}
	for _, n := range t.Networks {
		nr, err := simulate(a, n, opts)
		if err != nil {
			return nil, nil, err
		}
		if nr.FirstFailure != "" && !opts.Fill {
			rep.Fits = false
			rep.Errors = append(rep.Errors, fmt.Sprintf("network %s: %s", n.Name, nr.FirstFailure))
		}
		if b := nr.Routes.VPCBudget; b > 0 && nr.Routes.VPC > b {
			rep.Fits = false
			rep.Errors = append(rep.Errors, fmt.Sprintf("network %s: the vpc route table needs %d routes, over the budget of %d", n.Name, nr.Routes.VPC, b))
		}
		if b := nr.Routes.BGPBudget; b > 0 && nr.Routes.BGP > b {
			rep.Fits = false
			rep.Errors = append(rep.Errors, fmt.Sprintf("network %s: a ToR receives %d routes, over the bgp budget of %d", n.Name, nr.Routes.BGP, b))
		}
		if opts.Fill && nr.OverBudget {
			rep.Fits = false
			rep.Errors = append(rep.Errors, fmt.Sprintf("network %s: %s", n.Name, nr.FirstFailure))
		}
		rep.Networks = append(rep.Networks, nr)
	}
	return rep, a, nil
}

// syntheticHosts are the topology's static hosts plus one host per leaf
// group without any, labelled to be admitted there.
func syntheticHosts(t *topology.Topology) []ParsedHost {
	var out []ParsedHost
	seen := map[string]bool{}
	next := netip.MustParseAddr("198.18.0.1") // RFC 2544 benchmarking range
	for _, tr := range t.Trees {
		for _, g := range tr.Leaves {
			for _, h := range g.Hosts {
				if !seen[h.Name] {
					seen[h.Name] = true
					out = append(out, ParsedHost{Name: h.Name, IP: h.IP})
				}
			}
			if len(g.Hosts) > 0 {
				continue
			}
			labels := map[string]string{}
			for x := g; x != nil; x = x.Parent {
				l, _ := x.Selector.Labels()
				for k, v := range l {
					if _, ok := labels[k]; !ok {
						labels[k] = v
					}
				}
			}
			if !g.Admits(labels) {
				continue // a group no labels can reach, such as Romana padding
			}
			name := strings.ReplaceAll(g.Path, "/", ".")
			if len(t.Trees) > 1 {
				name = fmt.Sprintf("t%d.%s", tr.Index, name)
			}
			out = append(out, ParsedHost{Name: name, IP: next, Labels: labels})
			next = next.Next()
		}
	}
	return out
}

// simulate allocates endpoints in one network and reports on it.
func simulate(a *ipam.Allocator, n *topology.Network, opts Options) (usage.NetworkReport, error) {
	nr := usage.NetworkReport{Name: n.Name, CIDR: n.CIDR.String(), BlockSize: n.BlockBits}
	var hosts, first []string
	for _, h := range a.Hosts() {
		hosts = append(hosts, h.Name)
	}
	for _, g := range n.Tree.Leaves {
		for _, h := range a.Hosts() {
			if h.Groups[n.Name] == g.Path {
				first = append(first, h.Name)
			}
		}
		if len(first) > 0 {
			break
		}
	}
	alloc := func(k int, host string) bool {
		_, _, err := a.AllocateEndpoint(ipam.EndpointRequest{ID: fmt.Sprintf("%s/%d", n.Name, k), Host: host, Network: n.Name, Namespace: allowedNamespace(n)})
		if err != nil {
			nr.FirstFailure = err.Error()
			nr.OverBudget = errors.Is(err, ipam.ErrRouteBudget)
			if be := (*ipam.BudgetError)(nil); errors.As(err, &be) {
				nr.BudgetGroup, nr.BudgetTarget = be.Group, be.Target
			}
			return false
		}
		return true
	}
	// Endpoints go, one at a time, to the first leaf group's hosts while
	// they hold less than Skew of all endpoints, else round robin to all
	// hosts. --fill goes on until the first failure; otherwise there are
	// PodsPerHost endpoints per host in all.
	total := opts.PodsPerHost * len(hosts)
	m := meter.Or(opts.Meter)
	if opts.Fill {
		m.SetTotal(int(min(netx.Size(n.CIDR), MaxFill))) // at most: a fill stops at the first failure
		m.Step("network %s: filling %s", n.Name, n.CIDR)
	} else {
		m.SetTotal(total)
		m.Step("network %s: %d endpoints on %d hosts", n.Name, total, len(hosts))
	}
	var toFirst, rr, rf, made int
	for k := 0; len(hosts) > 0 && (opts.Fill || k < total); k++ {
		var h string
		if len(first) > 0 && float64(toFirst) < opts.Skew*float64(k+1) {
			h = first[rf%len(first)]
			rf++
			toFirst++
		} else {
			h = hosts[rr%len(hosts)]
			rr++
		}
		if !alloc(k, h) {
			break
		}
		if made++; made%meterEvery == 0 {
			m.Add(meterEvery)
		}
	}
	m.Add(made % meterEvery)
	m.Step("network %s: counting routes at every level", n.Name)
	d, err := usage.Describe(a, n, opts.Budgets)
	d.FirstFailure, d.OverBudget = nr.FirstFailure, nr.OverBudget
	d.BudgetGroup, d.BudgetTarget = nr.BudgetGroup, nr.BudgetTarget
	return d, err
}

// allowedNamespace is a namespace the network admits, for simulated pods.
func allowedNamespace(n *topology.Network) string {
	if len(n.Namespaces) > 0 {
		return n.Namespaces[0]
	}
	return "default"
}
