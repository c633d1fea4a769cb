package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// KernelRoute is one route of a node as `ip -j route` reports it.
type KernelRoute struct {
	Table    string `json:"table"`
	Type     string `json:"type,omitempty"`
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway,omitempty"`
	Dev      string `json:"dev,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Scope    string `json:"scope,omitempty"`
	PrefSrc  string `json:"prefsrc,omitempty"`
	Metric   int    `json:"metric,omitempty"`
}

// String renders r like `ip route`.
func (r KernelRoute) String() string {
	var b strings.Builder
	if r.Type != "" && r.Type != "unicast" {
		b.WriteString(r.Type + " ")
	}
	b.WriteString(r.Dst)
	for _, kv := range [][2]string{{"via", r.Gateway}, {"dev", r.Dev}, {"proto", r.Protocol}, {"scope", r.Scope}, {"src", r.PrefSrc}} {
		if kv[1] != "" && !(kv[0] == "scope" && kv[1] == "global") {
			b.WriteString(" " + kv[0] + " " + kv[1])
		}
	}
	if r.Metric != 0 {
		b.WriteString(" metric " + strconv.Itoa(r.Metric))
	}
	return b.String()
}

// Rule is one policy routing rule.
type Rule struct {
	Priority int    `json:"priority"`
	Src      string `json:"src,omitempty"`
	Table    string `json:"table"`
}

// NodeRoutes is a node's routing state: its rules and every route of every
// table but local.
type NodeRoutes struct {
	Node   string        `json:"node"`
	Kind   string        `json:"kind"` // host, router, pod, fabric
	Netns  string        `json:"netns"`
	Rules  []Rule        `json:"rules"`
	Routes []KernelRoute `json:"routes"`
	// BGP is a BGP router's daemon (BIRD or FRR): its sessions and table.
	BGP *BirdState `json:"bgp,omitempty"`
}

// tableNames names the tables Terrane uses.
func tableName(t string) string {
	switch t {
	case strconv.Itoa(RouterTable):
		return t + " (lab fabric)"
	case "250":
		return t + " (terrane agent)" // the agent's default --table
	case "":
		return "main"
	}
	return t
}

// ReadRoutes reads a namespace's rules and routes (IPv4 and IPv6, every
// table but local), sorted by table then destination.
func ReadRoutes(ctx context.Context, node, kind, netns string) (*NodeRoutes, error) {
	out := &NodeRoutes{Node: node, Kind: kind, Netns: netns, Rules: []Rule{}, Routes: []KernelRoute{}}
	for _, fam := range []string{"-4", "-6"} {
		var rs []KernelRoute
		if err := ipJSON(ctx, &rs, "-n", netns, fam, "route", "show", "table", "all"); err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.Table == "local" {
				continue
			}
			if r.Table == "" {
				r.Table = "main"
			}
			if (fam == "-6" && strings.HasPrefix(r.Dst, "fe80::")) || r.Type == "multicast" {
				continue // link-local noise on every IPv6 interface
			}
			out.Routes = append(out.Routes, r)
		}
		var rules []Rule
		if err := ipJSON(ctx, &rules, "-n", netns, fam, "rule", "show"); err != nil {
			return nil, err
		}
		if fam == "-4" {
			out.Rules = rules
		}
	}
	order := func(t string) int {
		switch t {
		case "main":
			return 1 << 40
		case "default":
			return 1<<40 + 1
		}
		n, _ := strconv.Atoi(t)
		return n
	}
	slices.SortStableFunc(out.Routes, func(a, b KernelRoute) int {
		if c := order(a.Table) - order(b.Table); c != 0 {
			return c
		}
		return 0
	})
	return out, nil
}

func ipJSON(ctx context.Context, v any, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"-j"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}

// Text renders the routes grouped by table, with the rules first.
func (nr *NodeRoutes) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (netns %s)\n", nr.Kind, nr.Node, nr.Netns)
	var rules []string
	for _, r := range nr.Rules {
		rules = append(rules, fmt.Sprintf("%d:%s", r.Priority, tableName(r.Table)))
	}
	fmt.Fprintf(&b, "  rules: %s\n", strings.Join(rules, "  "))
	table := "\x00"
	for _, r := range nr.Routes {
		if r.Table != table {
			table = r.Table
			fmt.Fprintf(&b, "  table %s\n", tableName(table))
		}
		fmt.Fprintf(&b, "    %s\n", r)
	}
	if nr.BGP != nil {
		b.WriteString(nr.BGP.Text())
	}
	return b.String()
}

// ReadNode reads a node's rules and routes and, for a BGP router, its
// BIRD's sessions and table.
func (s *State) ReadNode(ctx context.Context, nd Node) (*NodeRoutes, error) {
	nr, err := ReadRoutes(ctx, nd.Name, nd.Kind, nd.Netns)
	if err != nil {
		return nil, err
	}
	if r, ok := s.Scenario.Router(nd.Name); ok && nd.Kind == "router" && r.BGP != nil && (s.hasProcess("bird", r.Name) || s.hasProcess("bgpd", r.Name)) {
		if nr.BGP, err = ReadBGP(ctx, s, r.Name); err != nil {
			return nil, err
		}
	}
	return nr, nil
}

// hasProcess reports whether the lab started a process of role on node.
func (s *State) hasProcess(role, node string) bool {
	return slices.ContainsFunc(s.Processes, func(p Process) bool { return p.Role == role && p.Node == node })
}
