package topology

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// brokenNative and brokenRomana seed the fuzzers with near misses.
var brokenNative = []string{
	"",
	"networks:\n  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}\ntopologies:\n  - networks: [a]\n    groups: [{name: g, routing: bgp, bgp: {asn: 4294967296, peers: [{address: 1.2.3.4, asn: 1}, {address: 1.2.3.4, asn: 0, port: -1}], gracefulRestart: 1m1m}, groups: [{name: r, routing: l2, bgp: {}}]}]\n",
	"[]",
	"networks: [",
	"networks:\n  - {name: a, cidr: 10.0.0.1/16, blockSize: 40}\ntopologies: []\n",
	"networks:\n  - {name: a, cidr: 10.0.0.0/24, blockSize: 26}\ntopologies:\n  - networks: [a]\n    groups: [{name: g, weight: 9223372036854775807}, {name: h, weight: 3}]\n",
	"networks:\n  - {name: a, cidr: \"fd00::/48\", blockSize: 120}\ntopologies:\n  - networks: [a]\n    groups: [{name: g, prefix: \"fd00::/49\"}, {name: h, groups: [{name: r, prefix: \"fd00:0:0:8000::/120\"}]}]\n",
	"networks:\n  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}\ntopologies:\n  - networks: [a]\n    groups: [{name: g, assignment: {matchExpressions: [{key: k, operator: In}]}, hosts: [{name: h, ip: 1.2.3.4}], groups: [{name: x}]}]\n",
}

var brokenRomana = []string{
	`{"networks": [{"name": "a", "cidr": "10.0.0.0/16", "block_mask": 26}], "topologies": [{"networks": ["a"], "map": [{"ip": "1.2.3.4"}]}]}`,
	`{"networks": [{"name": "a", "cidr": "10.0.0.0/16", "block_mask": 26, "tenants": [""]}], "topologies": [{"networks": ["a"], "map": [{"groups": [{"ip": "1.2.3.4", "groups": [{}]}]}]}]}`,
	`{"networks": [{"name": "a", "cidr": "10.0.0.0/16", "block_mask": 26}], "topologies": [{"networks": ["a"], "map": [{"name": "g", "routing": "prefix-announce-bgp,vpc", "cidr": "10.0.0.0/17", "dummy": true, "groups": []}]}]}`,
	`{"networks": [{"block_mask": "x"}], "topologies": {}}`,
}

func FuzzParseNative(f *testing.F) {
	for _, name := range exampleNames(f) {
		f.Add(readFile(f, filepath.Join(examplesDir, name+".yaml")))
	}
	for _, s := range brokenNative {
		f.Add([]byte(s))
	}
	f.Fuzz(checkLoad)
}

func FuzzParseRomana(f *testing.F) {
	for _, name := range exampleNames(f) {
		f.Add(readFile(f, filepath.Join(examplesDir, name+".romana.json")))
	}
	for _, s := range brokenRomana {
		f.Add([]byte(s))
	}
	f.Fuzz(checkLoad)
}

// checkLoad: Load never panics; it fails only with a *ValidationError that
// names at least one problem; and what it accepts satisfies the model's
// invariants.
func checkLoad(t *testing.T, data []byte) {
	top, err := Load(data)
	if err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Errors) == 0 {
			t.Fatalf("Load failed with %T %v, want a *ValidationError with errors", err, err)
		}
		if strings.TrimSpace(err.Error()) == "" {
			t.Fatal("empty error message")
		}
		return
	}
	if top == nil {
		t.Fatal("Load returned neither topology nor error")
	}
	if bad := invariantViolations(top); len(bad) > 0 {
		t.Fatalf("invariants violated:\n  %s", strings.Join(bad, "\n  "))
	}
}
