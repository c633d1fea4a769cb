// Package ui is Terrane's topology page: one view model, built from an
// allocator and the figures the rest of Terrane already computes (usage's
// network reports, the server's BGP and VPC status), and one HTML template
// with its small script and style, embedded in the binary. `terrane server`
// serves the page live; `terrane plan --html` writes it for a simulated
// state. The package does no I/O of its own: state in, HTML out.
package ui

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
	"github.com/terrane-net/terrane/internal/usage"
)

// SilentAfter is how long a host may go without a sign of life (heartbeat
// or address report) before the page marks it silent. Agents beat every
// 10 s and the server stores a beat at most every 15 s, so a live host is
// at most 25 s behind.
const SilentAfter = 40 * time.Second

// MaxBGPRows bounds the BGP sessions the page lists; the rest are counted
// and found through the search box.
const MaxBGPRows = 500

// Input is everything a view is built from. Reports are usage.Describe's
// (the server's /v1/plan, terrane plan): the page copies their figures and
// computes none of its own.
type Input struct {
	// Title names what the page shows ("server", "plan of FILE").
	Title string
	// Live is set when the page is served and follows changes.
	Live bool
	// Revision is the store revision the view is consistent at (live).
	Revision int64
	// Mode is the group prefix planning mode.
	Mode string
	// Alloc is the allocation state: hosts and blocks (with the agents'
	// reports set when live, so blocks count pods).
	Alloc   *ipam.Allocator
	Reports []usage.NetworkReport
	// BGP is the hosts' BGP status (GET /v1/bgp); nil for a plan.
	BGP *api.BGPReport
	// VPC is the reconciler's status (GET /v1/vpc); nil for a plan.
	VPC *api.VPCStatus
	// Seen is each host's last sign of life (live); Now is the view's time.
	Seen map[string]time.Time
	Now  time.Time
	// Fits and Errors are a plan's verdict (nil Fits: not a plan).
	Fits   *bool
	Errors []string
}

// View is the page's model.
type View struct {
	Title     string    `json:"title"`
	Live      bool      `json:"live"`
	Revision  int64     `json:"revision"`
	Mode      string    `json:"mode"`
	Generated time.Time `json:"generated"`
	Fits      *bool     `json:"fits,omitempty"`
	Errors    []string  `json:"errors,omitempty"`
	Networks  []Network `json:"networks"`
	// Gauges are every route table and ToR against its budget.
	Gauges []Gauge `json:"gauges"`
	// BGP lists sessions per host (at most MaxBGPRows); BGPMore counts
	// those left out.
	BGP     []BGPSession `json:"bgp"`
	BGPMore int          `json:"bgp_more,omitempty"`
	// BGPHosts counts hosts that route by bgp; BGPUp those with every
	// session established.
	BGPHosts int `json:"bgp_hosts"`
	BGPUp    int `json:"bgp_up"`
	// VPC is the reconciler's state (nil for a plan).
	VPC *api.VPCStatus `json:"vpc,omitempty"`
	// Hosts are every host with its blocks, for the script's lists.
	Hosts []Host `json:"hosts"`
	// Silent counts hosts with no sign of life for SilentAfter.
	Silent int `json:"silent"`
}

// Network is one network and its group tree.
type Network struct {
	Name      string            `json:"name"`
	CIDR      string            `json:"cidr"`
	BlockSize int               `json:"block_size"`
	Capacity  uint64            `json:"capacity"`
	Allocated uint64            `json:"allocated"`
	Share     float64           `json:"share"`
	Hosts     int               `json:"hosts"`
	Blocks    int               `json:"blocks"`
	Routes    usage.RouteReport `json:"routes"`
	// FirstFailure is why the plan's allocation first failed, if it did.
	FirstFailure string `json:"first_failure,omitempty"`
	// Groups are the top-level groups, each with its children.
	Groups []*Group `json:"groups"`
}

// Group is one group of a network's tree.
type Group struct {
	Network    string   `json:"network"`
	Path       string   `json:"path"`
	Name       string   `json:"name"`
	Mode       string   `json:"mode"`
	Leaf       bool     `json:"leaf"`
	Prefixes   []string `json:"prefixes"`
	Assignable uint64   `json:"assignable"`
	Hosts      int      `json:"hosts"`
	Blocks     int      `json:"blocks"`
	Allocated  uint64   `json:"allocated"`
	// InBlocks is the addresses inside the group's hosts' blocks.
	InBlocks uint64 `json:"in_blocks"`
	// Share is Allocated ÷ Assignable, the heat the page colours the
	// group with.
	Share    float64  `json:"share"`
	Children []*Group `json:"children,omitempty"`
}

// Gauge is one route target against its budget.
type Gauge struct {
	// Kind is "vpc" (a route table) or "bgp" (a ToR).
	Kind string `json:"kind"`
	// Name is the table's ID or the ToR's leaf group.
	Name    string `json:"name"`
	Network string `json:"network"`
	Used    int    `json:"used"`
	// Budget is 0 when unbounded.
	Budget int `json:"budget"`
	// Optimum is the fewest routes the target can do with.
	Optimum int `json:"optimum"`
	// Direct is the share of addresses routed straight to their host
	// (VPC tables; -1 when it does not apply).
	Direct float64 `json:"direct"`
	// Source says where the figure comes from: "reconciler" (the table
	// as written), "routing" (the routing core's desired set).
	Source string `json:"source"`
}

// Share is Used ÷ Budget (0 when unbounded).
func (g Gauge) Share() float64 {
	if g.Budget <= 0 {
		return 0
	}
	return float64(g.Used) / float64(g.Budget)
}

// BGPSession is one session of one host's speaker.
type BGPSession struct {
	Host     string    `json:"host"`
	Group    string    `json:"group"`
	Reported bool      `json:"reported"`
	Peer     string    `json:"peer,omitempty"`
	ASN      uint32    `json:"asn,omitempty"`
	State    string    `json:"state"`
	Since    time.Time `json:"since,omitzero"`
	Sent     uint64    `json:"sent"`
	Received uint64    `json:"received"`
	// Announced is how many prefixes the host announces.
	Announced int    `json:"announced"`
	Error     string `json:"error,omitempty"`
	// Stale is set when the host is silent: its agent's last report may
	// no longer be true.
	Stale bool `json:"stale,omitempty"`
}

// Host is one host and its blocks, as the script lists it.
type Host struct {
	Name string `json:"n"`
	IP   string `json:"ip,omitempty"`
	// Groups maps each network to the host's leaf group.
	Groups map[string]string `json:"g"`
	Blocks []Block           `json:"b"`
	// Seen is seconds since the last sign of life, -1 when unknown.
	Seen   int64 `json:"s"`
	Silent bool  `json:"x,omitempty"`
}

// Block is one block of a host.
type Block struct {
	Network string `json:"net"`
	Prefix  string `json:"p"`
	Used    int    `json:"u"`
	Size    uint64 `json:"z"`
}

// Build makes the view.
func Build(in Input) *View {
	v := &View{Title: in.Title, Live: in.Live, Revision: in.Revision, Mode: in.Mode, Generated: in.Now.UTC(), Fits: in.Fits, Errors: in.Errors,
		Networks: []Network{}, Gauges: []Gauge{}, BGP: []BGPSession{}, Hosts: []Host{}, VPC: in.VPC}
	if in.Alloc == nil {
		return v
	}
	t := in.Alloc.Topology()
	reports := map[string]usage.NetworkReport{}
	for _, r := range in.Reports {
		reports[r.Name] = r
	}
	inBlocks := map[string]map[string]uint64{} // network → leaf group → addresses in blocks
	for _, n := range t.Networks {
		r, ok := reports[n.Name]
		if !ok {
			continue
		}
		inBlocks[n.Name] = map[string]uint64{}
		for _, b := range in.Alloc.Blocks(n.Name) {
			inBlocks[n.Name][b.Group] = netx.AddSat(inBlocks[n.Name][b.Group], netx.Size(b.Prefix))
		}
		v.Networks = append(v.Networks, network(n, r, inBlocks[n.Name]))
		v.Gauges = append(v.Gauges, routingGauges(r)...)
	}
	if in.VPC != nil && in.VPC.Configured {
		// The reconciler's tables replace the routing core's figure: they
		// are what the cloud holds.
		v.Gauges = slices.DeleteFunc(v.Gauges, func(g Gauge) bool { return g.Kind == "vpc" })
		for _, tb := range in.VPC.Tables {
			groups := cmp.Or(strings.Join(tb.Groups, ", "), "all vpc groups") // as ctl vpc says it
			for _, f := range tb.Families {
				v.Gauges = append(v.Gauges, Gauge{Kind: "vpc", Name: tb.ID + " " + f.Family, Network: groups,
					Used: f.Routes, Budget: f.Budget, Optimum: f.Needed, Direct: f.DirectShare, Source: "reconciler"})
			}
		}
	}
	silent := map[string]bool{}
	for _, h := range in.Alloc.Hosts() {
		host := newHost(h, in)
		if host.Silent {
			v.Silent++
			silent[h.Name] = true
		}
		v.Hosts = append(v.Hosts, host)
	}
	v.BGP, v.BGPMore, v.BGPHosts, v.BGPUp = sessions(in.BGP, silent)
	byHost := map[string]int{}
	for i, h := range v.Hosts {
		byHost[h.Name] = i
	}
	for _, n := range t.Networks {
		for _, b := range in.Alloc.Blocks(n.Name) {
			if i, ok := byHost[b.Host]; ok {
				v.Hosts[i].Blocks = append(v.Hosts[i].Blocks, newBlock(n.Name, b))
			}
		}
	}
	return v
}

// HostOf is one host of in.Alloc as the view shows it, with its blocks
// (the search box's answer for a host).
func HostOf(in Input, name string) (Host, bool) {
	h, ok := in.Alloc.Host(name)
	if !ok {
		return Host{}, false
	}
	host := newHost(h, in)
	for _, n := range in.Alloc.Topology().Networks {
		for _, b := range in.Alloc.Blocks(n.Name) {
			if b.Host == name {
				host.Blocks = append(host.Blocks, newBlock(n.Name, b))
			}
		}
	}
	return host, true
}

func newHost(h ipam.HostInfo, in Input) Host {
	host := Host{Name: h.Name, Groups: h.Groups, Blocks: []Block{}, Seen: -1}
	if h.IP.IsValid() {
		host.IP = h.IP.String()
	}
	if at, ok := in.Seen[h.Name]; ok && in.Live {
		host.Seen = max(0, int64(in.Now.Sub(at)/time.Second))
		host.Silent = in.Now.Sub(at) >= SilentAfter
	} else if in.Live {
		host.Silent = true // registered, never heard from
	}
	return host
}

func newBlock(network string, b ipam.BlockInfo) Block {
	return Block{Network: network, Prefix: b.Prefix.String(), Used: b.Used, Size: netx.Size(b.Prefix)}
}

func network(n *topology.Network, r usage.NetworkReport, inBlocks map[string]uint64) Network {
	nw := Network{Name: n.Name, CIDR: r.CIDR, BlockSize: r.BlockSize, Capacity: r.Capacity, Allocated: r.Allocated,
		Share: r.UsableShare, Hosts: r.Hosts, Blocks: r.Blocks, Routes: r.Routes, FirstFailure: r.FirstFailure, Groups: []*Group{}}
	byPath := map[string]*Group{}
	for _, gr := range r.Groups {
		g := &Group{Network: n.Name, Path: gr.Path, Mode: gr.Mode, Prefixes: gr.Prefixes, Assignable: gr.Assignable,
			Hosts: gr.Hosts, Blocks: gr.Blocks, Allocated: gr.Allocated}
		if g.Assignable > 0 {
			g.Share = float64(g.Allocated) / float64(g.Assignable)
		}
		byPath[g.Path] = g
	}
	for _, tg := range n.Tree.All { // parents before children
		g := byPath[tg.Path]
		if g == nil {
			continue
		}
		g.Name, g.Leaf = tg.Name, tg.IsLeaf()
		for _, leaf := range slices.Sorted(maps.Keys(inBlocks)) {
			if leaf == tg.Path || strings.HasPrefix(leaf, tg.Path+"/") {
				g.InBlocks = netx.AddSat(g.InBlocks, inBlocks[leaf])
			}
		}
		if tg.Parent == nil {
			nw.Groups = append(nw.Groups, g)
		} else if p := byPath[tg.Parent.Path]; p != nil {
			p.Children = append(p.Children, g)
		}
	}
	return nw
}

// routingGauges are a network's budgets as usage reports them: its VPC
// table (when it has vpc groups) and each ToR.
func routingGauges(r usage.NetworkReport) []Gauge {
	var out []Gauge
	rr := r.Routes
	if rr.VPC > 0 || rr.VPCFloor > 0 {
		out = append(out, Gauge{Kind: "vpc", Name: "route table", Network: r.Name, Used: rr.VPC, Budget: rr.VPCBudget, Optimum: rr.VPCFloor, Direct: rr.VPCDirectShare, Source: "routing"})
	}
	for _, t := range rr.ToRs {
		out = append(out, Gauge{Kind: "bgp", Name: "ToR of " + t.Group, Network: r.Name, Used: t.Routes, Budget: rr.BGPBudget, Optimum: t.Optimum, Direct: -1, Source: "routing"})
	}
	return out
}

// sessions flattens the BGP report into one row per session (a host that
// has not reported, or reports no peer, is one row of its own). A silent
// host's sessions are stale and do not count as up.
func sessions(rep *api.BGPReport, silent map[string]bool) (rows []BGPSession, more, hosts, up int) {
	rows = []BGPSession{}
	if rep == nil {
		return rows, 0, 0, 0
	}
	var all []BGPSession
	for _, h := range rep.Hosts {
		hosts++
		group := strings.Join(slices.Sorted(maps.Values(h.Groups)), ", ")
		if !h.Reported || h.Status == nil {
			all = append(all, BGPSession{Host: h.Host, Group: group, State: "not reported"})
			continue
		}
		st := h.Status
		stale := silent[h.Host]
		allUp := len(st.Peers) > 0 && !stale
		if len(st.Peers) == 0 {
			all = append(all, BGPSession{Host: h.Host, Group: group, Reported: true, State: "no peer", Announced: len(st.Announced), Error: st.Error, Stale: stale})
		}
		for _, p := range st.Peers {
			allUp = allUp && p.State == "established"
			all = append(all, BGPSession{Host: h.Host, Group: group, Reported: true, Peer: p.Address.String(), ASN: p.ASN, State: p.State,
				Since: p.Since, Sent: p.PrefixesSent, Received: p.PrefixesReceived, Announced: len(st.Announced), Error: st.Error, Stale: stale})
			if p.State != "established" {
				all[len(all)-1].Error = cmp.Or(p.LastError, st.Error) // why it went down
			}
		}
		if allUp {
			up++
		}
	}
	// Sessions that are not established, or not known to be, first: what
	// an operator looks for.
	slices.SortStableFunc(all, func(x, y BGPSession) int {
		return cmp.Compare(boolInt(x.State == "established" && !x.Stale), boolInt(y.State == "established" && !y.Stale))
	})
	if len(all) > MaxBGPRows {
		more = len(all) - MaxBGPRows
		all = all[:MaxBGPRows]
	}
	return append(rows, all...), more, hosts, up
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Heat is the colour of a utilisation share: green when empty, through
// yellow, to red when full.
func Heat(share float64) string {
	share = min(max(share, 0), 1)
	return fmt.Sprintf("hsl(%d, 70%%, %d%%)", int(120*(1-share)), 42+int(8*(1-share)))
}

// Percent formats a share.
func Percent(share float64) string {
	switch {
	case share <= 0:
		return "0%"
	case share < 0.001:
		return "<0.1%"
	case share < 0.1:
		return fmt.Sprintf("%.1f%%", 100*share)
	}
	return fmt.Sprintf("%.0f%%", 100*share)
}

// Answer is what the search box shows: where a name or address lives and
// why it is allocated.
type Answer struct {
	Query string `json:"query"`
	// Kind is address, pod, vm-port, host or none.
	Kind string `json:"kind"`
	// Explanation is the server's `ctl endpoints explain` answer
	// (address, pod, VM port).
	Explanation *ipam.Explanation `json:"explanation,omitempty"`
	// Host is the host searched for, with its blocks.
	Host *Host `json:"host,omitempty"`
	// Message says why nothing was found.
	Message string `json:"message,omitempty"`
}

// HostByName finds a host of the view.
func (v *View) HostByName(name string) (*Host, bool) {
	i, ok := slices.BinarySearchFunc(v.Hosts, name, func(h Host, n string) int { return strings.Compare(h.Name, n) })
	if !ok {
		return nil, false
	}
	return &v.Hosts[i], true
}
