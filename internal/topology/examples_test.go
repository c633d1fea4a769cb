package topology

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// TestExamples loads every example in both formats, checks the model's
// invariants, compares the native file's model with golden text and insists
// that the Romana twin describes the same network.
func TestExamples(t *testing.T) {
	for _, name := range exampleNames(t) {
		t.Run(name, func(t *testing.T) {
			native := mustLoad(t, readFile(t, filepath.Join(examplesDir, name+".yaml")))
			romana := mustLoad(t, readFile(t, filepath.Join(examplesDir, name+".romana.json")))
			if native.Format != Native || romana.Format != Romana {
				t.Fatalf("formats: native file read as %s, Romana file read as %s", native.Format, romana.Format)
			}
			assertInvariants(t, native)
			assertInvariants(t, romana)
			got := render(native)
			checkGolden(t, filepath.Join("testdata", "examples", name+".golden"), got)
			if r := render(romana); r != got {
				t.Errorf("Romana twin differs from the native file\nnative:\n%s\nromana:\n%s", got, r)
			}
		})
	}
}

// TestExampleSpecifics pins the facts the examples promise in their comments.
func TestExampleSpecifics(t *testing.T) {
	load := func(name string) *Topology {
		return mustLoad(t, readFile(t, filepath.Join(examplesDir, name)))
	}
	home := func(top *Topology, network, path string) string {
		n := top.Network(network)
		if n == nil {
			t.Fatalf("no network %q", network)
		}
		g := n.Tree.Group(path)
		if g == nil {
			t.Fatalf("no group %q", path)
		}
		return homeString(n, g)
	}
	t.Run("flat-l2", func(t *testing.T) {
		for _, f := range []string{"flat-l2.yaml", "flat-l2.romana.json"} {
			top := load(f)
			g := top.Trees[0].Group("segment")
			if g.Mode != ModeL2 || len(g.Selector.Requirements) != 0 || len(g.Hosts) != 0 {
				t.Errorf("%s: segment: mode %s, selector %q, %d hosts; want l2, any host, none listed", f, g.Mode, g.Selector, len(g.Hosts))
			}
			if h := home(top, "flat", "segment"); h != "10.10.0.0/16" {
				t.Errorf("%s: segment home %s, want the whole network", f, h)
			}
		}
	})
	t.Run("l3-fabric-4rack", func(t *testing.T) {
		top := load("l3-fabric-4rack.romana.json")
		want := map[string]string{"rack-1": "10.20.0.0/18", "rack-2": "10.20.64.0/18", "rack-3": "10.20.128.0/18", "rack-4": "10.20.192.0/18"}
		for path, w := range want {
			g := top.Trees[0].Group(path)
			if g.Mode != ModeBGP || g.Advertise != AdvertiseGroup {
				t.Errorf("%s: %s/%s, want bgp/group (prefix-announce-bgp)", path, g.Mode, g.Advertise)
			}
			if h := home(top, "fabric", path); h != w {
				t.Errorf("%s: home %s, want %s", path, h, w)
			}
		}
	})
	t.Run("aws-3zone", func(t *testing.T) {
		top := load("aws-3zone.yaml")
		if got := len(top.Trees[0].Leaves); got != 24 {
			t.Errorf("%d leaves, want 24", got)
		}
		g := top.Trees[0].Group("us-east-1c/subnet-8")
		if g.Mode != ModeVPC || g.Specificity != 2 {
			t.Errorf("subnet-8 of us-east-1c: mode %s specificity %d, want inherited vpc and 2", g.Mode, g.Specificity)
		}
		if h := home(top, "vpc", "us-east-1c/subnet-8"); h != "10.30.184.0/21" {
			t.Errorf("us-east-1c/subnet-8 home %s, want 10.30.184.0/21", h)
		}
	})
	t.Run("region-6zone", func(t *testing.T) {
		top := load("region-6zone.yaml")
		if h := home(top, "region", "zone-6"); h != "10.42.128.0/17" {
			t.Errorf("zone-6 home %s, want 10.42.128.0/17", h)
		}
		if h := home(top, "region", "zone-6/rack-2"); h != "10.42.192.0/18" {
			t.Errorf("zone-6/rack-2 home %s, want 10.42.192.0/18", h)
		}
	})
	t.Run("multi-network", func(t *testing.T) {
		native, romana := load("multi-network.yaml"), load("multi-network.romana.json")
		if !native.Network("default").Default || romana.Network("default").Default {
			t.Error("only the native file can mark a default network")
		}
		if len(native.Reservations) != 1 || len(native.ServiceCIDRs) != 1 || len(romana.Reservations)+len(romana.ServiceCIDRs) != 0 {
			t.Errorf("reservations/service CIDRs: native %v %v, romana %v %v", native.Reservations, native.ServiceCIDRs, romana.Reservations, romana.ServiceCIDRs)
		}
		if s := native.Network("secure"); !s.Allows("vault") || s.Allows("default") {
			t.Errorf("secure network namespaces %v", s.Namespaces)
		}
		if h := home(native, "fast", "rack-b"); h != "10.70.32.0/19" {
			t.Errorf("rack-b in fast: %s, want 10.70.32.0/19", h)
		}
	})
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (run go test -update after checking the change)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// docBlockRe finds fenced blocks whose info string names them as topology
// files: ```yaml topology or ```json topology, optionally twin=<name>.
var docBlockRe = regexp.MustCompile("(?ms)^```(yaml|json) topology([^\n]*)\n(.*?)^```")

// docInvalidRe finds an invalid topology and the error text shown after it.
var docInvalidRe = regexp.MustCompile("(?ms)^```yaml invalid-topology\n(.*?)^```\n\n```text\n(.*?)^```")

// TestDocExamples loads every topology shown in docs/topology.md, checks that
// blocks sharing a twin= tag describe the same network and that blocks with
// a file= tag are that example file verbatim.
func TestDocExamples(t *testing.T) {
	doc := string(readFile(t, "../../docs/topology.md"))
	blocks := docBlockRe.FindAllStringSubmatch(doc, -1)
	if len(blocks) < 2 {
		t.Fatalf("found %d topology blocks in docs/topology.md, want at least the side-by-side pair", len(blocks))
	}
	twins := map[string][]string{}
	for i, b := range blocks {
		lang, attrs, body := b[1], b[2], b[3]
		top, err := Load([]byte(body))
		if err != nil {
			t.Errorf("block %d (%s): %v", i, lang, err)
			continue
		}
		assertInvariants(t, top)
		for _, a := range strings.Fields(attrs) {
			if name, ok := strings.CutPrefix(a, "twin="); ok {
				twins[name] = append(twins[name], render(top))
			}
			if file, ok := strings.CutPrefix(a, "file="); ok {
				if want := string(readFile(t, filepath.Join("../..", file))); body != want {
					t.Errorf("block %d differs from %s; copy the file into the doc", i, file)
				}
			}
		}
	}
	// An invalid topology followed by a text block: the exact error.
	bad := docInvalidRe.FindAllStringSubmatch(doc, -1)
	if len(bad) == 0 {
		t.Error("no invalid-topology example in docs/topology.md")
	}
	for _, b := range bad {
		_, err := Load([]byte(b[1]))
		if err == nil {
			t.Errorf("invalid example loads:\n%s", b[1])
			continue
		}
		if got := err.Error() + "\n"; got != b[2] {
			t.Errorf("invalid example's error:\n%s\ndoc says:\n%s", got, b[2])
		}
	}
	for name, rs := range twins {
		if len(rs) < 2 {
			t.Errorf("twin %q has %d blocks, want 2", name, len(rs))
			continue
		}
		for _, r := range rs[1:] {
			if r != rs[0] {
				t.Errorf("twin %q blocks differ:\n%s\nvs\n%s", name, rs[0], r)
			}
		}
	}
}
