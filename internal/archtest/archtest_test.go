package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/terrane-net/terrane"

type purePkg struct {
	path     string
	required bool
}

// purePkgs are the core packages that must stay pure: standard library plus a
// short allow-list only, and no I/O, clock or logging. Those marked required
// must exist; the others are checked once they have Go files.
var purePkgs = []purePkg{
	{mod + "/internal/netx", true},
	{mod + "/internal/topology", true},
	{mod + "/internal/ipam", false},
	{mod + "/internal/routing", false},
	{mod + "/internal/dataplane", false},
	{mod + "/internal/fielderr", false},
	{mod + "/internal/usage", false},
	{mod + "/internal/policy", false},
}

// adapters: each heavy dependency is imported directly by one adapter
// package only (and, for Kubernetes, by the test harness that runs a real
// control plane for that adapter's tests).
var adapters = map[string][]string{
	"github.com/vishvananda/netlink": {mod + "/internal/dataplane/linux"},
	"go.etcd.io/bbolt":               {mod + "/internal/store/bolt"},
	"github.com/osrg/gobgp":          {mod + "/internal/bgp/gobgp"},
	"github.com/aws/aws-sdk-go-v2":   {mod + "/internal/cloud/aws"},
	"github.com/aws/smithy-go":       {mod + "/internal/cloud/aws"},
	"github.com/cilium/ebpf":         {mod + "/internal/dataplane/ebpf"},
	"github.com/google/nftables":     {mod + "/internal/dataplane/nft"},
	"k8s.io/client-go":               k8sAdapters,
	"k8s.io/apimachinery":            k8sAdapters,
	"k8s.io/api":                     k8sAdapters,
}

// k8sAdapters may import the Kubernetes client libraries: the store on the
// Kubernetes API, the controllers and TokenReview authenticator, the test
// harness, and the lab's Nodes, Pods and lab kubelet (internal/lab itself
// stays free of client-go behind labkube's Wirer).
var k8sAdapters = []string{mod + "/internal/store/kubernetes", mod + "/internal/kube", mod + "/internal/k8stest", mod + "/internal/lab/labkube"}

// checkAdapters reports packages that import a heavy dependency directly
// although they are not its adapter.
func checkAdapters(pkgs []Package) []string {
	var v []string
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			for dep, allowed := range adapters {
				if (imp == dep || strings.HasPrefix(imp, dep+"/")) && !slices.Contains(allowed, p.ImportPath) {
					v = append(v, fmt.Sprintf("%s imports %q (rule: only %s may import it)", p.ImportPath, imp, strings.Join(allowed, " and ")))
				}
			}
		}
	}
	return v
}

func TestAdapters(t *testing.T) {
	var own []Package
	for _, p := range goList(t) {
		if strings.HasPrefix(p.ImportPath, mod+"/") {
			own = append(own, p)
		}
	}
	for _, v := range checkAdapters(own) {
		t.Error(v)
	}
	// The rule can fail.
	bad := []Package{
		{ImportPath: mod + "/internal/ipam", Imports: []string{"github.com/vishvananda/netlink"}},
		{ImportPath: mod + "/internal/server", Imports: []string{"k8s.io/client-go/rest"}},
		{ImportPath: mod + "/internal/store/kubernetes", Imports: []string{"k8s.io/client-go/dynamic", "k8s.io/apimachinery/pkg/runtime"}},
		{ImportPath: mod + "/internal/k8stest", Imports: []string{"k8s.io/client-go/rest"}},
	}
	if got := checkAdapters(bad); len(got) != 2 {
		t.Fatalf("checkAdapters found %d violations, want 2 (ipam importing netlink, server importing client-go): %q", len(got), got)
	}
}

// allowedThirdParty are the non-standard module path prefixes a pure package
// may depend on (directly or transitively), besides the other pure packages.
var allowedThirdParty = []string{"go4.org/netipx", "sigs.k8s.io/yaml", "go.yaml.in/yaml"}

// yamlPrefixes may be imported directly only by yamlImporter (for parsing).
var (
	yamlPrefixes = []string{"sigs.k8s.io/yaml", "go.yaml.in/yaml"}
	yamlImporter = mod + "/internal/topology"
)

// forbiddenDirect are standard packages a pure package must not import
// directly: no I/O, no logging. "time" is allowed for its values (a
// time.Time passed in is data); reading or waiting on the clock is not
// (clockFuncs, checked in the source).
var forbiddenDirect = []string{"os", "net/http", "log", "log/slog"}

// clockFuncs are the functions of package time that read or wait on the
// clock: a pure package calls none of them.
var clockFuncs = []string{"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "Tick", "NewTimer", "NewTicker"}

// clockCalls lists the uses of clockFuncs in the Go files of dir, as
// "file:line: time.F".
func clockCalls(dir string, files []string) ([]string, error) {
	var out []string
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		if err != nil {
			return nil, err
		}
		local := ""
		for _, imp := range f.Imports {
			if imp.Path.Value == `"time"` {
				local = "time"
				if imp.Name != nil {
					local = imp.Name.Name
				}
			}
		}
		if local == "" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == local && slices.Contains(clockFuncs, sel.Sel.Name) {
					out = append(out, fmt.Sprintf("%s:%d: time.%s", name, fset.Position(sel.Pos()).Line, sel.Sel.Name))
				}
			}
			return true
		})
	}
	return out, nil
}

// cniPkg must not depend (even transitively) on any cniBanned module.
var (
	cniPkg    = mod + "/cmd/terrane-cni"
	cniBanned = []string{
		"k8s.io/client-go", "github.com/osrg/gobgp", "go.etcd.io/etcd",
		"go.etcd.io/bbolt", "github.com/aws/aws-sdk-go-v2", "github.com/cilium/ebpf",
		"github.com/prometheus/client_golang", // metrics are the agent's, not the plugin's
		// One plugin process starts per pod: net/http (with TLS, HTTP/2 and
		// compression) costs every one of them its package initialisation;
		// cniapi.Client speaks the socket's HTTP without it.
		"net/http",
	}
)

// livePkgs run the cluster; none may depend on the planner, which is a
// simulator (its reports come from the pure internal/usage).
var (
	livePkgs   = []string{mod + "/internal/agent", mod + "/internal/server", mod + "/internal/client", mod + "/internal/api", mod + "/internal/kube"}
	plannerPkg = mod + "/internal/plan"
)

// agentPkg must not depend on any agentBanned package: the agent is a loop
// around the pure core, and cmd/terrane hands it its adapters (dataplane,
// BGP speaker, node-local store), as it does for the dataplane.
var (
	agentPkg    = mod + "/internal/agent"
	agentBanned = []string{
		"github.com/osrg/gobgp", mod + "/internal/bgp/gobgp",
		"github.com/vishvananda/netlink", mod + "/internal/dataplane/linux",
		"go.etcd.io/bbolt", mod + "/internal/store/bolt",
	}
)

// Package is the subset of `go list -json` output the rules need.
type Package struct {
	ImportPath string
	Dir        string
	Standard   bool
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

func (p *Package) exists() bool { return p != nil && len(p.GoFiles)+len(p.CgoFiles) > 0 }

// under reports whether path is prefix or a package inside it.
func under(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// isStd reports whether path is a standard-library package, trusting go list's
// Standard field and falling back to Go's rule (no dot in the first element).
func isStd(idx map[string]*Package, path string) bool {
	if p := idx[path]; p != nil {
		return p.Standard
	}
	return !strings.Contains(strings.SplitN(path, "/", 2)[0], ".")
}

// chain returns an import chain from -> ... -> to following Imports, to show
// in failure messages how a transitive dependency arrives.
func chain(idx map[string]*Package, from, to string) string {
	prev := map[string]string{from: ""}
	for queue := []string{from}; len(queue) > 0; queue = queue[1:] {
		cur := queue[0]
		if cur == to {
			var path []string
			for p := to; p != ""; p = prev[p] {
				path = append(path, p)
			}
			slices.Reverse(path)
			return strings.Join(path, " -> ")
		}
		if p := idx[cur]; p != nil {
			for _, imp := range p.Imports {
				if _, seen := prev[imp]; !seen {
					prev[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
	return from + " -> ... -> " + to
}

// checkRules applies the import rules to pkgs, the output of
// `go list -e -deps -json <purePkgs...> <cniPkg> <agentPkg>`, and returns one message per
// violation.
func checkRules(pkgs []Package) []string {
	idx := make(map[string]*Package, len(pkgs))
	for i := range pkgs {
		idx[pkgs[i].ImportPath] = &pkgs[i]
	}
	var pure []string
	for _, pp := range purePkgs {
		pure = append(pure, pp.path)
	}
	var v []string
	for _, pp := range purePkgs {
		p := idx[pp.path]
		if !p.exists() {
			if pp.required {
				v = append(v, fmt.Sprintf("%s: required pure package not found (rule: netx and topology must exist)", pp.path))
			}
			continue
		}
		if p.Error != nil {
			v = append(v, fmt.Sprintf("%s: go list error: %s", p.ImportPath, p.Error.Err))
		}
		if p.Dir != "" && slices.Contains(p.Imports, "time") {
			calls, err := clockCalls(p.Dir, p.GoFiles)
			if err != nil {
				v = append(v, fmt.Sprintf("%s: %v", p.ImportPath, err))
			}
			for _, c := range calls {
				v = append(v, fmt.Sprintf("%s calls the clock at %s (rule: pure packages take times as input, they never read or wait on the clock)", p.ImportPath, c))
			}
		}
		for _, imp := range p.Imports {
			if slices.Contains(forbiddenDirect, imp) {
				v = append(v, fmt.Sprintf("%s imports %q (rule: pure packages do no I/O, clock or logging; they must not import %s)",
					p.ImportPath, imp, strings.Join(forbiddenDirect, ", ")))
			}
			if under(imp, yamlPrefixes) && p.ImportPath != yamlImporter {
				v = append(v, fmt.Sprintf("%s imports %q (rule: only %s may import YAML libraries, for parsing)",
					p.ImportPath, imp, yamlImporter))
			}
		}
		for _, dep := range p.Deps {
			if isStd(idx, dep) || slices.Contains(pure, dep) || under(dep, allowedThirdParty) {
				continue
			}
			v = append(v, fmt.Sprintf("%s depends on %q via %s (rule: pure packages may use only the standard library, %s and each other)",
				p.ImportPath, dep, chain(idx, p.ImportPath, dep), strings.Join(allowedThirdParty, ", ")))
		}
	}
	if p := idx[cniPkg]; p.exists() {
		for _, dep := range p.Deps {
			if under(dep, cniBanned) {
				v = append(v, fmt.Sprintf("%s depends on %q via %s (rule: the CNI plugin must stay small and must not depend on %s)",
					p.ImportPath, dep, chain(idx, p.ImportPath, dep), strings.Join(cniBanned, ", ")))
			}
		}
	}
	for _, live := range livePkgs {
		if p := idx[live]; p.exists() {
			for _, dep := range p.Deps {
				if dep == plannerPkg {
					v = append(v, fmt.Sprintf("%s depends on %q via %s (rule: live paths never depend on the planner, a simulator; reports come from internal/usage)",
						p.ImportPath, dep, chain(idx, p.ImportPath, dep)))
				}
			}
		}
	}
	if p := idx[agentPkg]; p.exists() {
		for _, dep := range p.Deps {
			if under(dep, agentBanned) {
				v = append(v, fmt.Sprintf("%s depends on %q via %s (rule: the agent gets its adapters from cmd/terrane and must not depend on %s)",
					p.ImportPath, dep, chain(idx, p.ImportPath, dep), strings.Join(agentBanned, ", ")))
			}
		}
	}
	return v
}

// goList runs `go list -e -deps -json` for the rule targets from the module root.
func goList(t *testing.T) []Package {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || strings.TrimSpace(string(gomod)) == "/dev/null" {
		t.Fatalf("not inside a module: go env GOMOD = %q", gomod)
	}
	args := []string{"list", "-e", "-deps", "-json"}
	for _, pp := range purePkgs {
		args = append(args, pp.path)
	}
	args = append(args, livePkgs...)
	cmd := exec.Command("go", append(args, cniPkg, agentPkg)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	var pkgs []Package
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	pkgs := goList(t)
	checked := 0
	for _, p := range pkgs {
		isPure := func(pp purePkg) bool { return pp.path == p.ImportPath }
		if slices.ContainsFunc(purePkgs, isPure) && p.exists() {
			checked++
		}
	}
	t.Logf("checked %d pure packages (%d packages listed)", checked, len(pkgs))
	for _, msg := range checkRules(pkgs) {
		t.Error(msg)
	}
}

// pkg builds a synthetic go list record: imports are direct, extra are further
// transitive deps. Imports of pure packages pull in their synthetic deps.
func pkg(path string, imports []string, extra ...string) Package {
	return Package{ImportPath: path, GoFiles: []string{"x.go"}, Imports: imports,
		Deps: append(slices.Clone(imports), extra...)}
}

func TestCheckRules(t *testing.T) {
	var (
		netx     = mod + "/internal/netx"
		topology = mod + "/internal/topology"
		ipam     = mod + "/internal/ipam"
		routing  = mod + "/internal/routing"
	)
	good := func() []Package {
		return []Package{
			pkg(netx, []string{"math/bits", "net/netip", "go4.org/netipx"}),
			pkg("go4.org/netipx", []string{"net/netip"}),
			pkg(topology, []string{"fmt", netx, "sigs.k8s.io/yaml"}, "go4.org/netipx", "go.yaml.in/yaml/v2"),
			pkg("sigs.k8s.io/yaml", []string{"os", "go.yaml.in/yaml/v2"}),
			pkg(routing, []string{topology}, netx, "go4.org/netipx", "sigs.k8s.io/yaml", "go.yaml.in/yaml/v2"),
			{ImportPath: ipam, Error: &struct{ Err string }{"no Go files in /x/internal/ipam"}},
		}
	}
	with := func(extra ...Package) []Package {
		pkgs := good()
		for _, e := range extra {
			i := slices.IndexFunc(pkgs, func(p Package) bool { return p.ImportPath == e.ImportPath })
			if i < 0 {
				pkgs = append(pkgs, e)
			} else {
				pkgs[i] = e
			}
		}
		return pkgs
	}
	without := func(path string) []Package {
		return slices.DeleteFunc(good(), func(p Package) bool { return p.ImportPath == path })
	}
	tests := []struct {
		name string
		pkgs []Package
		want []string // substrings, one violation each; nil means clean
	}{
		{"clean", good(), nil},
		{"ipam present and clean", with(pkg(ipam, []string{netx, "errors"}, "go4.org/netipx")), nil},
		{"netx imports os", with(pkg(netx, []string{"os", "go4.org/netipx"})),
			[]string{`internal/netx imports "os" (rule: pure packages do no I/O`}},
		{"routing imports time (values) and log/slog", with(pkg(routing, []string{topology, "time", "log/slog"}, netx)),
			[]string{`internal/routing imports "log/slog"`}},
		{"ipam imports net/http", with(pkg(ipam, []string{"net/http"})), []string{`internal/ipam imports "net/http"`}},
		{"ipam imports log", with(pkg(ipam, []string{"log"})), []string{`internal/ipam imports "log"`}},
		{"os only transitively is fine", with(pkg(ipam, []string{"sort"}, "os")), nil},
		{"third-party dep", with(pkg(ipam, []string{netx, "github.com/foo/bar"}, "go4.org/netipx")),
			[]string{`internal/ipam depends on "github.com/foo/bar" via ` + ipam + ` -> github.com/foo/bar (rule: pure packages may use only`}},
		{"transitive third-party dep", with(
			pkg(ipam, []string{"example.com/a"}, "example.com/b"),
			pkg("example.com/a", []string{"example.com/b"})),
			[]string{`depends on "example.com/a"`, `depends on "example.com/b" via ` + ipam + ` -> example.com/a -> example.com/b`}},
		{"netx imports yaml", with(pkg(netx, []string{"sigs.k8s.io/yaml"}, "go.yaml.in/yaml/v2")),
			[]string{`internal/netx imports "sigs.k8s.io/yaml" (rule: only ` + topology}},
		{"ipam imports go.yaml.in directly", with(pkg(ipam, []string{"go.yaml.in/yaml/v3"})),
			[]string{`internal/ipam imports "go.yaml.in/yaml/v3" (rule: only`}},
		{"prefix needs path boundary", with(pkg(ipam, []string{"go4.org/netipxx"})),
			[]string{`depends on "go4.org/netipxx"`}},
		{"netx missing", without(netx), []string{netx + ": required pure package not found"}},
		{"topology has no Go files", with(Package{ImportPath: topology, Error: &struct{ Err string }{"no Go files"}}),
			[]string{topology + ": required pure package not found"}},
		{"routing missing is fine", without(routing), nil},
		{"go list error in pure package", with(Package{ImportPath: ipam, GoFiles: []string{"a.go"},
			Error: &struct{ Err string }{"a.go:1:1: expected 'package'"}}), []string{"internal/ipam: go list error"}},
		{"cni clean", with(pkg(cniPkg, []string{"os", netx, "github.com/containernetworking/cni/pkg/skel"}, "go4.org/netipx")), nil},
		{"cni uses client-go transitively", with(
			pkg(cniPkg, []string{"os", "example.com/helper"}, "k8s.io/client-go/kubernetes", "go.etcd.io/etcd/client/v3"),
			pkg("example.com/helper", []string{"k8s.io/client-go/kubernetes", "go.etcd.io/etcd/client/v3"})),
			[]string{
				`cmd/terrane-cni depends on "k8s.io/client-go/kubernetes" via ` + cniPkg + ` -> example.com/helper -> k8s.io/client-go/kubernetes (rule: the CNI plugin`,
				`depends on "go.etcd.io/etcd/client/v3"`}},
		{"agent clean", with(pkg(agentPkg, []string{"context", mod + "/internal/bgp", routing}, netx, topology)), nil},
		{"server depends on the planner", with(pkg(mod+"/internal/server", []string{plannerPkg})),
			[]string{`internal/server depends on "` + plannerPkg + `" via ` + mod + `/internal/server -> ` + plannerPkg + ` (rule: live paths never depend on the planner`}},
		{"agent links GoBGP", with(
			pkg(agentPkg, []string{"context", mod + "/internal/bgp/gobgp"}, "github.com/osrg/gobgp/v4/pkg/server"),
			pkg(mod+"/internal/bgp/gobgp", []string{"github.com/osrg/gobgp/v4/pkg/server"})),
			[]string{
				`internal/agent depends on "` + mod + `/internal/bgp/gobgp" via ` + agentPkg + ` -> ` + mod + `/internal/bgp/gobgp (rule: the agent gets its adapters`,
				`internal/agent depends on "github.com/osrg/gobgp/v4/pkg/server" via ` + agentPkg + ` -> ` + mod + `/internal/bgp/gobgp -> github.com/osrg/gobgp/v4/pkg/server`}},
		{"cni banned list", with(pkg(cniPkg, []string{"github.com/osrg/gobgp/v3/pkg/server", "go.etcd.io/bbolt", "github.com/aws/aws-sdk-go-v2/config", "go.etcd.io/etcdx"})),
			[]string{`"github.com/osrg/gobgp/v3/pkg/server"`, `"go.etcd.io/bbolt"`, `"github.com/aws/aws-sdk-go-v2/config"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkRules(tt.pkgs)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d violations, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// TestClockCalls: a pure package may hold time values but not read or wait
// on the clock, however it names the package.
func TestClockCalls(t *testing.T) {
	dir := t.TempDir()
	src := map[string]string{
		"values.go": "package p\nimport \"time\"\nfunc Age(now, t time.Time) time.Duration { return now.Sub(t) }\n",
		"clock.go":  "package p\nimport clk \"time\"\nfunc Now() clk.Time { return clk.Now() }\nfunc Wait() { <-clk.After(clk.Second) }\n",
	}
	for name, body := range src {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := clockCalls(dir, []string{"clock.go", "values.go"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"clock.go:3: time.Now", "clock.go:4: time.After"}
	if !slices.Equal(got, want) {
		t.Errorf("clockCalls = %q, want %q", got, want)
	}
}
