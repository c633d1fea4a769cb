package topology

import "testing"

func TestRomanaDummyAdmitsNoOrdinaryHost(t *testing.T) {
	top := mustLoad(t, []byte(`{
  "networks": [{"name": "a", "cidr": "10.0.0.0/16", "block_mask": 26}],
  "topologies": [{"networks": ["a"], "map": [
    {"name": "live", "groups": []},
    {"groups": []},
    {"name": "pad", "dummy": true, "assignment": {"rack": "1"}, "groups": []}
  ]}]
}`))
	tr := top.Trees[0]
	if tr.Groups[1].Name != "group-1" {
		t.Errorf("unnamed group named %q, want group-1", tr.Groups[1].Name)
	}
	pad := tr.Group("pad")
	for _, l := range []map[string]string{{}, {"rack": "1"}, {"zone": "x"}} {
		if pad.Admits(l) {
			t.Errorf("dummy group admits %v", l)
		}
	}
	// The dummy still takes its slot, as in Romana: three groups, quarters.
	if h := top.Network("a").Homes[pad]; h.String() != "10.0.128.0/18" {
		t.Errorf("dummy home %s, want 10.0.128.0/18", h)
	}
}

func TestRomanaRouting(t *testing.T) {
	tests := []struct{ in, mode, advertise string }{
		{"", "", ""},
		{"block-host-routes", "", ""},
		{"prefix-announce-bgp", "bgp", "group"},
		{"prefix-announce-bgp:10.0.0.1", "bgp", "group"},
		{"block-host-routes, prefix-announce-bgp", "bgp", "group"},
		{"block-announce-bgp", "bgp", ""},
		{"prefix-announce-vpc", "vpc", ""},
		{"prefix-announce-bgp,prefix-announce-vpc", "vpc", ""},
		{"prefix-announce-vpc,prefix-announce-bgp", "vpc", ""},
	}
	for _, tt := range tests {
		if mode, adv := romanaRouting(tt.in); mode != tt.mode || adv != tt.advertise {
			t.Errorf("romanaRouting(%q) = %q, %q; want %q, %q", tt.in, mode, adv, tt.mode, tt.advertise)
		}
	}
}
