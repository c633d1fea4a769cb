package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/fielderr"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func loadCluster(t *testing.T) *Cluster {
	t.Helper()
	b, err := os.ReadFile("testdata/cluster.json")
	if err != nil {
		t.Fatal(err)
	}
	var c Cluster
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func compileJSON(t *testing.T, c *Cluster, node Node) []byte {
	t.Helper()
	rs, err := Compile(c, node)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestGolden compiles a small shop (default deny both ways, named ports,
// namespace and pod selectors combined, a port range, egress to the world
// except the cluster and the metadata address) for each node and compares
// with testdata/<node>.golden.json (go test -run Golden -update rewrites).
func TestGolden(t *testing.T) {
	c := loadCluster(t)
	for _, node := range []Node{
		{Name: "n1", IPs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}},
		{Name: "n2", IPs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}},
	} {
		got := compileJSON(t, c, node)
		path := "testdata/" + node.Name + ".golden.json"
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: compiled rule set differs from %s:\n%s", node.Name, path, got)
		}
	}
}

// TestDeterministic: the order of namespaces, pods, policies, labels and
// rules' peers does not change the rule set.
func TestDeterministic(t *testing.T) {
	c := loadCluster(t)
	node := Node{Name: "n1", IPs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}}
	want := compileJSON(t, c, node)
	r := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		r.Shuffle(len(c.Namespaces), func(i, j int) { c.Namespaces[i], c.Namespaces[j] = c.Namespaces[j], c.Namespaces[i] })
		r.Shuffle(len(c.Pods), func(i, j int) { c.Pods[i], c.Pods[j] = c.Pods[j], c.Pods[i] })
		r.Shuffle(len(c.Policies), func(i, j int) { c.Policies[i], c.Policies[j] = c.Policies[j], c.Policies[i] })
		for _, np := range c.Policies {
			for _, rule := range np.Spec.Egress {
				r.Shuffle(len(rule.To), func(i, j int) { rule.To[i], rule.To[j] = rule.To[j], rule.To[i] })
			}
		}
		if got := compileJSON(t, c, node); !bytes.Equal(got, want) {
			t.Fatalf("shuffled input compiles differently:\n%s\nwant\n%s", got, want)
		}
	}
}

// allowsCase is one packet a direction must admit or not.
type allowsCase struct {
	name  string
	d     *Direction
	peer  string
	proto Protocol
	port  uint16
	want  bool
}

func checkAllows(t *testing.T, cases []allowsCase) {
	t.Helper()
	for _, tc := range cases {
		if got := tc.d.Allows(netip.MustParseAddr(tc.peer), tc.proto, tc.port); got != tc.want {
			t.Errorf("%s: %s %s/%d = %v, want %v", tc.name, tc.peer, tc.proto, tc.port, got, tc.want)
		}
	}
}

func TestSemanticsByExample(t *testing.T) {
	c := loadCluster(t)
	n1 := Node{Name: "n1", IPs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}}
	rs, err := Compile(c, n1)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	front, _ := rs.Endpoint(a("10.1.0.2"))
	cart, _ := rs.Endpoint(a("10.1.0.3"))
	checkAllows(t, []allowsCase{
		{"front takes its named port from anywhere", &front.Ingress, "8.8.8.8", TCP, 8080, true},
		{"front's named port is its own, not cart's", &front.Ingress, "8.8.8.8", TCP, 9090, false},
		{"kubelet probes pass", &front.Ingress, "192.168.0.1", TCP, 1234, true},
		{"another node's address does not", &front.Ingress, "192.168.0.2", TCP, 1234, false},
		{"cart takes front on http", &cart.Ingress, "10.1.0.2", TCP, 9090, true},
		{"cart does not take front on metrics", &cart.Ingress, "10.1.0.2", TCP, 9100, false},
		{"cart takes prom (ops) on metrics", &cart.Ingress, "10.1.1.3", TCP, 9100, true},
		{"and on the range", &cart.Ingress, "10.1.1.3", TCP, 9110, true},
		{"not past it", &cart.Ingress, "10.1.1.3", TCP, 9111, false},
		{"not on UDP", &cart.Ingress, "10.1.1.3", UDP, 9100, false},
		{"front reaches pg on pg's named port", &front.Egress, "10.1.1.2", TCP, 5432, true},
		{"not on another port", &front.Egress, "10.1.1.2", TCP, 5433, false},
		{"front reaches its own namespace on anything", &front.Egress, "10.1.0.3", UDP, 7, true},
		{"front reaches the world on 443", &front.Egress, "1.1.1.1", TCP, 443, true},
		{"and DNS over UDP", &front.Egress, "1.1.1.1", UDP, 53, true},
		{"not the metadata address", &front.Egress, "169.254.169.254", TCP, 443, false},
		{"not the cluster's other addresses by block", &front.Egress, "10.1.1.3", TCP, 443, false},
		{"no ICMP to the world", &front.Egress, "1.1.1.1", "ICMP", 0, false},
		{"the admin tier denies the managed database before NetworkPolicy admits 443", &front.Egress, "172.16.5.5", TCP, 443, false},
	})
	if _, ok := rs.Endpoint(a("192.168.0.1")); ok {
		t.Error("a host-network pod got an endpoint")
	}

	n2 := Node{Name: "n2", IPs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}}
	rs2, err := Compile(c, n2)
	if err != nil {
		t.Fatal(err)
	}
	pg, _ := rs2.Endpoint(a("10.1.1.2"))
	prom, _ := rs2.Endpoint(a("10.1.1.3"))
	checkAllows(t, []allowsCase{
		{"baseline: shop reaches pg on 5432", &pg.Ingress, "10.1.0.3", TCP, 5432, true},
		{"baseline: not on another port", &pg.Ingress, "10.1.0.3", TCP, 5433, false},
		{"baseline: ops does not reach pg", &pg.Ingress, "10.1.1.3", TCP, 5432, false},
		{"baseline denies pods only: the world is not a namespace", &pg.Ingress, "8.8.8.8", UDP, 9, true},
		{"kubelet probes pass the baseline", &pg.Ingress, "192.168.0.2", TCP, 5432, true},
		{"admin: prom may not reach the metadata address", &prom.Egress, "169.254.169.254", TCP, 80, false},
		{"admin: not even by ICMP", &prom.Egress, "169.254.169.254", "ICMP", 0, false},
		{"admin: the rest passes to the default", &prom.Egress, "8.8.8.8", UDP, 53, true},
		{"prom's ingress is not isolated", &prom.Ingress, "8.8.8.8", TCP, 1, true},
	})
	if prom.Ingress.Isolated {
		t.Error("no policy selects prom's ingress, yet it is isolated")
	}
}

func TestValidateClusterPolicy(t *testing.T) {
	bad := `{"metadata":{"name":"c"},"spec":{"tier":"Middle","priority":1001,"subject":{},
	  "ingress":[{"action":"Allow","from":[]},{"action":"Deny","from":[{"networks":["10.0.0.0/8"]}]}],
	  "egress":[{"action":"Pass","to":[{"networks":["10.0.0.1/8"],"namespaces":{}}],"protocols":[{"destinationNamedPort":"http"},{}]},
	            {"action":"Accept","to":[{"domainNames":["example.com"]}],"protocols":[{"tcp":{"destinationPort":{"range":{"start":90,"end":80}}}}]}]}}`
	var cnp ClusterNetworkPolicy
	if err := json.Unmarshal([]byte(bad), &cnp); err != nil {
		t.Fatal(err)
	}
	err := cnp.Validate()
	for _, want := range []string{
		`spec.tier: is "Middle"`, "spec.priority: is 1001", "spec.subject: give exactly one",
		`spec.ingress[0].action: is "Allow"`, "spec.ingress[0].from: has 0 peers",
		"spec.ingress[1].from[0].networks: is an egress peer only",
		"spec.egress[0].to[0].networks[0]: 10.0.0.1/8 has host bits set",
		"spec.egress[0].to[0]: sets 2 peer kinds",
		"spec.egress[0].protocols[0].destinationNamedPort: cannot be used with networks",
		"spec.egress[0].protocols[1]: sets 0 matches",
		"spec.egress[1].to[0].domainNames: domain name peers (experimental) are not supported",
		"spec.egress[1].protocols[0].tcp.destinationPort.range: is 90-80",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestValidateNamesFields(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   []string
	}{
		{`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"from":[{}]}]}}`,
			[]string{"spec.ingress[0].from[0]: names no peer"}},
		{`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"from":[{"ipBlock":{"cidr":"10.0.0.0/8"},"podSelector":{}}]}]}}`,
			[]string{"spec.ingress[0].from[0]: ipBlock cannot be combined"}},
		{`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{},"egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.1/8","except":["11.0.0.0/16","10.0.0.0/8"]}}]}]}}`,
			[]string{"spec.egress[0].to[0].ipBlock.cidr: 10.0.0.1/8 has host bits set; write 10.0.0.0/8",
				"spec.egress[0].to[0].ipBlock.except[0]: 11.0.0.0/16 must lie strictly inside",
				"spec.egress[0].to[0].ipBlock.except[1]: 10.0.0.0/8 must lie strictly inside"}},
		{`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"ports":[{"port":0},{"port":"http","endPort":90},{"port":100,"endPort":99},{"protocol":"ICMP"},{"port":"Not_A_Name"}]}]}}`,
			[]string{"spec.ingress[0].ports[0].port: is 0", "spec.ingress[0].ports[1].endPort: cannot follow a named port",
				"spec.ingress[0].ports[2].endPort: is 99", "spec.ingress[0].ports[3].protocol: is \"ICMP\"",
				"spec.ingress[0].ports[4].port: \"Not_A_Name\" is not a port name"}},
		{`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{"matchExpressions":[{"key":"a","operator":"In"},{"key":"b","operator":"Exists","values":["v"]},{"key":"c","operator":"Like"}]},"policyTypes":["Ingress","Ingress","Both"]}}`,
			[]string{"spec.podSelector.matchExpressions[0].values: In needs at least one value",
				"spec.podSelector.matchExpressions[1].values: Exists takes no values",
				"spec.podSelector.matchExpressions[2].operator: is \"Like\"",
				"spec.policyTypes[1]: Ingress is listed twice", "spec.policyTypes[2]: is \"Both\""}},
		{`{"metadata":{"name":"","namespace":"X"},"spec":{"podSelector":{"matchLabels":{"-bad":"ok","k":"bad value"}}}}`,
			[]string{"metadata.name: is required", "metadata.namespace: \"X\" must be lower-case",
				"spec.podSelector.matchLabels: label key \"-bad\"", "spec.podSelector.matchLabels[k]: label value \"bad value\""}},
	} {
		var np NetworkPolicy
		if err := json.Unmarshal([]byte(tc.policy), &np); err != nil {
			t.Fatal(err)
		}
		err := np.Validate()
		var ve *fielderr.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("%s: no validation error: %v", tc.policy, err)
		}
		if len(ve.Errors) != len(tc.want) {
			t.Errorf("%s: %d problems, want %d:\n%v", tc.policy, len(ve.Errors), len(tc.want), err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error lacks %q:\n%v", tc.policy, w, err)
			}
		}
		// Bad input compiles nothing.
		if rs, err := Compile(&Cluster{Policies: []NetworkPolicy{np}}, Node{Name: "n"}); err == nil || rs != nil {
			t.Errorf("%s: compiled despite the problems", tc.policy)
		}
	}
}

// FuzzCompile: any JSON input either fails validation or compiles, twice
// alike, into normalised directions; it never panics.
func FuzzCompile(f *testing.F) {
	b, err := os.ReadFile("testdata/cluster.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"policies":[{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{},"egress":[{"to":[{"ipBlock":{"cidr":"::/0","except":["fd00::/8"]}}],"ports":[{"port":1,"endPort":65535}]}]}}],"pods":[{"namespace":"x","name":"a","node":"n","ips":["fd00::1"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Cluster
		if json.Unmarshal(data, &c) != nil {
			return
		}
		node := Node{Name: "n", IPs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}}
		rs, err := Compile(&c, node)
		if err != nil {
			return
		}
		again, _ := Compile(&c, node)
		x, _ := json.Marshal(rs)
		y, _ := json.Marshal(again)
		if !bytes.Equal(x, y) {
			t.Fatalf("two compilations differ:\n%s\n%s", x, y)
		}
		for _, ep := range rs.Endpoints {
			for _, d := range []Direction{ep.Ingress, ep.Egress} {
				for i, pa := range d.Ports {
					if pa.First > pa.Last || len(pa.Peers) == 0 {
						t.Fatalf("%s: bad port entry %+v", ep.Pod, pa)
					}
					if i > 0 && d.Ports[i-1].Protocol == pa.Protocol && d.Ports[i-1].Last >= pa.First {
						t.Fatalf("%s: overlapping port entries %+v %+v", ep.Pod, d.Ports[i-1], pa)
					}
				}
			}
		}
	})
}
