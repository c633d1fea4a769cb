package policybench

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/policy/policygen"
)

var client, server = netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.1.0.3")

// The compiled pair admits the client on the pair's ports and each decoy
// on its own port only; the rendering lists the same rules, in order, the
// pair's last.
func TestPairCompiledAndLinear(t *testing.T) {
	c, err := policygen.Pair(12, client, server, 5201, 5202)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Policies) != 4 {
		t.Errorf("%d policies, want 2 per direction (10 rules each)", len(c.Policies))
	}
	rs, err := policy.Compile(c, policy.Node{Name: policygen.PairNode})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := rs.Endpoint(server)
	cli, _ := rs.Endpoint(client)
	for _, tc := range []struct {
		d    *policy.Direction
		peer netip.Addr
		port uint16
		want bool
	}{
		{&srv.Ingress, client, 5201, true}, {&srv.Ingress, client, 5202, true}, {&srv.Ingress, client, 5203, false},
		{&srv.Ingress, policygen.PairDecoy(0), uint16(policygen.PairDecoyPort(0)), true},
		{&srv.Ingress, policygen.PairDecoy(0), uint16(policygen.PairDecoyPort(1)), false},
		{&srv.Ingress, policygen.PairDecoy(11), uint16(policygen.PairDecoyPort(11)), false}, // rule 11 is the pair's
		{&cli.Egress, server, 5201, true}, {&cli.Egress, server, 5203, false},
		{&cli.Egress, policygen.PairDecoy(10), uint16(policygen.PairDecoyPort(10)), true},
		{&cli.Ingress, server, 80, true}, // not isolated
	} {
		if got := tc.d.Allows(tc.peer, policy.TCP, tc.port); got != tc.want {
			t.Errorf("%s:%d: allowed %v, want %v", tc.peer, tc.port, got, tc.want)
		}
	}

	rules, n, err := LinearRules(c, policygen.PairNode)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2*(11+2) {
		t.Errorf("%d rules, want 26", n)
	}
	lines := strings.Split(strings.TrimSpace(rules), "\n")
	for _, want := range []string{
		"*filter",
		":" + iptForward + " - [0:0]",
		":TB-OUT-bench-client - [0:0]",
		":TB-IN-bench-server - [0:0]",
		"-A FORWARD -j " + iptForward,
		"-A " + iptForward + " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		"-A TB-OUT-bench-client -d 10.200.0.0/32 -p tcp --dport 20000 -j RETURN",
	} {
		if !strings.Contains(rules, want+"\n") {
			t.Errorf("rendering lacks %q:\n%s", want, rules)
		}
	}
	// The server's chain: decoys 0-10 in order, then the client on both
	// ports, then DROP.
	var chain []string
	for _, l := range lines {
		if strings.HasPrefix(l, "-A TB-IN-bench-server ") {
			chain = append(chain, strings.TrimPrefix(l, "-A TB-IN-bench-server "))
		}
	}
	if len(chain) != 14 || chain[0] != "-s 10.200.0.0/32 -p tcp --dport 20000 -j ACCEPT" || chain[10] != "-s 10.200.0.10/32 -p tcp --dport 20010 -j ACCEPT" ||
		chain[11] != "-s 10.1.0.2/32 -p tcp --dport 5201 -j ACCEPT" || chain[12] != "-s 10.1.0.2/32 -p tcp --dport 5202 -j ACCEPT" || chain[13] != "-j DROP" {
		t.Errorf("server chain:\n%s", strings.Join(chain, "\n"))
	}
	// FORWARD's chain: established, the client's egress, the server's
	// ingress, in that order.
	var fwd []string
	for _, l := range lines {
		if strings.HasPrefix(l, "-A "+iptForward+" ") {
			fwd = append(fwd, strings.TrimPrefix(l, "-A "+iptForward+" "))
		}
	}
	if strings.Join(fwd, "\n") != "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-s 10.1.0.2/32 -j TB-OUT-bench-client\n-d 10.1.0.3/32 -j TB-IN-bench-server" {
		t.Errorf("%s chain:\n%s", iptForward, strings.Join(fwd, "\n"))
	}
	if lines[len(lines)-1] != "COMMIT" {
		t.Errorf("rendering ends with %q, want COMMIT", lines[len(lines)-1])
	}
}

// Shapes the rendering does not take are refused, naming the field.
func TestLinearRulesRefuses(t *testing.T) {
	c, err := policygen.Pair(2, client, server, 5201)
	if err != nil {
		t.Fatal(err)
	}
	c.Policies[0].Spec.Ingress[1].Ports = []policy.Port{{Port: &policy.IntOrString{Str: "http", String: true}}}
	_, _, err = LinearRules(c, policygen.PairNode)
	if err == nil || !strings.Contains(err.Error(), "policy bench/server-in-0: spec.ingress[1].ports[0]: the iptables rendering takes a numbered TCP or UDP port") {
		t.Errorf("named port: %v", err)
	}
	if _, err := policygen.Pair(0, client, server, 5201); err == nil || !strings.Contains(err.Error(), "rules 0: want 1 to 65536") {
		t.Errorf("Pair(0): %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	o := DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	o.Rules = [2]int{10, 10}
	o.Rounds, o.ConnWorkers, o.Iptables, o.Duration = 0, 0, "ipchains", 1500*time.Millisecond
	err := o.Validate()
	for _, want := range []string{"--rules 10,10: want LOW,HIGH", "--rounds 0", "--conn-workers 0", `--iptables "ipchains"`, "--duration 1.5s: want whole seconds"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
