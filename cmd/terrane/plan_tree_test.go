package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/terrane-net/terrane/internal/plan"
)

var updateTree = flag.Bool("update", false, "rewrite testdata/plan-tree/*.txt")

// TestPlanTreeGolden: the tree of two shipped examples in ASCII at 80
// columns, as docs/plan.md shows it; the Romana JSON form of a topology
// draws the same tree as its YAML. go test -run TestPlanTreeGolden -update
// rewrites the files.
func TestPlanTreeGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		code   int
		args   []string
		same   []string // the same plan from another file: the same tree
	}{
		{"aws-3zone.txt", 0, []string{"--topology", example("aws-3zone.yaml")}, []string{"--topology", example("aws-3zone.romana.json")}},
		{"l3-fabric-4rack-fill.txt", 1, []string{"--topology", example("l3-fabric-4rack.yaml"), "--fill", "--skew", "0.5", "--route-budget", "bgp=8"},
			[]string{"--topology", example("l3-fabric-4rack.romana.json"), "--fill", "--skew", "0.5", "--route-budget", "bgp=8"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, code, err := runCLI(t, append([]string{"plan", "--tree", "--ascii", "--width", "80"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d (%v):\n%s", code, tc.code, err, out)
			}
			path := filepath.Join("testdata", "plan-tree", tc.golden)
			if *updateTree {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("tree differs from %s (rerun with -update if the change is meant):\n--- got\n%s--- want\n%s", path, out, want)
			}
			if strings.ContainsAny(out, "▕█░├└│") {
				t.Errorf("--ascii drew block or box characters:\n%s", out)
			}
			other, _, _ := runCLI(t, append([]string{"plan", "--tree", "--ascii", "--width", "80"}, tc.same...)...)
			if other != out {
				t.Errorf("%v draws another tree:\n%s", tc.same, other)
			}
		})
	}
}

// treeRowRe matches a group's row: connectors, name, prefixes, hosts, the
// bar, the share, and the ToR's routes against its budget when it has one.
var treeRowRe = regexp.MustCompile(`^  [|` + "`" + ` -]*?([\w.-]+)\s+(\S+(?: \+\d+)?)\s+(\d+)  \[([#.]+)\]\s+([<>]?[\d.]+) %(?:  tor (\d+)(?:/(\d+))?( OVER)?)?$`)

// TestPlanTreeFiguresMatchJSON: every number the tree draws is the plan's
// own — each group's share and bar against allocated ÷ assignable, its
// hosts and ToR routes, the network's use and its vpc table against the
// JSON of the same plan. A tree that drew a figure of its own would fail.
func TestPlanTreeFiguresMatchJSON(t *testing.T) {
	for _, args := range [][]string{
		{"--topology", example("aws-3zone.yaml"), "--fill", "--skew", "0.8"},
		{"--topology", example("l3-fabric-4rack.yaml"), "--fill", "--skew", "0.5", "--route-budget", "bgp=8"},
		{"--topology", example("region-6zone.romana.json"), "--pods-per-host", "300"},
	} {
		t.Run(filepath.Base(args[1]), func(t *testing.T) {
			js, _, _ := runCLI(t, append([]string{"plan", "-o", "json"}, args...)...)
			var rep plan.Report
			if err := json.Unmarshal([]byte(js), &rep); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, js)
			}
			tree, _, _ := runCLI(t, append([]string{"plan", "--tree", "--width", "100"}, args...)...)
			sections := strings.Split(strings.TrimSpace(tree), "\n\n")
			for _, n := range rep.Networks {
				var rows []string
				var head string
				for i, s := range sections {
					if strings.HasPrefix(s, n.Name+"  "+n.CIDR+"  ") && i+1 < len(sections) {
						head, rows = s, strings.Split(sections[i+1], "\n")[1:]
					}
				}
				if head == "" {
					t.Fatalf("network %s not in the tree:\n%s", n.Name, tree)
				}
				if want := "  " + strconv.FormatUint(n.Allocated, 10) + " of " + strconv.FormatUint(n.Capacity, 10) + " addresses"; !strings.Contains(head, want) {
					t.Errorf("network %s: the used line lacks %q:\n%s", n.Name, want, head)
				}
				if n.Routes.VPCBudget > 0 && n.Routes.VPC > 0 {
					if want := strconv.Itoa(n.Routes.VPC) + " of " + strconv.Itoa(n.Routes.VPCBudget) + " routes"; !strings.Contains(head, want) {
						t.Errorf("network %s: the vpc table line lacks %q:\n%s", n.Name, want, head)
					}
				}
				if len(rows) != len(n.Groups) {
					t.Fatalf("network %s: %d rows for %d groups:\n%s", n.Name, len(rows), len(n.Groups), strings.Join(rows, "\n"))
				}
				for i, g := range n.Groups {
					m := treeRowRe.FindStringSubmatch(rows[i])
					if m == nil {
						t.Fatalf("row %q does not parse", rows[i])
					}
					if name := g.Path[strings.LastIndexByte(g.Path, '/')+1:]; m[1] != name {
						t.Errorf("row %d names %q, the report's group is %s", i, m[1], g.Path)
					}
					if m[3] != strconv.Itoa(g.Hosts) {
						t.Errorf("%s: %s hosts in the tree, %d in the report", g.Path, m[3], g.Hosts)
					}
					if len(g.Prefixes) > 0 && !strings.HasPrefix(m[2], g.Prefixes[0]) {
						t.Errorf("%s: prefixes %q in the tree, %v in the report", g.Path, m[2], g.Prefixes)
					}
					share := float64(g.Allocated) / float64(g.Assignable)
					if pct, err := strconv.ParseFloat(strings.Trim(m[5], "<>"), 64); err != nil || math.Abs(pct-100*share) > 0.1 {
						t.Errorf("%s: %s %% in the tree, the report says %d of %d (%.3f %%)", g.Path, m[5], g.Allocated, g.Assignable, 100*share)
					}
					cells, filled := len(m[4]), strings.Count(m[4], "#")
					if math.Abs(float64(filled)-share*float64(cells)) > 1 {
						t.Errorf("%s: %d of %d cells filled for %.3f", g.Path, filled, cells, share)
					}
					switch {
					case g.ToRRoutes == nil && m[6] != "":
						t.Errorf("%s: the tree shows tor %s for a group without a ToR", g.Path, m[6])
					case g.ToRRoutes != nil && m[6] != strconv.Itoa(*g.ToRRoutes):
						t.Errorf("%s: tor %q in the tree, %d in the report", g.Path, m[6], *g.ToRRoutes)
					case g.ToRRoutes != nil && n.Routes.BGPBudget > 0 && m[7] != strconv.Itoa(n.Routes.BGPBudget):
						t.Errorf("%s: budget %q in the tree, %d in the report", g.Path, m[7], n.Routes.BGPBudget)
					}
				}
			}
		})
	}
}

func TestPlanTreeWidthAndGlyphs(t *testing.T) {
	rep, err := planOf(t, "aws-3zone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, width := range []int{40, 60, 80, 132} {
		var out bytes.Buffer
		printPlanTree(&out, rep, treeStyle{width: width})
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "  |") || strings.HasPrefix(l, "  `") || strings.HasPrefix(l, "  GROUP") {
				if n := utf8.RuneCountInString(l); n > width-1 {
					t.Errorf("width %d: a %d-column row: %q", width, n, l)
				}
			}
		}
		if hasPrefixes := strings.Contains(out.String(), "PREFIXES"); hasPrefixes != (width >= 60) {
			t.Errorf("width %d: prefixes column shown %v; want it dropped only when the bar would have fewer than 5 cells (below 60 columns here)", width, hasPrefixes)
		}
	}
	var out bytes.Buffer
	printPlanTree(&out, rep, treeStyle{width: 80, unicode: true})
	s := out.String()
	for _, want := range []string{"├─ us-east-1a", "│  └─ subnet-8", "└─ us-east-1c", "▕", "█", "░▏"} {
		if !strings.Contains(s, want) {
			t.Errorf("unicode tree lacks %q:\n%s", want, s)
		}
	}
	if strings.ContainsAny(s, "#`") {
		t.Errorf("unicode tree has ASCII glyphs:\n%s", s)
	}
}

func planOf(t *testing.T, name string) (*plan.Report, error) {
	t.Helper()
	js, _, _ := runCLI(t, "plan", "-o", "json", "--topology", example(name))
	var rep plan.Report
	return &rep, json.Unmarshal([]byte(js), &rep)
}

func TestPlanTreeFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tree", "-o", "json"}, "--tree and -o json exclude each other"},
		{[]string{"--ascii"}, "add --tree"},
		{[]string{"--width", "100"}, "add --tree"},
		{[]string{"--tree", "--width", "20"}, "--width 20: use at least 40 columns"},
	} {
		out, code, err := runCLI(t, append([]string{"plan", "--topology", example("flat-l2.yaml")}, tc.args...)...)
		if code != 2 || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: exit %d, error %v; want exit 2 and %q\n%s", tc.args, code, err, tc.want, out)
		}
	}
}

// TestPlanProgressKeepsStdoutClean: with progress asked for as plain
// lines, a fill's steps go to stderr and stdout stays the JSON alone; an
// unknown TERRANE_PROGRESS is refused naming it.
func TestPlanProgressKeepsStdoutClean(t *testing.T) {
	t.Setenv("TERRANE_PROGRESS", "plain")
	cmd := newRootCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"plan", "--topology", example("l3-fabric-4rack.yaml"), "--fill", "-o", "json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var rep plan.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not the JSON alone: %v\n%s", err, stdout.String())
	}
	if !strings.Contains(stderr.String(), "] network fabric: filling 10.20.0.0/16") || !strings.Contains(stderr.String(), "counting routes") {
		t.Errorf("stderr lacks the fill's steps:\n%s", stderr.String())
	}
	if strings.ContainsAny(stderr.String(), "\r\x1b") {
		t.Errorf("plain progress wrote a carriage return or an escape: %q", stderr.String())
	}

	t.Setenv("TERRANE_PROGRESS", "fancy")
	_, code, err := runCLI(t, "plan", "--topology", example("flat-l2.yaml"))
	if code != 2 || err == nil || !strings.Contains(err.Error(), `TERRANE_PROGRESS="fancy": use auto, bar, plain or none`) {
		t.Errorf("exit %d, error %v: want 2 naming TERRANE_PROGRESS", code, err)
	}
}
