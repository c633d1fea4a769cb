package dataplane

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		state State
		want  []string // one substring per expected problem, in order
	}{
		{name: "empty state"},
		{
			name: "good routes",
			state: State{Table: 100, Routes: []Route{
				{Dst: netip.MustParsePrefix("10.0.0.0/24"), Via: netip.MustParseAddr("192.0.2.1")},
				{Dst: netip.MustParsePrefix("10.0.1.5/32"), Dev: "veth1"},
				{Dst: netip.MustParsePrefix("10.0.1.6/32"), Dev: "veth1", Scope: ScopeHost},
				{Dst: netip.MustParsePrefix("2001:db8::/64"), Via: netip.MustParseAddr("fe80::1"), Dev: "eth0"},
				{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("192.0.2.1"), Scope: ScopeUniverse},
			}},
		},
		{name: "main table", state: State{Table: 254}, want: []string{"table: table 254 is reserved"}},
		{name: "local table", state: State{Table: 255}, want: []string{"table: table 255 is reserved"}},
		{name: "negative table", state: State{Table: -1}, want: []string{"table: table -1 is not a routing table ID"}},
		{name: "table too large", state: State{Table: 1 << 32}, want: []string{"is not a routing table ID"}},
		{
			name: "every problem at once, with its path",
			state: State{Routes: []Route{
				{Via: netip.MustParseAddr("192.0.2.1")},
				{Dst: netip.MustParsePrefix("10.0.0.0/24")},
				{Dst: netip.MustParsePrefix("10.0.1.0/24"), Via: netip.MustParseAddr("2001:db8::1")},
				{Dst: netip.MustParsePrefix("10.0.2.0/24"), Via: netip.MustParseAddr("0.0.0.0")},
				{Dst: netip.MustParsePrefix("10.0.3.0/24"), Via: netip.MustParseAddr("224.0.0.1")},
				{Dst: netip.MustParsePrefix("2001:db8::/64"), Via: netip.MustParseAddr("fe80::1")},
				{Dst: netip.MustParsePrefix("10.0.4.0/24"), Dev: "a-name-that-is-too-long"},
				{Dst: netip.MustParsePrefix("10.0.5.0/24"), Dev: "bad/name"},
				{Dst: netip.MustParsePrefix("10.0.6.0/24"), Via: netip.MustParseAddr("192.0.2.1"), Scope: ScopeLink},
				{Dst: netip.MustParsePrefix("2001:db8:1::/64"), Dev: "veth1", Scope: ScopeLink},
				{Dst: netip.MustParsePrefix("10.0.7.0/24"), Dev: "veth1", Scope: 9},
				{Dst: netip.MustParsePrefix("10.0.0.9/24"), Dev: "veth1"},
				{Dst: netip.MustParsePrefix("::ffff:10.0.8.0/120"), Dev: "veth1"},
			}},
			want: []string{
				"routes[0].dst: missing or invalid prefix",
				"routes[1]: a route needs a next hop",
				"routes[2].via: next hop 2001:db8::1 is not of the destination's address family",
				"routes[3].via: 0.0.0.0 is the unspecified address",
				"routes[4].via: 224.0.0.1 is a multicast address",
				"routes[5].dev: a link-local next hop (fe80::1) needs a device",
				"routes[6].dev: interface name \"a-name-that-is-too-long\" is longer than 15 bytes",
				"routes[7].dev: interface name \"bad/name\" contains",
				"routes[8].scope: a route via a next hop must have global scope, not link",
				"routes[9].scope: IPv6 routes have no scope",
				"routes[10].scope: unknown scope 9",
				"routes[11].dst: 10.0.0.0/24 is also the destination of routes[1]",
				"routes[12].dst: ::ffff:10.0.8.0/120 is an IPv4-mapped IPv6 prefix",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.state.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			if len(ve.Errors) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ve.Errors), len(tt.want), err)
			}
			for i, w := range tt.want {
				if got := ve.Errors[i].Error(); !strings.Contains(got, w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got, w)
				}
			}
		})
	}
}

func TestCheckTable(t *testing.T) {
	if err := (State{}).CheckTable(100); err != nil {
		t.Errorf("table 0 on table 100: %v", err)
	}
	if err := (State{Table: 100}).CheckTable(100); err != nil {
		t.Errorf("table 100 on table 100: %v", err)
	}
	if err := (State{Table: 101}).CheckTable(100); !errors.Is(err, ErrWrongTable) {
		t.Errorf("table 101 on table 100: %v, want ErrWrongTable", err)
	}
}

func TestRouteString(t *testing.T) {
	for _, tt := range []struct {
		r    Route
		want string
	}{
		{Route{Dst: netip.MustParsePrefix("10.0.0.0/24"), Via: netip.MustParseAddr("192.0.2.1")}, "10.0.0.0/24 via 192.0.2.1"},
		{Route{Dst: netip.MustParsePrefix("10.0.0.5/32"), Dev: "veth1"}, "10.0.0.5/32 dev veth1"},
		{Route{Dst: netip.MustParsePrefix("10.0.0.5/32"), Dev: "veth1", Scope: ScopeLink}, "10.0.0.5/32 dev veth1"},
		{Route{Dst: netip.MustParsePrefix("10.0.0.5/32"), Dev: "veth1", Scope: ScopeUniverse}, "10.0.0.5/32 dev veth1 scope global"},
		{Route{Dst: netip.MustParsePrefix("10.0.0.5/32"), Dev: "lo", Scope: ScopeHost}, "10.0.0.5/32 dev lo scope host"},
		{Route{Dst: netip.MustParsePrefix("2001:db8::5/128"), Dev: "veth1", Scope: ScopeUniverse}, "2001:db8::5/128 dev veth1"},
		{Route{Dst: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("fe80::1"), Dev: "eth0"}, "::/0 via fe80::1 dev eth0"},
	} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
		if got := tt.r.Normalize().String(); got != tt.want {
			t.Errorf("Normalize().String() = %q, want %q", got, tt.want)
		}
	}
}
