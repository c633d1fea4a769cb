package lab

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/netx"
)

// Report is a running lab's picture: its topology and state as the server
// holds it, every host's and router's routes, and the reachability matrix.
type Report struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
	// Kubeconfig is the lab's kube-apiserver's (labs with --k8s).
	Kubeconfig string        `json:"kubeconfig,omitempty"`
	Scenario   *Scenario     `json:"scenario"`
	Pods       []PodState    `json:"pods"`
	VMs        []VMState     `json:"vms,omitempty"`
	State      *api.Snapshot `json:"state,omitempty"`
	Routes     []*NodeRoutes `json:"routes"`
	Probe      *ProbeReport  `json:"probe,omitempty"`
	// VPC is the VPC router's table as the server's reconciler reports it
	// and as vpcd mirrored it (scenarios with a vpc router).
	VPC *VPCReport `json:"vpc,omitempty"`
	// Seconds is how long `lab up` took, when the report follows one.
	Seconds float64 `json:"seconds,omitempty"`
}

// Gather builds a lab's report; probe runs the reachability matrix.
func Gather(ctx context.Context, st *State, probe bool) (*Report, error) {
	r := &Report{Name: st.Name, Dir: st.Dir, Scenario: st.Scenario, Pods: st.Pods, VMs: st.VMs}
	if st.Kube != nil {
		r.Kubeconfig = st.Kube.Kubeconfig
	}
	if _, err := os.Stat(st.names().ServerSocket()); err == nil {
		if c, err := AdminClient(st.names()); err == nil {
			if snap, err := c.Snapshot(ctx, 0, 0); err == nil {
				r.State = snap
			}
			c.CloseIdleConnections()
		}
	}
	if _, ok := st.Scenario.VPCRouter(); ok {
		r.VPC = &VPCReport{}
		r.VPC.Mirror, _ = ReadVPCStatus(st.names())
		if c, err := AdminClient(st.names()); err == nil {
			r.VPC.Reconciler, _ = c.VPC(ctx)
			c.CloseIdleConnections()
		}
	}
	nodes, err := st.Nodes()
	if err != nil {
		return nil, err
	}
	for _, nd := range nodes {
		if nd.Kind != "host" && nd.Kind != "router" {
			continue
		}
		nr, err := st.ReadNode(ctx, nd)
		if err != nil {
			return nil, err
		}
		r.Routes = append(r.Routes, nr)
	}
	if vr, ok := st.Scenario.VPCRouter(); ok {
		for _, nr := range r.Routes {
			if nr.Node == vr.Name {
				r.VPC.PodsDirect, r.VPC.Pods = podsDirect(st, nr)
			}
		}
	}
	if probe {
		if r.Probe, err = Probe(ctx, st.Targets()); err != nil {
			return r, err
		}
	}
	return r, nil
}

// Node is one namespace of a lab.
type Node struct {
	Name, Kind, Netns string
}

// Nodes lists the lab's routers, hosts, pods, VMs and the fabric.
func (s *State) Nodes() ([]Node, error) {
	n := s.names()
	var out []Node
	for _, r := range s.Scenario.Routers {
		out = append(out, Node{r.Name, "router", n.Node(r.Name)})
	}
	for _, h := range s.Scenario.Hosts {
		out = append(out, Node{h.Name, "host", n.Node(h.Name)})
	}
	for _, p := range s.Pods {
		out = append(out, Node{p.Name, "pod", p.Netns})
	}
	for _, v := range s.VMs {
		out = append(out, Node{v.Name, "vm", v.Netns})
	}
	out = append(out, Node{"fabric", "fabric", n.Fabric()})
	return out, nil
}

// Node finds a node by name.
func (s *State) Node(name string) (Node, error) {
	nodes, _ := s.Nodes()
	var names []string
	for _, nd := range nodes {
		if nd.Name == name {
			return nd, nil
		}
		names = append(names, nd.Name)
	}
	return Node{}, fmt.Errorf("no node %q in lab %q; nodes: %s", name, s.Name, strings.Join(names, ", "))
}

// Text renders the report for a terminal.
func (r *Report) Text() string {
	var b strings.Builder
	sc := r.Scenario
	title := sc.Name
	if sc.Description != "" {
		title += " — " + sc.Description
	}
	fmt.Fprintf(&b, "LAB %s: %s\n  directory %s\n", r.Name, title, r.Dir)
	if r.Kubeconfig != "" {
		fmt.Fprintf(&b, "  kubernetes: export KUBECONFIG=%s\n", r.Kubeconfig)
	}
	b.WriteString("\n")

	b.WriteString("TOPOLOGY\n")
	for _, rt := range sc.Routers {
		var what []string
		if rt.Spine.IsValid() {
			what = append(what, "spine "+rt.Spine.String())
		}
		if rt.BGP != nil {
			daemon := "BIRD"
			if rt.BGP.RunsFRR() {
				daemon = "FRR"
			}
			what = append(what, fmt.Sprintf("BGP AS %d (%s)", rt.BGP.ASN, daemon))
		}
		if rt.VPC != nil {
			what = append(what, fmt.Sprintf("VPC route table %s, budget %d (a fake EC2, mirrored into its kernel)", rt.VPC.RouteTable, rt.VPC.Budget))
		}
		fmt.Fprintf(&b, "  router %-12s %s\n", rt.Name, strings.Join(what, "  "))
	}
	groups := map[string]map[string]string{} // host → network → group
	if r.State != nil {
		for _, h := range r.State.Hosts {
			groups[h.Name] = h.Groups
		}
	}
	for _, seg := range sc.Segments {
		via := "no router"
		if seg.Router != "" {
			via = fmt.Sprintf("router %s at %s", seg.Router, seg.Gateway)
		}
		fmt.Fprintf(&b, "  segment %-11s %-18s %s\n", seg.Name, seg.Subnet, via)
		for _, h := range sc.Hosts {
			if h.Segment != seg.Name {
				continue
			}
			var gs []string
			for _, net := range slices.Sorted(maps.Keys(groups[h.Name])) {
				gs = append(gs, net+":"+groups[h.Name][net])
			}
			fmt.Fprintf(&b, "    host %-12s %-15s labels %-12s groups %s\n", h.Name, h.IP, labelString(h.Labels), list(gs))
		}
	}
	if r.State != nil {
		b.WriteString("\nPREFIXES (group prefixes per network)\n")
		for _, net := range slices.Sorted(maps.Keys(r.State.Groups)) {
			fmt.Fprintf(&b, "  network %s\n", net)
			for _, g := range slices.Sorted(maps.Keys(r.State.Groups[net])) {
				fmt.Fprintf(&b, "    %-20s %s\n", g, prefixes(r.State.Groups[net][g]))
			}
		}
		b.WriteString("\nBLOCKS\n")
		for _, net := range slices.Sorted(maps.Keys(r.State.Blocks)) {
			for _, bl := range r.State.Blocks[net] {
				fmt.Fprintf(&b, "  %-8s %-18s host %-12s group %s\n", net, bl.Prefix, bl.Host, bl.Group)
			}
		}
	}
	if len(r.Pods) > 0 {
		b.WriteString("\nPODS\n")
		for _, p := range r.Pods {
			addrs := make([]string, 0, len(p.Addrs))
			for _, a := range p.Addrs {
				addrs = append(addrs, a.Addr().String())
			}
			fmt.Fprintf(&b, "  %-12s %-15s host %-12s namespace %-10s network %s\n", p.Name, strings.Join(addrs, ","), p.Host, p.Namespace, r.networkOf(p))
		}
	}
	if len(r.VMs) > 0 {
		b.WriteString("\nVMS (ports allocated through the API)\n")
		for _, v := range r.VMs {
			fmt.Fprintf(&b, "  %-12s %-15s host %-12s device %-14s network %s\n", v.Name, v.Addr, v.Host, v.Device, v.Network)
		}
	}
	if r.VPC != nil {
		b.WriteString("\n" + r.VPC.Text())
	}
	b.WriteString("\nROUTES\n")
	for _, nr := range r.Routes {
		b.WriteString(indent(nr.Text(), "  "))
	}
	if r.Probe != nil {
		b.WriteString("\nREACHABILITY (TCP and ICMP, every pod and VM to every other)\n")
		b.WriteString(indent(r.Probe.Matrix(), "  "))
	}
	if r.Seconds > 0 {
		flag := ""
		if r.Name != "lab" {
			flag = " --name " + r.Name
		}
		fmt.Fprintf(&b, "\nup in %.1f s; next: terrane lab probe%s · terrane lab routes%s NODE · terrane lab down%s\n", r.Seconds, flag, flag, flag)
		fmt.Fprintf(&b, "topology page in a browser: %s\n", UICommand(Names{Lab: r.Name, Dir: r.Dir}))
	}
	return b.String()
}

// networkOf names the networks a pod's addresses are in (a dual-stack
// pod's two, joined by a comma), by the group prefixes the server holds;
// else what the pod asked for.
func (r *Report) networkOf(p PodState) string {
	var nets []string
	if r.State != nil {
	addrs:
		for _, a := range p.Addrs {
			for net, groups := range r.State.Groups {
				for _, ps := range groups {
					for _, pfx := range ps {
						if pfx.Contains(a.Addr()) {
							nets = append(nets, net)
							continue addrs
						}
					}
				}
			}
		}
	}
	if len(nets) > 0 {
		return strings.Join(nets, ",")
	}
	if n := p.Annotations[NetworkAnnotation]; n != "" {
		return n
	}
	return "(default)"
}

func prefixes(ps []netip.Prefix) string { return netx.Join(ps, ", ", "none") }

func indent(s, pfx string) string {
	var b strings.Builder
	for l := range strings.Lines(s) {
		b.WriteString(pfx + l)
	}
	return b.String()
}

// VPCReport is the VPC router's route table: the reconciler's view and
// vpcd's.
type VPCReport struct {
	Reconciler *api.VPCStatus `json:"reconciler,omitempty"`
	Mirror     *VPCStatus     `json:"mirror,omitempty"`
	// PodsDirect of Pods are the lab's pods whose address the VPC router's
	// table sends straight to the pod's host (the longest match targets
	// it); the others go through an aggregate's host first. The pods'
	// direct share: the server does not know pod addresses.
	PodsDirect int `json:"podsDirect"`
	Pods       int `json:"pods"`
}

// podsDirect counts the pods the VPC router's table (its RouterTable
// routes) delivers straight to their own host.
func podsDirect(st *State, vpc *NodeRoutes) (direct, total int) {
	type route struct {
		dst netip.Prefix
		via netip.Addr
	}
	var table []route
	for _, r := range vpc.Routes {
		dst := r.Dst
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		p, err1 := netip.ParsePrefix(dst)
		v, err2 := netip.ParseAddr(r.Gateway)
		if r.Table == strconv.Itoa(RouterTable) && err1 == nil && err2 == nil {
			table = append(table, route{p, v})
		}
	}
	for _, p := range st.Pods {
		total++
		best := -1
		var via netip.Addr
		for _, r := range table {
			if r.dst.Contains(p.Addr()) && r.dst.Bits() > best {
				best, via = r.dst.Bits(), r.via
			}
		}
		if h, ok := st.Scenario.Host(p.Host); ok && best >= 0 && h.IP == via {
			direct++
		}
	}
	return direct, total
}

// Text renders the table's routes against its budget and the direct share.
func (v *VPCReport) Text() string {
	var b strings.Builder
	b.WriteString("VPC ROUTE TABLE\n")
	if m := v.Mirror; m != nil {
		fmt.Fprintf(&b, "  %s at the fake EC2 %s: %d routes of budget %d (at most %d ever), %d changes, source/dest check off on %d instances\n",
			m.RouteTable, m.Endpoint, m.Routes, m.Budget, m.MaxRoutes, m.Changes, len(m.SourceDestCheckOff))
		if m.Error != "" {
			fmt.Fprintf(&b, "  mirror error: %s\n", m.Error)
		}
	}
	if v.Pods > 0 {
		fmt.Fprintf(&b, "  pods routed straight to their host: %d of %d (%.1f%%); the rest through a host of their aggregated group\n",
			v.PodsDirect, v.Pods, 100*float64(v.PodsDirect)/float64(v.Pods))
	}
	if rc := v.Reconciler; rc != nil {
		for _, t := range rc.Tables {
			for _, f := range t.Families {
				fmt.Fprintf(&b, "  reconciler: %s %s %d routes, budget %d, needed %d, fits %v, direct share %.1f%% (of block addresses %.1f%%)\n",
					t.ID, f.Family, f.Routes, f.Budget, f.Needed, f.Fits, 100*f.DirectShare, 100*f.DirectBlockShare)
			}
			for _, p := range t.Problems {
				fmt.Fprintf(&b, "  problem: %s\n", p)
			}
		}
		if rc.LastError != "" {
			fmt.Fprintf(&b, "  reconciler error: %s\n", rc.LastError)
		}
	}
	return b.String()
}
