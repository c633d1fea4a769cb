package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/terrane-net/terrane/internal/plan"
	"github.com/terrane-net/terrane/internal/progress"
	"github.com/terrane-net/terrane/internal/usage"
)

// treeFlags are plan's --tree, --ascii and --width.
type treeFlags struct {
	tree, ascii bool
	width       int
}

func (tf *treeFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&tf.tree, "tree", false, "print the plan as a tree: groups with their prefixes, hosts, a utilisation bar and each ToR's routes against its budget")
	f.BoolVar(&tf.ascii, "ascii", false, "with --tree: draw with ASCII (# and .) even on a UTF-8 terminal")
	f.IntVar(&tf.width, "width", 0, "with --tree: columns to fit (default: the terminal's width, else $COLUMNS, else 80)")
}

// check refuses combinations that say two things at once.
func (tf *treeFlags) check(output string) error {
	if tf.tree && output == "json" {
		return fmt.Errorf("--tree and -o json exclude each other: --tree is a picture for a terminal, -o json the figures for a program")
	}
	if (tf.ascii || tf.width != 0) && !tf.tree {
		return fmt.Errorf("--ascii and --width shape --tree's picture; add --tree")
	}
	if tf.width < 0 || (tf.width > 0 && tf.width < 40) {
		return fmt.Errorf("--width %d: use at least 40 columns (0: the terminal's width)", tf.width)
	}
	return nil
}

// print draws the tree on w: block characters on a UTF-8 terminal, ASCII
// otherwise, fitted to the terminal's width.
func (tf *treeFlags) print(w io.Writer, rep *plan.Report) {
	o := treeStyle{width: tf.width, unicode: !tf.ascii && progress.IsTerminal(w) && progress.UTF8()}
	if o.width == 0 {
		o.width = progress.Width(w)
	}
	printPlanTree(w, rep, o)
}

type treeStyle struct {
	width   int
	unicode bool
}

// glyphs are the tree's connectors: a child, the last child, a parent's
// line going on, nothing going on.
func (s treeStyle) glyphs() (tee, last, bar, blank string) {
	if s.unicode {
		return "├─ ", "└─ ", "│  ", "   "
	}
	return "|- ", "`- ", "|  ", "   "
}

// treeRow is one group's line.
type treeRow struct {
	name, prefixes, hosts, routes string
	used                          float64 // allocated ÷ assignable; < 0: no prefixes
}

// printPlanTree draws each network of the plan as a tree of its groups,
// every figure taken from the report (the same as -o json prints).
func printPlanTree(w io.Writer, rep *plan.Report, s treeStyle) {
	for i, n := range rep.Networks {
		if i > 0 {
			fmt.Fprintln(w)
		}
		printNetworkTree(w, n, rep.Mode, s)
	}
	printFits(w, rep)
}

func printNetworkTree(w io.Writer, n usage.NetworkReport, mode string, s treeStyle) {
	fmt.Fprintf(w, "%s  %s  blocks /%d  %s  %s  %s\n", n.Name, n.CIDR, n.BlockSize, mode, treePlural(n.Hosts, "host"), treePlural(n.Blocks, "block"))
	hasMode := func(m string) bool {
		for _, g := range n.Groups {
			if g.Mode == m {
				return true
			}
		}
		return false
	}
	// The network's gauges: its addresses, then each route target that
	// has a budget.
	const label = "%-10s "
	gauge := func(frac float64) string { return progress.Meter(frac, 20, s.unicode) }
	fmt.Fprintf(w, "  "+label+"%s %s  %d of %d addresses\n", "used", gauge(n.UsableShare), treePercent(n.UsableShare), n.Allocated, n.Capacity)
	fmt.Fprintf(w, "  "+label+"host max %d (optimum %d) toward other hosts\n", "routes", n.Routes.HostMax, n.Routes.HostMaxOptimal)
	if hasMode("bgp") {
		if b := n.Routes.BGPBudget; b > 0 {
			fmt.Fprintf(w, "  "+label+"%s %s  most on one ToR: %d of %d (optimum %d)%s\n", "bgp", gauge(float64(n.Routes.BGP)/float64(b)), treePercent(float64(n.Routes.BGP)/float64(b)), n.Routes.BGP, b, n.Routes.BGPOptimal, treeOver(n.Routes.BGP, b))
		} else {
			fmt.Fprintf(w, "  "+label+"most on one ToR: %d (optimum %d), no budget\n", "bgp", n.Routes.BGP, n.Routes.BGPOptimal)
		}
	}
	if hasMode("vpc") {
		direct := fmt.Sprintf("direct %s", strings.TrimSpace(treePercent(n.Routes.VPCDirectShare)))
		if b := n.Routes.VPCBudget; b > 0 {
			fmt.Fprintf(w, "  "+label+"%s %s  %d of %d routes (optimum %d, %s)%s\n", "vpc table", gauge(float64(n.Routes.VPC)/float64(b)), treePercent(float64(n.Routes.VPC)/float64(b)), n.Routes.VPC, b, n.Routes.VPCFloor, direct, treeOver(n.Routes.VPC, b))
		} else {
			fmt.Fprintf(w, "  "+label+"%d routes (optimum %d, %s), no budget\n", "vpc table", n.Routes.VPC, n.Routes.VPCFloor, direct)
		}
	}
	if n.FirstFailure != "" {
		fmt.Fprintf(w, "  %-10s %s\n", "stopped", n.FirstFailure)
	}
	if n.BudgetGroup != "" {
		fmt.Fprintf(w, "  %-10s group %s pays for the %s budget\n", "", n.BudgetGroup, n.BudgetTarget)
	}
	rows := treeRows(n, s)
	if len(rows) == 0 {
		return
	}
	printTreeRows(w, rows, s)
}

// treeRows lays the groups (parents before children, as the report lists
// them) out as a tree.
func treeRows(n usage.NetworkReport, s treeStyle) []treeRow {
	tee, last, bar, blank := s.glyphs()
	parent := func(p string) string {
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			return p[:i]
		}
		return ""
	}
	// The last child of each parent closes its branch.
	lastChild := map[string]string{}
	for _, g := range n.Groups {
		lastChild[parent(g.Path)] = g.Path
	}
	isLast := map[string]bool{}
	for _, p := range lastChild {
		isLast[p] = true
	}
	var rows []treeRow
	for _, g := range n.Groups {
		// The connectors: one column per ancestor, then this group's own.
		var indent []string
		for p := parent(g.Path); p != ""; p = parent(p) {
			if isLast[p] {
				indent = append([]string{blank}, indent...)
			} else {
				indent = append([]string{bar}, indent...)
			}
		}
		conn := tee
		if isLast[g.Path] {
			conn = last
		}
		name := g.Path[strings.LastIndexByte(g.Path, '/')+1:]
		r := treeRow{name: strings.Join(indent, "") + conn + name, hosts: fmt.Sprint(g.Hosts), used: -1}
		switch len(g.Prefixes) {
		case 0:
			r.prefixes = "-"
		case 1:
			r.prefixes = g.Prefixes[0]
		default:
			r.prefixes = fmt.Sprintf("%s +%d", g.Prefixes[0], len(g.Prefixes)-1)
		}
		if g.Assignable > 0 {
			r.used = float64(g.Allocated) / float64(g.Assignable)
		}
		if g.ToRRoutes != nil {
			if b := n.Routes.BGPBudget; b > 0 {
				r.routes = fmt.Sprintf("tor %d/%d%s", *g.ToRRoutes, b, treeOver(*g.ToRRoutes, b))
			} else {
				r.routes = fmt.Sprintf("tor %d", *g.ToRRoutes)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// printTreeRows prints the rows in columns; the bar takes the width left
// (at most 40 cells), and the prefixes column goes when that would leave
// the bar fewer than 5.
func printTreeRows(w io.Writer, rows []treeRow, s treeStyle) {
	nameW, prefW, hostW, routeW := len("GROUP"), len("PREFIXES"), len("HOSTS"), 0
	for _, r := range rows {
		nameW = max(nameW, utf8.RuneCountInString(r.name))
		prefW = max(prefW, len(r.prefixes))
		hostW = max(hostW, len(r.hosts))
		routeW = max(routeW, len(r.routes))
	}
	if routeW > 0 {
		routeW = max(routeW, len("ROUTES"))
	}
	const pctW = 7 // "100.0 %"
	fixed := func(withPrefixes bool) int {
		n := 2 + nameW + 2 + hostW + 2 + 2 + 1 + pctW // indent, name, hosts, bar's frame, pct
		if withPrefixes {
			n += 2 + prefW
		}
		if routeW > 0 {
			n += 2 + routeW
		}
		return n
	}
	showPrefixes := true
	cells := s.width - 1 - fixed(true)
	if cells < 5 {
		showPrefixes = false
		cells = s.width - 1 - fixed(false)
	}
	// A deep tree on a narrow terminal may still overflow: three cells
	// are the least a bar says anything with.
	cells = min(max(cells, 3), 40)

	pad := func(x string, n int) string { return x + strings.Repeat(" ", max(0, n-utf8.RuneCountInString(x))) }
	line := func(name, pref, hosts, bar, routes string) string {
		l := "  " + pad(name, nameW)
		if showPrefixes {
			l += "  " + pad(pref, prefW)
		}
		l += "  " + strings.Repeat(" ", hostW-len(hosts)) + hosts + "  " + bar
		if routeW > 0 {
			l += "  " + routes
		}
		return strings.TrimRight(l, " ")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, line("GROUP", "PREFIXES", "HOSTS", pad("USED", cells+3+pctW), "ROUTES"))
	for _, r := range rows {
		bar := pad("", cells+2) + " " + fmt.Sprintf("%*s", pctW, "-")
		if r.used >= 0 {
			bar = progress.Meter(r.used, cells, s.unicode) + " " + treePercent(r.used)
		}
		fmt.Fprintln(w, line(r.name, r.prefixes, r.hosts, bar, r.routes))
	}
}

// treePercent is a share as "  7.8 %", one decimal, 7 columns. Like the
// bar, it never rounds a little to nothing nor almost all to all.
func treePercent(share float64) string {
	switch p := 100 * share; {
	case p > 0 && p < 0.05:
		return " <0.1 %"
	case p < 100 && p >= 99.95:
		return ">99.9 %"
	default:
		return fmt.Sprintf("%5.1f %%", p)
	}
}

// treeOver marks a count above its budget.
func treeOver(n, budget int) string {
	if budget > 0 && n > budget {
		return " OVER"
	}
	return ""
}

func treePlural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
