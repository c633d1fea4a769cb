package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the terrane command in-process and returns stdout and the exit
// code main would use.
func runCLI(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	code := 0
	if err != nil {
		code = 2
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return out.String(), code, err
}

func example(name string) string { return filepath.Join("..", "..", "examples", name) }

func TestPlanTableFits(t *testing.T) {
	out, code, err := runCLI(t, "plan", "--topology", example("l3-fabric-4rack.yaml"), "--pods-per-host", "20")
	if code != 0 {
		t.Fatalf("exit %d (%v):\n%s", code, err, out)
	}
	for _, want := range []string{"NETWORK fabric", "rack-1", "allocated 80 of 65536", "bgp 1 (optimum 1, budget none)", "fits: yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestPlanJSONFieldsAreStable(t *testing.T) {
	out, code, err := runCLI(t, "plan", "--topology", example("aws-3zone.romana.json"), "--pods-per-host", "400", "--skew", "0.8", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d (%v):\n%s", code, err, out)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"fits", "errors", "networks"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("missing top-level field %q", k)
		}
	}
	n := doc["networks"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "cidr", "block_size", "capacity", "allocated", "usable_share", "routes", "groups"} {
		if _, ok := n[k]; !ok {
			t.Errorf("missing networks[0].%s", k)
		}
	}
	r := n["routes"].(map[string]any)
	for _, k := range []string{"host_max", "host_max_optimal", "bgp", "bgp_optimal", "vpc", "vpc_floor", "vpc_direct_share"} {
		if _, ok := r[k]; !ok {
			t.Errorf("missing networks[0].routes.%s", k)
		}
	}
	g := n["groups"].([]any)[0].(map[string]any)
	for _, k := range []string{"path", "prefixes", "assignable", "hosts", "blocks", "allocated"} {
		if _, ok := g[k]; !ok {
			t.Errorf("missing networks[0].groups[0].%s", k)
		}
	}
	// 24 hosts × 400 pods of a /16: usable_share is allocated/capacity.
	if share, alloc := n["usable_share"].(float64), n["allocated"].(float64); alloc != 9600 || share != 9600.0/65536 {
		t.Errorf("allocated %v, usable_share %.4f: want 9600 and 9600/65536", alloc, share)
	}
}

func TestPlanExitCodes(t *testing.T) {
	dir := t.TempDir()
	stray := filepath.Join(dir, "hosts.yaml")
	if err := os.WriteFile(stray, []byte("- {name: stray-node, ip: 192.0.2.50, labels: {zone: mars}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("networks: [{name: a, cidr: 10.0.0.1/8, blockSize: 26}]\ntopologies: [{networks: [a], groups: [{name: g}]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"fits", []string{"--topology", example("flat-l2.yaml")}, 0, ""},
		{"vpc budget exceeded", []string{"--topology", example("aws-3zone.yaml"), "--route-budget", "vpc=2"}, 1, "over the budget of 2"},
		{"endpoints do not fit", []string{"--topology", example("flat-l2.yaml"), "--pods-per-host", "70000"}, 1, "exhausted"},
		{"host no group admits", []string{"--topology", example("aws-3zone.yaml"), "--hosts", stray}, 2, "stray-node"},
		{"invalid topology names the field", []string{"--topology", bad}, 2, `networks[0].cidr: "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?`},
		{"missing topology", []string{}, 2, "--topology is required"},
		{"unreadable topology", []string{"--topology", filepath.Join(dir, "nope.yaml")}, 2, "no such file"},
		{"bad budget", []string{"--topology", example("flat-l2.yaml"), "--route-budget", "tor=5"}, 2, `unknown target "tor"`},
		{"bad mode", []string{"--topology", example("flat-l2.yaml"), "--mode", "fixed"}, 2, "use elastic or static"},
		{"bad skew", []string{"--topology", example("flat-l2.yaml"), "--fill", "--skew", "1.5"}, 2, "between 0 and 1"},
		{"fill and pods", []string{"--topology", example("flat-l2.yaml"), "--fill", "--pods-per-host", "3"}, 2, "exclude each other"},
		{"bad output", []string{"--topology", example("flat-l2.yaml"), "-o", "yaml"}, 2, "use table or json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code, err := runCLI(t, append([]string{"plan"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d (err %v)\n%s", code, tc.code, err, out)
			}
			msg := out
			if err != nil {
				msg += err.Error()
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("output/error lacks %q:\n%s", tc.want, msg)
			}
		})
	}
}

func TestParseBudgets(t *testing.T) {
	b, err := parseBudgets("vpc=20, bgp=7")
	if err != nil || b.VPC != 20 || b.BGP != 7 {
		t.Fatalf("parseBudgets = %+v, %v", b, err)
	}
	if b, err := parseBudgets("bgp=7"); err != nil || b.VPC != 50 || b.BGP != 7 {
		t.Fatalf("bgp alone must keep the default vpc budget: %+v, %v", b, err)
	}
	for _, s := range []string{"vpc", "vpc=-1", "vpc=x", "=3", "vpc=1,,bgp=2", "vpc=1,vpc=2"} {
		if _, err := parseBudgets(s); err == nil {
			t.Errorf("parseBudgets(%q) accepted", s)
		}
	}
}

func FuzzParseBudgets(f *testing.F) {
	f.Add("vpc=50,bgp=200")
	f.Add("")
	f.Add("vpc=")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseBudgets(s)
		if err == nil && (b.VPC < 0 || b.BGP < 0) {
			t.Fatalf("parseBudgets(%q) = %+v: negative budget accepted", s, b)
		}
	})
}

// TestPlanSaysWhichGroupPays: when the route budget ends the plan, the
// table and the JSON name the group the allocator refused.
func TestPlanSaysWhichGroupPays(t *testing.T) {
	out, code, err := runCLI(t, "plan", "--topology", example("aws-3zone.yaml"), "--route-budget", "vpc=2")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (%v):\n%s", code, err, out)
	}
	for _, want := range []string{"pays for the vpc budget: group us-east-1a/subnet-3", "first block for group us-east-1a/subnet-3", "vpc 2 (optimum 2, budget 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	out, code, err = runCLI(t, "plan", "--topology", example("aws-3zone.yaml"), "--route-budget", "vpc=2", "-o", "json")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (%v):\n%s", code, err, out)
	}
	var doc struct {
		Networks []struct {
			OverBudget   bool   `json:"over_budget"`
			BudgetGroup  string `json:"budget_group"`
			BudgetTarget string `json:"budget_target"`
		} `json:"networks"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if n := doc.Networks[0]; !n.OverBudget || n.BudgetGroup != "us-east-1a/subnet-3" || n.BudgetTarget != "vpc" {
		t.Errorf("networks[0] %+v: want over_budget, budget_group us-east-1a/subnet-3, budget_target vpc", n)
	}
}
