package lab

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/client"
)

// Report is a running lab's picture: its topology and state as the server
// holds it, every host's and router's routes, and the reachability matrix.
type Report struct {
	Name     string           `json:"name"`
	Dir      string           `json:"dir"`
	Scenario *Scenario        `json:"scenario"`
	Pods     []PodState       `json:"pods"`
	State    *client.Snapshot `json:"state,omitempty"`
	Routes   []*NodeRoutes    `json:"routes"`
	Probe    *ProbeReport     `json:"probe,omitempty"`
	// Seconds is how long `lab up` took, when the report follows one.
	Seconds float64 `json:"seconds,omitempty"`
}

// Gather builds a lab's report; probe runs the reachability matrix.
func Gather(ctx context.Context, st *State, probe bool) (*Report, error) {
	r := &Report{Name: st.Name, Dir: st.Dir, Scenario: st.Scenario, Pods: st.Pods}
	if _, err := os.Stat(st.names().ServerSocket()); err == nil {
		if c, err := AdminClient(st.names()); err == nil {
			if snap, err := c.Snapshot(ctx, 0, 0); err == nil {
				r.State = snap
			}
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

// Nodes lists the lab's routers, hosts, pods and the fabric.
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
	fmt.Fprintf(&b, "LAB %s: %s\n  directory %s\n\n", r.Name, title, r.Dir)

	b.WriteString("TOPOLOGY\n")
	for _, rt := range sc.Routers {
		bgp := ""
		if rt.BGP != nil {
			bgp = fmt.Sprintf("  BGP AS %d (BIRD)", rt.BGP.ASN)
		}
		fmt.Fprintf(&b, "  router %-12s spine %s%s\n", rt.Name, rt.Spine, bgp)
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
			fmt.Fprintf(&b, "  %-12s %-15s host %-12s namespace %-10s network %s\n", p.Name, p.Addr(), p.Host, p.Namespace, r.networkOf(p))
		}
	}
	b.WriteString("\nROUTES\n")
	for _, nr := range r.Routes {
		b.WriteString(indent(nr.Text(), "  "))
	}
	if r.Probe != nil {
		b.WriteString("\nREACHABILITY (TCP and ICMP, every pod to every pod)\n")
		b.WriteString(indent(r.Probe.Matrix(), "  "))
	}
	if r.Seconds > 0 {
		flag := ""
		if r.Name != "lab" {
			flag = " --name " + r.Name
		}
		fmt.Fprintf(&b, "\nup in %.1f s; next: terrane lab probe%s · terrane lab routes%s NODE · terrane lab down%s\n", r.Seconds, flag, flag, flag)
	}
	return b.String()
}

// networkOf names the network a pod's address is in, by the group
// prefixes the server holds; else what the pod asked for.
func (r *Report) networkOf(p PodState) string {
	if r.State != nil {
		for net, groups := range r.State.Groups {
			for _, ps := range groups {
				for _, pfx := range ps {
					if pfx.Contains(p.Addr()) {
						return net
					}
				}
			}
		}
	}
	if n := p.Annotations[NetworkAnnotation]; n != "" {
		return n
	}
	return "(default)"
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return list(s)
}

func indent(s, pfx string) string {
	var b strings.Builder
	for l := range strings.Lines(s) {
		b.WriteString(pfx + l)
	}
	return b.String()
}
