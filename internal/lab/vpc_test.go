package lab

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/cloud/ec2fake"
	"github.com/terrane-net/terrane/internal/cloud/vpc"
	"github.com/terrane-net/terrane/internal/fielderr"
)

const vpcScenario = `
topology: |
  networks:
    - {name: vpc, cidr: 10.30.0.0/16, blockSize: 28}
  topologies:
    - networks: [vpc]
      groups:
        - {name: za, assignment: {matchLabels: {zone: a}}, routing: vpc}
        - {name: zb, assignment: {matchLabels: {zone: b}}, routing: vpc}
segments:
  - {name: za, subnet: 172.31.0.0/20, router: vpc}
  - {name: zb, subnet: 172.31.16.0/20, router: vpc}
routers:
  - {name: vpc, vpc: {budget: 8}}
hosts:
  - {name: a-1, segment: za, labels: {zone: a}}
  - {name: b-1, segment: zb, labels: {zone: b, terrane.io/instance-id: i-0abc}}
`

func TestParseScenarioVPCRouter(t *testing.T) {
	sc, err := ParseScenario([]byte(vpcScenario))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Compile(); err != nil {
		t.Fatal(err)
	}
	vr, ok := sc.VPCRouter()
	if !ok || vr.VPC.RouteTable != DefaultRouteTable || vr.VPC.Budget != 8 || vr.Spine.IsValid() || sc.StaticRouters() || sc.BGPRouters() {
		t.Errorf("vpc router %+v %+v", vr, vr.VPC)
	}
	if a, _ := sc.Host("a-1"); a.Labels[InstanceLabel] != "i-a-1" {
		t.Errorf("a-1's labels %v: want the default instance ID", a.Labels)
	}
	if b, _ := sc.Host("b-1"); b.Labels[InstanceLabel] != "i-0abc" {
		t.Errorf("b-1's labels %v: want its own instance ID", b.Labels)
	}

	tests := []struct{ name, from, to, want string }{
		{"spine", "{name: vpc, vpc: {budget: 8}}", "{name: vpc, spine: 10.255.0.1/24, vpc: {budget: 8}}", "routers[0].spine: a vpc router alone has no spine"},
		{"budget", "{budget: 8}", "{budget: 1001}", "routers[0].vpc.budget: 1001: want a whole number of routes from 1 to 1000"},
		{"budget type", "{budget: 8}", "{budget: eight}", `routers[0].vpc.budget: is the string "eight"; want a number`},
		{"table", "{budget: 8}", "{routeTable: table-1}", `routers[0].vpc.routeTable: "table-1" is not a route table ID`},
		{"unknown", "{budget: 8}", "{budget: 8, limit: 3}", "routers[0].vpc.limit: unknown field"},
		{"only router", "{name: vpc, vpc: {budget: 8}}", "{name: vpc, vpc: {budget: 8}}\n  - {name: tor, spine: 10.255.0.1/24}", `routers[1]: router "tor": beside a vpc router (vpc) every other router runs BGP`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(vpcScenario, tt.from, tt.to, 1)
			if tt.name == "only router" {
				doc = strings.Replace(doc, "{name: zb, subnet: 172.31.16.0/20, router: vpc}", "{name: zb, subnet: 172.31.16.0/20, router: tor}", 1)
			}
			_, err := ParseScenario([]byte(doc))
			var ve *fielderr.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	// Hosts behind a vpc router route by vpc.
	sc, err = ParseScenario([]byte(strings.Replace(vpcScenario, "zone: b}}, routing: vpc}", "zone: b}}, routing: l2}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Compile(); err == nil || !strings.Contains(err.Error(), `hosts[1].labels: host "b-1" sits behind vpc router vpc, but its group zb of network "vpc" routes by l2`) {
		t.Errorf("l2 host behind the vpc router: %v", err)
	}
}

// The fake's table becomes the router's kernel routes: instance targets
// via their hosts; the VPC's own route, blackholes and unknown instances
// left out (the last two reported).
func TestVPCKernelRoutes(t *testing.T) {
	sc, err := ParseScenario([]byte(vpcScenario))
	if err != nil {
		t.Fatal(err)
	}
	a, b := sc.Hosts[0], sc.Hosts[1]
	table := []ec2fake.Route{
		{Dst: netip.MustParsePrefix("172.31.0.0/16"), Gateway: "local", Origin: ec2fake.OriginCreateRouteTable, State: ec2fake.StateActive},
		{Dst: netip.MustParsePrefix("10.30.0.0/28"), Instance: "i-a-1", Origin: ec2fake.OriginCreateRoute, State: ec2fake.StateActive},
		{Dst: netip.MustParsePrefix("10.30.64.0/18"), Instance: "i-0abc", Origin: ec2fake.OriginCreateRoute, State: ec2fake.StateActive},
		{Dst: netip.MustParsePrefix("10.30.1.0/28"), Instance: "i-gone", Origin: ec2fake.OriginCreateRoute, State: ec2fake.StateActive},
		{Dst: netip.MustParsePrefix("10.30.2.0/28"), Instance: "i-a-1", Origin: ec2fake.OriginCreateRoute, State: ec2fake.StateBlackhole},
	}
	routes, problems := VPCKernelRoutes(sc, table)
	var got []string
	for _, r := range routes {
		got = append(got, r.Dst.String()+" via "+r.Via.String())
	}
	want := []string{"10.30.0.0/28 via " + a.IP.String(), "10.30.64.0/18 via " + b.IP.String()}
	if !slices.Equal(got, want) {
		t.Errorf("routes %v, want %v", got, want)
	}
	if len(problems) != 2 || !strings.Contains(problems[0], "i-gone: no host has that instance ID") || !strings.Contains(problems[1], "is blackhole") {
		t.Errorf("problems %v", problems)
	}
	if c := vpcConfig("http://127.0.0.1:1", RouterVPC{RouteTable: "rtb-x", Budget: 8}); !strings.Contains(c, "endpoint: http://127.0.0.1:1") || !strings.Contains(c, "- id: rtb-x\n    budget: 8") {
		t.Errorf("vpc config:\n%s", c)
	} else if cfg, err := vpc.ParseConfig([]byte(c)); err != nil || cfg.Tables[0].Budget4 != 8 || cfg.InstanceLabel != InstanceLabel {
		t.Errorf("the server would not read the lab's vpc config: %+v, %v", cfg, err)
	}
}
