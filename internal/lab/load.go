package lab

import (
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	labexamples "github.com/terrane-net/terrane/examples/lab"
	"github.com/terrane-net/terrane/internal/topology"
)

// Shipped lists the scenarios built into the binary, by name (file name
// without .yaml).
func Shipped() []string {
	entries, _ := fs.ReadDir(labexamples.FS, ".")
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// ShippedOpen are the shipped scenarios without policies: every pod
// reaches every other. (The policy scenario denies pairs on purpose; its
// matrix is proven port by port.)
func ShippedOpen() []string {
	var out []string
	for _, name := range Shipped() {
		if sc, _, err := LoadScenario(name); err == nil && len(sc.Policies) == 0 && len(sc.Namespaces) == 0 {
			out = append(out, name)
		}
	}
	return out
}

// LoadScenario reads a scenario file, or a shipped scenario by name
// ("two-racks") when no such file exists; "" is the default scenario. It
// reads a topology named by path relative to the scenario's directory,
// compiles it and cross-checks the two.
func LoadScenario(ref string) (*Scenario, *topology.Topology, error) {
	var (
		data []byte
		read func(string) ([]byte, error)
		err  error
		dir  string
	)
	if ref == "" {
		ref = strings.TrimSuffix(labexamples.Default, ".yaml")
	}
	if st, statErr := os.Stat(ref); statErr == nil && !st.IsDir() {
		data, err = os.ReadFile(ref)
		dir, read = filepath.Dir(ref), os.ReadFile
	} else {
		name := strings.TrimSuffix(path.Base(ref), ".yaml")
		if path.Base(ref) != ref || !slices.Contains(Shipped(), name) {
			return nil, nil, fmt.Errorf("scenario %q: no such file, and not a shipped scenario (%s)", ref, strings.Join(Shipped(), ", "))
		}
		data, err = labexamples.FS.ReadFile(name + ".yaml")
		dir, read = ".", func(p string) ([]byte, error) { return labexamples.FS.ReadFile(path.Clean(p)) }
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read scenario: %w", err)
	}
	sc, err := ParseScenario(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ref, err)
	}
	if sc.TopologyFile != "" {
		p := sc.TopologyFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		b, err := read(p)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: topology: %w", ref, err)
		}
		sc.Topology = string(b)
	}
	t, err := sc.Compile()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ref, err)
	}
	return sc, t, nil
}

// Compile compiles the scenario's topology and cross-checks it with the
// scenario (CheckTopology).
func (sc *Scenario) Compile() (*topology.Topology, error) {
	t, err := topology.Load([]byte(sc.Topology))
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", sc.topologyName(), err)
	}
	if err := sc.CheckTopology(t); err != nil {
		return nil, err
	}
	return t, nil
}

func (sc *Scenario) topologyName() string {
	if sc.TopologyFile != "" {
		return sc.TopologyFile
	}
	return "(inline)"
}

// underlay lists the scenario's own subnets: segments and the spine.
func (sc *Scenario) underlay() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range sc.Segments {
		out = append(out, s.Subnet)
		if s.Subnet6.IsValid() {
			out = append(out, s.Subnet6)
		}
	}
	if len(sc.Routers) > 0 {
		out = append(out, sc.Routers[0].Spine.Masked())
	}
	return out
}
