package lab

import (
	"strings"
	"testing"
)

// The shipped upstream cases: all 49 upstream It cases, each valid, each
// policy accepted as the API server would accept it, on the netpol
// scenario's pods.
func TestUpstreamPolicyCasesParse(t *testing.T) {
	f, err := LoadPolicyCases("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) != 49 {
		t.Fatalf("%d cases, want upstream's 49", len(f.Cases))
	}
	sc, _, err := LoadScenario(f.Scenario)
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]bool{}
	for _, p := range sc.Pods {
		pods[p.Namespace+"/"+p.Name] = true
	}
	sctp := 0
	for _, c := range f.Cases {
		for _, p := range c.Pods {
			if !pods[casePodTarget(p)] {
				t.Errorf("%s: pod %s is not in scenario %s", c.Title(), p, f.Scenario)
			}
		}
		for _, s := range c.Steps {
			for _, p := range s.Probes {
				if strings.HasSuffix(p.Port, "/SCTP") {
					sctp++
				}
			}
		}
	}
	if sctp != 3 {
		t.Errorf("%d SCTP probes, want the 3 of upstream's SCTP context", sctp)
	}
}

func TestExpectedMatrix(t *testing.T) {
	pods := []string{"x/a", "x/b", "y/a"}
	m, err := ExpectedMatrix(pods, []string{"deny * -> x/*", "reach x/b -> x/a", "deny */a -> y/a"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[[2]string]bool{
		{"x/a", "x/a"}: false, {"x/a", "x/b"}: false, {"x/a", "y/a"}: false,
		{"x/b", "x/a"}: true, {"x/b", "x/b"}: false, {"x/b", "y/a"}: true,
		{"y/a", "x/a"}: false, {"y/a", "x/b"}: false, {"y/a", "y/a"}: false,
	}
	for k, w := range want {
		if m[k] != w {
			t.Errorf("%s -> %s: %v, want %v", k[0], k[1], m[k], w)
		}
	}
	if m, _ := ExpectedMatrix(pods, nil); !m[[2]string{"y/a", "x/b"}] {
		t.Error("no rule: every pair reached")
	}
}

func TestParsePolicyCasesErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"scenario: netpol\ncases: []", "cases: no case"},
		{"cases: [{name: a, pods: [x/a], steps: [{probes: [{port: 80/TCP}]}]}]", "scenario: name the scenario"},
		{"scenario: s\ncases: [{name: a, pods: [xa], steps: [{probes: [{port: 80/TCP}]}]}]", `cases[0].pods[0]: "xa": give NAMESPACE/POD`},
		{"scenario: s\ncases: [{name: a, pods: [x/a], steps: [{probes: [{port: 80/ICMP}]}]}]", "cases[0].steps[0].probes[0].port"},
		{"scenario: s\ncases: [{name: a, pods: [x/a], steps: [{probes: [{port: 80/TCP, expect: [block x/a -> *]}]}]}]", `cases[0].steps[0].probes[0].expect[0]: "block x/a -> *"`},
		{"scenario: s\ncases: [{name: a, pods: [x/a], steps: [{probes: [{port: 80/TCP, expect: [deny x -> *]}]}]}]", `"x": give NAMESPACE/POD`},
		{"scenario: s\ncases: [{name: a, pods: [x/a], steps: [{probes: []}]}]", "cases[0].steps[0].probes: no probe"},
		{"scenario: s\ncases: [{name: a, pods: [x/a], steps: [{label: [{pod: x/b, set: [k=v]}], probes: [{port: 80/TCP}]}]}]", `cases[0].steps[0].label[0].pod: "x/b" is not one of the case's pods`},
		{"scenario: s\ncases: [{name: a, pods: [x/a], steps: [{label: [{namespace: x, set: [k]}], probes: [{port: 80/TCP}]}]}]", `cases[0].steps[0].label[0].set[0]: "k": give KEY=VALUE or KEY-`},
		{"scenario: s\ncases: [{name: a, pods: [x/a], steps: [{apply: [{cidr: '{{ip z/c}}'}], probes: [{port: 80/TCP}]}]}]", `{{ip z/c}}: "z/c" is not one of the case's pods`},
		{"scenario: s\ncases: [{name: a, pods: [x/a], steps: [{apply: [{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p, namespace: y}, spec: {podSelector: {}}}], probes: [{port: 80/TCP}]}]}]", `quote it, "y"`},
		{"scenario: s\ncases: [{name: a, pods: [x/a], steps: [{apply: [{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p, namespace: x}, spec: {podSelector: {}, ingress: [{ports: [{port: 80, protocol: ICMP}]}]}}], probes: [{port: 80/TCP}]}]}]", `cases[0].steps[0].apply[0].spec.ingress[0].ports[0].protocol`},
		{"scenario: s\ncases: [{name: a, pods: [x/a], steps: [{probes: [{port: 80/TCP}]}]}, {name: a, pods: [x/a], steps: [{probes: [{port: 80/TCP}]}]}]", `cases[1].name: "a" is already a case`},
	} {
		_, err := ParsePolicyCases([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.in, err, tc.want)
		}
	}
}
