package lab

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/fielderr"
)

const inlineTopology = `topology: |
  networks:
    - {name: pods, cidr: 10.10.0.0/16, blockSize: 28}
  topologies:
    - networks: [pods]
      groups:
        - name: rack-1
          assignment: {matchLabels: {rack: "1"}}
        - name: rack-2
          assignment: {matchLabels: {rack: "2"}}
`

const goodScenario = inlineTopology + `
segments:
  - {name: r1, subnet: 192.168.1.0/24, router: tor-1}
  - {name: r2, subnet: 192.168.2.0/24, router: tor-2, gateway: 192.168.2.254}
  - {name: flat, subnet: 192.168.3.0/29}
routers:
  - {name: tor-1, spine: 172.31.0.1/24}
  - {name: tor-2, spine: 172.31.0.2/24}
hosts:
  - {name: a, segment: r1, labels: {rack: "1"}}
  - {name: b, segment: r1, ip: 192.168.1.2, labels: {rack: "1"}}
  - {name: c, segment: r1, labels: {rack: "1"}}
  - {name: d, segment: r2, labels: {rack: "2"}}
pods:
  - {name: p, host: a}
  - {name: q, host: d, namespace: ml, annotations: {terrane.io/network: pods}}
`

func TestParseScenarioDefaults(t *testing.T) {
	sc, err := ParseScenario([]byte(goodScenario))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Compile(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "192.168.1.3", "b": "192.168.1.2", "c": "192.168.1.4", "d": "192.168.2.1"}
	for _, h := range sc.Hosts {
		if h.IP.String() != want[h.Name] {
			t.Errorf("host %s: ip %s, want %s (the next free address, skipping the gateway and taken ones)", h.Name, h.IP, want[h.Name])
		}
	}
	if g := sc.Segments[0].Gateway; g != netip.MustParseAddr("192.168.1.1") {
		t.Errorf("segment r1 gateway %s, want the first usable address", g)
	}
	if g := sc.Segments[1].Gateway; g != netip.MustParseAddr("192.168.2.254") {
		t.Errorf("segment r2 gateway %s, want the one given", g)
	}
	if sc.Pods[0].Namespace != "default" || sc.Pods[1].Namespace != "ml" {
		t.Errorf("pod namespaces %q %q", sc.Pods[0].Namespace, sc.Pods[1].Namespace)
	}
	if r, ok := sc.RouterOf("d"); !ok || r.Name != "tor-2" {
		t.Errorf("RouterOf(d) = %v %v", r, ok)
	}
}

func TestParseScenarioErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		// want lists substrings of "path: message" lines, all required.
		want []string
	}{
		{"not yaml", "segments: [", []string{"not valid YAML"}},
		{"not a mapping", "- a\n- b", []string{"the file is a list; want a mapping"}},
		{"empty", "", []string{"the file is empty (null)"}},
		{"unknown field", inlineTopology + "segment: []\nhosts: []", []string{"segment: unknown field; known fields here: name, description, topology, segments, routers, hosts, pods"}},
		{"duplicate key", "name: a\nname: b", []string{"not valid YAML"}},
		{"unknown nested", inlineTopology + "segments: [{name: s, subnet: 10.1.0.0/24, vlan: 3}]\nhosts: [{name: h, segment: s}]",
			[]string{"segments[0].vlan: unknown field"}},
		{"number label", inlineTopology + "segments: [{name: s, subnet: 192.168.0.0/24}]\nhosts: [{name: h, segment: s, labels: {rack: 1}}]",
			[]string{`hosts[0].labels.rack: is the number 1; want a string (quote it: "1")`}},
		{"missing", "name: x", []string{"segments: required", "hosts: required", "topology: required"}},
		{"bad subnet", inlineTopology + "segments: [{name: s, subnet: 192.168.0.1/24}, {name: t, subnet: fd00::/64}, {name: u, subnet: nope}, {name: v, subnet: 10.9.0.0/30}]\nhosts: [{name: h, segment: s}]",
			[]string{"segments[0].subnet: \"192.168.0.1/24\" has host bits set; did you mean 192.168.0.0/24?", "segments[1].subnet: fd00::/64 is not IPv4",
				"segments[2].subnet: \"nope\" is not a CIDR", "segments[3].subnet: 10.9.0.0/30 is too small"}},
		{"references", inlineTopology + `
segments: [{name: s, subnet: 192.168.0.0/24, router: r9}, {name: t, subnet: 192.168.1.0/24, gateway: 192.168.1.1}]
routers: [{name: lonely, spine: 172.31.0.1/24}]
hosts: [{name: h, segment: x}, {name: i}]
pods: [{name: p, host: nobody}, {name: q}]`,
			[]string{`segments[0].router: unknown router "r9"; defined routers: lonely`, "segments[1].gateway: a gateway needs a router",
				`routers[0]: router "lonely" serves no segment`, `hosts[0].segment: unknown segment "x"; defined segments: s, t`,
				"hosts[1].segment: required", `pods[0].host: unknown host "nobody"; defined hosts: h, i`, "pods[1].host: required"}},
		{"names", inlineTopology + `
segments: [{name: a-very-long-segment, subnet: 192.168.0.0/24, router: fabric}, {name: Bad_Name, subnet: 192.168.1.0/24}]
routers: [{name: fabric, spine: 172.31.0.1/24}]
hosts: [{name: h, segment: a-very-long-segment}, {name: h, segment: a-very-long-segment}, {name: pod-x, segment: a-very-long-segment}, {name: fabric, segment: a-very-long-segment}]
pods: [{name: p, host: h, namespace: Not_A_Namespace}]`,
			[]string{"segments[0].name: \"a-very-long-segment\" is longer than 12 characters", `segments[1].name: "Bad_Name": use lowercase letters`,
				`routers[0].name: "fabric" is reserved`, `hosts[1].name: "h" is already defined at hosts[0]`, `hosts[2].name: "pod-x" is reserved`,
				`routers[0].name: "fabric" is also hosts[3]'s name`, `pods[0].namespace: "Not_A_Namespace" is not a Kubernetes namespace name`}},
		{"addresses", inlineTopology + `
segments: [{name: s, subnet: 192.168.0.0/29, router: r}, {name: t, subnet: 192.168.0.0/24}]
routers: [{name: r, spine: 172.31.0.1/24}, {name: q, spine: 172.32.0.1/24}, {name: o, spine: 192.168.0.9/24}]
hosts: [{name: a, segment: s, ip: 192.168.0.1}, {name: b, segment: s, ip: 192.168.0.7}, {name: c, segment: s, ip: 10.0.0.1}, {name: d, segment: s, ip: nope}]`,
			[]string{"segments[1].subnet: 192.168.0.0/24 overlaps segments[0].subnet 192.168.0.0/29",
				"routers[1].spine: 172.32.0.1/24 is not on the spine 172.31.0.0/24 of routers[0]",
				"routers[2].spine: the spine 192.168.0.0/24 overlaps segments[0].subnet",
				"hosts[0].ip: 192.168.0.1 is already the router's gateway address",
				"hosts[1].ip: 192.168.0.7 is not a usable address of segment \"s\"",
				"hosts[2].ip: 10.0.0.1 is not a usable address", `hosts[3].ip: "nope" is not an IPv4 address`}},
		{"full segment", inlineTopology + "segments: [{name: s, subnet: 192.168.0.0/29, router: r}]\nrouters: [{name: r, spine: 172.31.0.1/24}]\nhosts: [{name: a, segment: s}, {name: b, segment: s}, {name: c, segment: s}, {name: d, segment: s}, {name: e, segment: s}, {name: f, segment: s}, {name: g, segment: s}]",
			[]string{`hosts[6].ip: segment "s" (192.168.0.0/29) has no free address left`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseScenario([]byte(tt.doc))
			var ve *fielderr.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *fielderr.ValidationError", err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

func TestCheckTopology(t *testing.T) {
	doc := inlineTopology + `
segments: [{name: s, subnet: 10.10.5.0/24}]
hosts: [{name: a, segment: s, labels: {rack: "3"}}, {name: b, segment: s, labels: {rack: "1"}}]
pods: [{name: p, host: b, annotations: {terrane.io/network: blue}}]`
	sc, err := ParseScenario([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sc.Compile()
	if err == nil {
		t.Fatal("Compile accepted a scenario whose host no group admits")
	}
	for _, w := range []string{
		`hosts[0].labels: no leaf group of network "pods" admits host "a" (labels rack=3); give it labels that one of rack-1 (rack=1), rack-2 (rack=2) selects`,
		`pods[0].annotations.terrane.io/network: unknown network "blue"; the topology defines pods`,
		`network "pods" (10.10.0.0/16) overlaps the lab's own subnet 10.10.5.0/24`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

// Every shipped scenario loads, compiles and names a pod on every host.
func TestShippedScenarios(t *testing.T) {
	names := Shipped()
	for _, want := range []string{"flat-l2", "two-racks", "two-networks"} {
		if !strings.Contains(strings.Join(names, ","), want) {
			t.Errorf("shipped scenarios %v lack %s", names, want)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			sc, _, err := LoadScenario(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(sc.Pods) < 2 {
				t.Errorf("%d pods: a scenario should show reachability", len(sc.Pods))
			}
			// The file in the checkout loads the same way (by path).
			if _, _, err := LoadScenario(filepath.Join("..", "..", "examples", "lab", name+".yaml")); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, _, err := LoadScenario(""); err != nil {
		t.Errorf("the default scenario: %v", err)
	}
	if _, _, err := LoadScenario("no-such"); err == nil || !strings.Contains(err.Error(), "not a shipped scenario (") {
		t.Errorf("unknown scenario: %v", err)
	}
}

// A topology named by path is read relative to the scenario's directory.
func TestLoadScenarioTopologyFile(t *testing.T) {
	dir := t.TempDir()
	topo := strings.ReplaceAll(strings.TrimPrefix(inlineTopology, "topology: |\n"), "\n  ", "\n")
	topo = strings.TrimPrefix(topo, "  ")
	if err := os.MkdirAll(filepath.Join(dir, "topo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "topo", "t.yaml"), []byte(topo), 0o644); err != nil {
		t.Fatal(err)
	}
	sc := "topology: topo/t.yaml\nsegments: [{name: s, subnet: 192.168.0.0/24}]\nhosts: [{name: a, segment: s, labels: {rack: \"2\"}}]\n"
	p := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(p, []byte(sc), 0o644); err != nil {
		t.Fatal(err)
	}
	got, topology, err := LoadScenario(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.TopologyFile != "topo/t.yaml" || got.Topology != topo || len(topology.Networks) != 1 {
		t.Errorf("topology file %q, text %q", got.TopologyFile, got.Topology)
	}
	if err := os.Remove(filepath.Join(dir, "topo", "t.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadScenario(p); err == nil || !strings.Contains(err.Error(), "topology") {
		t.Errorf("missing topology file: %v", err)
	}
}

func FuzzParseScenario(f *testing.F) {
	f.Add([]byte(goodScenario))
	for _, name := range []string{"flat-l2", "two-racks", "two-networks"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "lab", name+".yaml"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("segments: [{name: s, subnet: 192.168.0.0/29}]\nhosts: [{name: a, segment: s}]\ntopology: x"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := ParseScenario(data)
		if err != nil {
			var ve *fielderr.ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("error %v is not a ValidationError with problems", err)
			}
			return
		}
		// An accepted scenario is whole: every reference resolves, every
		// host has a usable address on its segment, names are unique.
		seen := map[string]bool{}
		for _, h := range sc.Hosts {
			seg, ok := sc.Segment(h.Segment)
			if !ok || !usable(seg.Subnet, h.IP) || h.IP == seg.Gateway {
				t.Fatalf("host %+v: segment %+v", h, seg)
			}
			if seen[h.Name] {
				t.Fatalf("duplicate host %s", h.Name)
			}
			seen[h.Name] = true
		}
		for _, s := range sc.Segments {
			if s.Router != "" {
				if _, ok := sc.Router(s.Router); !ok || !usable(s.Subnet, s.Gateway) {
					t.Fatalf("segment %+v", s)
				}
			}
		}
		for _, p := range sc.Pods {
			if _, ok := sc.Host(p.Host); !ok || p.Namespace == "" {
				t.Fatalf("pod %+v", p)
			}
		}
		if sc.Topology == "" && sc.TopologyFile == "" {
			t.Fatal("no topology")
		}
	})
}

// Namespaces, pods' labels and ports, and policies are checked as the API
// server would, each problem at its path; a scenario with them enforces
// policy from the server, or from the API with --k8s.
func TestScenarioPolicies(t *testing.T) {
	sc, _, err := LoadScenario("policy")
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Policies) != 2 || len(sc.Namespaces) != 3 || sc.Pods[0].Ports[0] != (PodPort{Name: "serve-80-tcp", Port: 80, Protocol: "TCP"}) || sc.Pods[1].Labels["pod"] != "b" {
		t.Fatalf("policy scenario: %d policies, %d namespaces, pod 0 ports %+v", len(sc.Policies), len(sc.Namespaces), sc.Pods[0].Ports)
	}
	// Without --k8s the server is the agents' source; with it, the API.
	if got := policySourceOf(&UpOptions{Scenario: sc}); got != PolicyServer {
		t.Errorf("the policy scenario without --k8s: source %q, want %q", got, PolicyServer)
	}
	if got := policySourceOf(&UpOptions{Scenario: sc, K8s: true}); got != PolicyKubernetes {
		t.Errorf("the policy scenario with --k8s: source %q, want %q", got, PolicyKubernetes)
	}
	plain, _, err := LoadScenario("flat-l2")
	if err != nil {
		t.Fatal(err)
	}
	if got := policySourceOf(&UpOptions{Scenario: plain}); got != "" {
		t.Errorf("flat-l2 (no namespaces, policies or labels): source %q, want none", got)
	}
	bad := `
topology: "networks: [{name: n, cidr: 10.0.0.0/16, blockSize: 28, default: true}]\ntopologies: [{networks: [n], groups: [{name: g, routing: l2}]}]"
segments: [{name: lan, subnet: 192.168.10.0/24}]
hosts: [{name: h, segment: lan, ip: 192.168.10.11}]
namespaces: [{name: Bad_NS}]
pods:
  - {name: a, host: h, labels: {"-x": "1"}, ports: [{port: 70000, protocol: TCP}, {name: p, port: 80, protocol: SCTP}]}
policies:
  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p}, spec: {podSelector: {}, ingress: [{from: [{}]}]}}
  - {kind: Ingress, metadata: {name: q}}
`
	_, err = ParseScenario([]byte(bad))
	for _, want := range []string{"pods[0].ports[0].port: is 70000", `pods[0].ports[1].protocol: "SCTP"`,
		"pods[0].labels.-x: not a valid label key", "policies[0].spec.ingress[0].from[0]: names no peer",
		`policies[1].kind: "Ingress"`, "namespaces[0].name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestScenarioDualStack: a segment's subnet6 gives each host an IPv6
// address from its IPv4 offset; bad subnet6 values, a dual-stack segment
// behind a router, an IPv6 network over a segment without subnet6 and
// annotations naming a pair of one family are refused with their fields.
func TestScenarioDualStack(t *testing.T) {
	sc, err := ParseScenario([]byte(`topology: |
  networks:
    - {name: v4, cidr: 10.50.0.0/16, blockSize: 28}
    - {name: v6, cidr: "fd00:50::/48", blockSize: 124}
  topologies:
    - networks: [v4, v6]
      groups: [{name: seg, routing: l2}]
segments: [{name: s, subnet: 192.168.50.0/24, subnet6: "fd00:ff:50::/64"}]
hosts: [{name: a, segment: s, ip: 192.168.50.11}, {name: b, segment: s}]
pods: [{name: p, host: a, annotations: {terrane.io/network: "v4,v6"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Compile(); err != nil {
		t.Fatal(err)
	}
	if a, b := sc.Hosts[0].IP6.String(), sc.Hosts[1].IP6.String(); a != "fd00:ff:50::b" || b != "fd00:ff:50::1" {
		t.Errorf("hosts' IPv6 addresses %s and %s, want fd00:ff:50::b and fd00:ff:50::1 (their IPv4 offsets)", a, b)
	}

	_, err = ParseScenario([]byte(inlineTopology + `
segments: [{name: s, subnet: 192.168.0.0/24, subnet6: "fd00:1::1/64"}, {name: t, subnet: 192.168.1.0/24, subnet6: 10.9.0.0/16},
  {name: u, subnet: 192.168.2.0/24, subnet6: "fd00:2::/120"}, {name: v, subnet: 192.168.3.0/24, subnet6: "fd00:3::/64", router: r}]
routers: [{name: r, spine: 172.31.0.1/24}]
hosts: [{name: h, segment: s}]`))
	for _, w := range []string{
		`segments[0].subnet6: "fd00:1::1/64" has host bits set; did you mean fd00:1::/64?`,
		"segments[1].subnet6: 10.9.0.0/16 is not IPv6",
		"segments[2].subnet6: fd00:2::/120 is too small",
		"segments[3].subnet6: a dual-stack segment has no router in the lab yet",
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}

	sc, err = ParseScenario([]byte(`topology: |
  networks:
    - {name: v4, cidr: 10.50.0.0/16, blockSize: 28}
    - {name: w4, cidr: 10.60.0.0/16, blockSize: 28}
    - {name: v6, cidr: "fd00:50::/48", blockSize: 124}
  topologies:
    - networks: [v4, w4, v6]
      groups: [{name: seg, routing: l2}]
segments: [{name: s, subnet: 192.168.50.0/24}]
hosts: [{name: a, segment: s}]
pods: [{name: p, host: a, annotations: {terrane.io/network: "v4,w4"}}, {name: q, host: a, annotations: {terrane.io/network: "v4,v6,w4"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sc.Compile()
	for _, w := range []string{
		`segments[0].subnet6: network "v6" is IPv6 (fd00:50::/48): every segment needs an IPv6 subnet too`,
		`pods[0].annotations.terrane.io/network: "v4,w4" names two networks of one family`,
		`pods[1].annotations.terrane.io/network: "v4,v6,w4": name one network, or two`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

// TestMatrixPerFamily: a report with results of both families renders one
// table per family, "-" where a pair has no addresses of the family, and
// names the family of each failure.
func TestMatrixPerFamily(t *testing.T) {
	a := ProbeTarget{Name: "a", Addr: netip.MustParseAddr("10.0.0.1"), Addr6: netip.MustParseAddr("fd00::1")}
	b := ProbeTarget{Name: "b", Addr: netip.MustParseAddr("10.0.0.2"), Addr6: netip.MustParseAddr("fd00::2")}
	c := ProbeTarget{Name: "c", Addr: netip.MustParseAddr("10.0.0.3")}
	r := &ProbeReport{Pods: []ProbeTarget{a, b, c}, Results: []ProbeResult{
		{From: "a", To: "b", Family: 4, OK: true}, {From: "a", To: "b", Family: 6, OK: true},
		{From: "a", To: "c", Family: 4, OK: true},
		{From: "b", To: "a", Family: 4, OK: true}, {From: "b", To: "a", Family: 6, TCP: true, Error: "icmp: no echo reply"},
		{From: "b", To: "c", Family: 4, OK: true},
		{From: "c", To: "a", Family: 4, OK: true}, {From: "c", To: "b", Family: 4, OK: true},
	}}
	want := `IPv4
from\to     1   2   3
a           ·   ✓   ✓   1 10.0.0.1
b           ✓   ·   ✓   2 10.0.0.2
c           ✓   ✓   ·   3 10.0.0.3
IPv6
from\to     1   2   3
a           ·   ✓   -   1 fd00::1
b           t   ·   -   2 fd00::2
c           -   -   ·   3 10.0.0.3
7 of 8 pairs reachable (TCP and ICMP); 1 FAILED:
  b -> a (IPv6): icmp: no echo reply
`
	if got := r.Matrix(); got != want {
		t.Errorf("Matrix:\n%s\nwant:\n%s", got, want)
	}
}
