package ipam

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const zoneRackYAML = `
networks:
  - name: net
    cidr: 10.0.0.0/24
    blockSize: 28
topologies:
  - networks: [net]
    groups:
      - name: a
        weight: 1
        assignment: {matchLabels: {zone: a}}
        groups:
          - name: r1
          - name: r2
            weight: 1
            expectedHosts: %d
          - name: r3
            weight: 1
            expectedHosts: %d
      - name: b
        weight: 1
        expectedHosts: %d
        assignment: {matchLabels: {zone: b}}
reservations: [10.0.0.0/28]
`

func TestInitialPlan(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		mode PlanMode
		want map[string][]netip.Prefix
	}{{
		// Romana's split: two zones halve the /24; zone a's three racks take
		// /27s and the fourth /27 is padding; the reservation is cut out.
		name: "static romana split minus reservation",
		yaml: fmt.Sprintf(zoneRackYAML, 0, 0, 0),
		mode: Static,
		want: map[string][]netip.Prefix{
			"a":    pfxs("10.0.0.16/28", "10.0.0.32/27", "10.0.0.64/26"),
			"a/r1": pfxs("10.0.0.16/28"),
			"a/r2": pfxs("10.0.0.32/27"),
			"a/r3": pfxs("10.0.0.64/27"),
			"b":    pfxs("10.0.0.128/25"),
		},
	}, {
		// Static mode ignores size hints: a group owns its home.
		name: "static ignores expected hosts",
		yaml: fmt.Sprintf(zoneRackYAML, 2, 5, 3),
		mode: Static,
		want: map[string][]netip.Prefix{
			"a":    pfxs("10.0.0.16/28", "10.0.0.32/27", "10.0.0.64/26"),
			"a/r1": pfxs("10.0.0.16/28"),
			"a/r2": pfxs("10.0.0.32/27"),
			"a/r3": pfxs("10.0.0.64/27"),
			"b":    pfxs("10.0.0.128/25"),
		},
	}, {
		// Elastic leaves start at one block at the start of their home
		// (after the reservation); interior groups own their home.
		name: "elastic one block per leaf",
		yaml: fmt.Sprintf(zoneRackYAML, 0, 0, 0),
		mode: Elastic,
		want: map[string][]netip.Prefix{
			"a":    pfxs("10.0.0.16/28", "10.0.0.32/27", "10.0.0.64/26"),
			"a/r1": pfxs("10.0.0.16/28"),
			"a/r2": pfxs("10.0.0.32/28"),
			"a/r3": pfxs("10.0.0.64/28"),
			"b":    pfxs("10.0.0.128/28"),
		},
	}, {
		// Expected hosts round up to a power of two of blocks, capped at
		// the home: 2 → /27, 3 → 4 blocks /26, 5 → 8 blocks but home /27.
		name: "elastic expected hosts",
		yaml: fmt.Sprintf(zoneRackYAML, 2, 5, 3),
		mode: Elastic,
		want: map[string][]netip.Prefix{
			"a":    pfxs("10.0.0.16/28", "10.0.0.32/27", "10.0.0.64/26"),
			"a/r1": pfxs("10.0.0.16/28"),
			"a/r2": pfxs("10.0.0.32/27"),
			"a/r3": pfxs("10.0.0.64/27"),
			"b":    pfxs("10.0.0.128/26"),
		},
	}, {
		// Elastic leaf homes are packed at the start of their parent's
		// home with room to double four times: 3 racks × 16 blocks fit a
		// /22, so the racks' homes are /24s there, not /19s.
		name: "elastic packs leaf homes",
		yaml: `
networks: [{name: net, cidr: 10.0.0.0/16, blockSize: 28}]
topologies:
  - networks: [net]
    groups:
      - name: a
        groups: [{name: r1}, {name: r2}, {name: r3}]
      - name: b
`,
		mode: Elastic,
		want: map[string][]netip.Prefix{
			"a":    pfxs("10.0.0.0/17"),
			"a/r1": pfxs("10.0.0.0/28"),
			"a/r2": pfxs("10.0.1.0/28"),
			"a/r3": pfxs("10.0.2.0/28"),
			"b":    pfxs("10.0.128.0/28"),
		},
	}, {
		name: "static three groups leave padding",
		yaml: `
networks: [{name: net, cidr: 10.0.0.0/24, blockSize: 28}]
topologies:
  - networks: [net]
    groups: [{name: a}, {name: b}, {name: c}]
`,
		mode: Static,
		want: map[string][]netip.Prefix{
			"a": pfxs("10.0.0.0/26"),
			"b": pfxs("10.0.0.64/26"),
			"c": pfxs("10.0.0.128/26"),
		},
	}, {
		name: "elastic ipv6",
		yaml: `
networks: [{name: net, cidr: "fd00::/120", blockSize: 124}]
topologies:
  - networks: [net]
    groups: [{name: a}, {name: b}]
`,
		mode: Elastic,
		want: map[string][]netip.Prefix{
			"a": pfxs("fd00::/124"),
			"b": pfxs("fd00::80/124"),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := mustLoad(t, tt.yaml)
			a, changes, err := New(top, Options{Mode: tt.mode})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if d := cmp.Diff(tt.want, a.GroupPrefixes("net"), cmpOpts...); d != "" {
				t.Errorf("group prefixes (-want +got):\n%s", d)
			}
			for _, c := range changes {
				if c.Kind != GroupPrefixAdded {
					t.Errorf("New returned %s; want only %s", c, GroupPrefixAdded)
				}
			}
			// New's changes are the whole plan: replayed from nothing they
			// give the same allocator.
			r := emptyAllocator(top, Options{Mode: tt.mode})
			if err := r.Apply(changes); err != nil {
				t.Fatalf("Apply(New's changes): %v", err)
			}
			if d := cmp.Diff(snapshot(a), snapshot(r), cmpOpts...); d != "" {
				t.Errorf("replayed plan differs (-new +replayed):\n%s", d)
			}
		})
	}
}

func TestParsePlanMode(t *testing.T) {
	for s, want := range map[string]PlanMode{"": Elastic, "elastic": Elastic, "static": Static} {
		got, err := ParsePlanMode(s)
		if err != nil || got != want {
			t.Errorf("ParsePlanMode(%q) = %v, %v; want %v", s, got, err, want)
		}
		if s != "" && got.String() != s {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), s)
		}
	}
	if _, err := ParsePlanMode("dynamic"); err == nil {
		t.Error("ParsePlanMode(dynamic) succeeded")
	}
}
