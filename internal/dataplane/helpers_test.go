package dataplane

import (
	"net/netip"
	"strings"
	"testing"
)

// route parses the String form: "DST [via ADDR] [dev NAME] [scope S]".
func route(t testing.TB, s string) Route {
	t.Helper()
	f := strings.Fields(s)
	if len(f) == 0 || len(f)%2 == 0 {
		t.Fatalf("bad route %q", s)
	}
	r := Route{Dst: netip.MustParsePrefix(f[0])}
	for i := 1; i < len(f); i += 2 {
		switch f[i] {
		case "via":
			r.Via = netip.MustParseAddr(f[i+1])
		case "dev":
			r.Dev = f[i+1]
		case "scope":
			scopes := map[string]Scope{"auto": ScopeAuto, "global": ScopeUniverse, "link": ScopeLink, "host": ScopeHost}
			sc, ok := scopes[f[i+1]]
			if !ok {
				t.Fatalf("bad scope in %q", s)
			}
			r.Scope = sc
		default:
			t.Fatalf("bad route %q", s)
		}
	}
	return r
}

func routes(t testing.TB, ss ...string) []Route {
	t.Helper()
	out := make([]Route, len(ss))
	for i, s := range ss {
		out[i] = route(t, s)
	}
	return out
}
