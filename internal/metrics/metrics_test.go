package metrics

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the metric tables of docs/metrics.md from the catalogue")

const (
	docsFile   = "../../docs/metrics.md"
	rulesFile  = "../../deploy/prometheus/terrane-rules.yaml"
	rulesTest  = "../../deploy/prometheus/terrane-rules.test.yaml"
	dashboard  = "../../deploy/grafana/terrane-dashboard.json"
	beginTable = "<!-- BEGIN %s METRICS: generated from internal/metrics/catalog.go by `go test ./internal/metrics -run TestDocs -update` -->\n"
	endTable   = "<!-- END %s METRICS -->"
)

// TestCatalogue: names follow Prometheus' conventions, each once.
func TestCatalogue(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range All {
		switch {
		case seen[d.Name]:
			t.Errorf("%s is defined twice", d.Name)
		case !strings.HasPrefix(d.Name, "terrane_"):
			t.Errorf("%s: want the terrane_ prefix", d.Name)
		case d.Type == Counter && !strings.HasSuffix(d.Name, "_total"):
			t.Errorf("%s: a counter's name ends in _total", d.Name)
		case d.Type != Counter && strings.HasSuffix(d.Name, "_total"):
			t.Errorf("%s: only a counter's name ends in _total", d.Name)
		case d.Type == Histogram && !strings.HasSuffix(d.Name, "_seconds"):
			t.Errorf("%s: Terrane's histograms are times, named _seconds", d.Name)
		case d.Where != "server" && d.Where != "agent":
			t.Errorf("%s: Where %q, want server or agent", d.Name, d.Where)
		case d.Help == "" || strings.Contains(d.Help, "|"):
			t.Errorf("%s: want a help text without | (it is a table cell in docs/metrics.md)", d.Name)
		}
		seen[d.Name] = true
	}
}

// TestDocs: docs/metrics.md lists every metric of the catalogue, as the
// catalogue defines it (the server's and agents' tests check the
// catalogue against real scrapes).
func TestDocs(t *testing.T) {
	data, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, where := range []string{"server", "agent"} {
		begin := strings.ReplaceAll(beginTable, "%s", strings.ToUpper(where))
		end := strings.ReplaceAll(endTable, "%s", strings.ToUpper(where))
		i, j := strings.Index(text, begin), strings.Index(text, end)
		if i < 0 || j < i {
			t.Fatalf("%s lacks the %s metrics table between\n%s and\n%s", docsFile, where, begin, end)
		}
		got, want := text[i+len(begin):j], Markdown(where)
		if got == want {
			continue
		}
		if *update {
			text = text[:i+len(begin)] + want + text[j:]
			continue
		}
		t.Errorf("%s: the %s metrics table differs from the catalogue; run go test ./internal/metrics -run TestDocs -update\n--- docs\n%s\n--- catalogue\n%s", docsFile, where, got, want)
	}
	if *update && text != string(data) {
		if err := os.WriteFile(docsFile, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var metricName = regexp.MustCompile(`\bterrane_[a-z0-9_]+`)

// checkNames fails for every terrane_* name in expr that is no metric
// of the catalogue (a histogram's _bucket, _count and _sum series are).
func checkNames(t *testing.T, where, expr string) int {
	t.Helper()
	names := metricName.FindAllString(expr, -1)
	for _, n := range names {
		if _, ok := Lookup(n); ok {
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if d, ok := Lookup(strings.TrimSuffix(n, suffix)); ok && d.Type == Histogram && strings.HasSuffix(n, suffix) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: %s is not a metric Terrane exposes (internal/metrics/catalog.go)", where, n)
		}
	}
	return len(names)
}

// TestPrometheusRules: the alert rules pass promtool's check and their
// unit tests (each alert firing and not firing), and name only metrics
// that exist. Without promtool the test is skipped, except in CI (CI
// set), where it fails: .ci/run installs Debian's prometheus package.
func TestPrometheusRules(t *testing.T) {
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		}
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if checkNames(t, rulesFile+": "+r.Alert, r.Expr) == 0 {
				t.Errorf("%s: %s names no Terrane metric", rulesFile, r.Alert)
			}
			alerts[r.Alert] = true
		}
	}
	// Every alert has a unit test (promtool runs them below).
	tests, err := os.ReadFile(rulesTest)
	if err != nil {
		t.Fatal(err)
	}
	for a := range alerts {
		if !bytes.Contains(tests, []byte("alertname: "+a+"\n")) {
			t.Errorf("%s has no test of %s", rulesTest, a)
		}
	}
	for _, a := range []string{"TerraneGroupNearlyFull", "TerraneToRRouteBudgetNearlyUsed", "TerraneVPCRouteBudgetNearlyUsed", "TerraneBGPSessionDown", "TerraneCheckFindings"} {
		if !alerts[a] {
			t.Errorf("%s lacks the alert %s", rulesFile, a)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed (CI is set, so the rules must be checked): apt-get install prometheus")
		}
		t.Skip("promtool is not installed: apt-get install prometheus (Debian) to check the alert rules")
	}
	dir, _ := filepath.Abs(filepath.Dir(rulesFile))
	for _, args := range [][]string{{"check", "rules", filepath.Base(rulesFile)}, {"test", "rules", filepath.Base(rulesTest)}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestGrafanaDashboard: the dashboard is valid JSON, every panel has a
// query, and every query names metrics that exist.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string
		UID    string
		Panels []struct {
			Type, Title string
			Targets     []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("%s: want a title and a uid", dashboard)
	}
	queries := 0
	used := map[string]bool{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if checkNames(t, "panel "+p.Title, q.Expr) == 0 {
				t.Errorf("panel %q: query %q names no Terrane metric", p.Title, q.Expr)
			}
			for _, n := range metricName.FindAllString(q.Expr, -1) {
				used[n] = true
			}
			queries++
		}
	}
	if queries < 10 {
		t.Errorf("%d queries: the dashboard is nearly empty", queries)
	}
	t.Logf("%d panels, %d queries, %d metrics", len(d.Panels), queries, len(used))
}
