package topology

import (
	"bytes"
	"strings"
	"testing"
)

// want is one expected field error: the exact path and a phrase of the message.
type want struct {
	path, phrase string
}

// oneNet is a valid native header the cases below extend.
const oneNet = `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}
`

func TestValidation(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []want // every error the file must produce, in order
	}{
		// Networks.
		{"overlapping networks", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}
  - {name: b, cidr: 10.0.128.0/17, blockSize: 26}
topologies:
  - {networks: [a, b], groups: [{name: g}]}
`, []want{{"networks[1].cidr", `10.0.128.0/17 overlaps network "a" (10.0.0.0/16, networks[0])`}}},
		{"block shorter than network", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 8}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[0].blockSize", "block size /8 is shorter than the network prefix /16; use /16 or longer"}}},
		{"block longer than address", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 33}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[0].blockSize", "block size /33 is longer than an address (/32)"}}},
		{"block too large for IPv6", `
networks:
  - {name: a, cidr: "fd00::/48", blockSize: 64}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[0].blockSize", "holds more than 65536 addresses; use /112 or longer"}}},
		{"missing block size", `
networks:
  - {name: a, cidr: 10.0.0.0/16}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[0].blockSize", "required: the prefix length of a block, e.g. 26"}}},
		{"missing block_mask romana", `{
  "networks": [{"name": "a", "cidr": "10.0.0.0/16"}],
  "topologies": [{"networks": ["a"], "map": [{"name": "g", "groups": []}]}]
}`, []want{{"networks[0].block_mask", "required"}}},
		{"network defined twice", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}
  - {name: a, cidr: 10.1.0.0/16, blockSize: 26}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[1].name", `network "a" is defined twice`}}},
		{"bad network name", `
networks:
  - {name: "a b", cidr: 10.0.0.0/16, blockSize: 26}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[0].name", `"a b": use letters, digits`}, {"topologies[0].networks[0]", `unknown network "a"`}}},
		{"empty namespace", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26, namespaces: [x, ""]}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[0].namespaces[1]", "empty name"}}},
		{"two defaults for every namespace", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26, default: true}
  - {name: b, cidr: 10.1.0.0/16, blockSize: 26, default: true}
topologies:
  - {networks: [a, b], groups: [{name: g}]}
`, []want{{"networks[1].default", `network "b" is also a default for namespaces network "a" (networks[0]) serves`}}},
		{"two defaults for one namespace", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26, default: true, namespaces: [web, api]}
  - {name: b, cidr: 10.1.0.0/16, blockSize: 26, default: true, namespaces: [api]}
  - {name: c, cidr: 10.2.0.0/16, blockSize: 26, default: true, namespaces: [ml]}
topologies:
  - {networks: [a, b, c], groups: [{name: g}]}
`, []want{{"networks[1].default", "also a default"}}},
		{"no networks no topologies", `
networks: []
topologies: []
`, []want{{"networks", "at least one network is required"}, {"topologies", "at least one topology is required"}}},

		// CIDRs.
		{"malformed CIDR", `
networks:
  - {name: a, cidr: 10.0.0.0/33, blockSize: 26}
  - {name: b, cidr: banana, blockSize: 26}
  - {name: c, blockSize: 26}
topologies:
  - {networks: [a, b, c], groups: [{name: g}]}
`, []want{
			{"networks[0].cidr", `"10.0.0.0/33" is not a CIDR`},
			{"networks[1].cidr", `"banana" is not a CIDR`},
			{"networks[2].cidr", "required: a CIDR"},
		}},
		{"CIDR with host bits", `
networks:
  - {name: a, cidr: 10.0.0.1/16, blockSize: 26}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[0].cidr", `"10.0.0.1/16" has host bits set; did you mean 10.0.0.0/16?`}}},
		{"IPv6 CIDR with host bits", `
networks:
  - {name: a, cidr: "fd00::1/48", blockSize: 120}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[0].cidr", "did you mean fd00::/48?"}}},
		{"CIDR with zone", `
networks:
  - {name: a, cidr: "fe80::%eth0/64", blockSize: 120}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[0].cidr", `"fe80::%eth0/64" is not a CIDR`}}},
		{"reservation and service CIDR with host bits", oneNet + `
topologies:
  - {networks: [a], groups: [{name: g}]}
reservations: [10.0.0.1/24]
serviceCIDRs: [10.96.0.1/12]
`, []want{
			{"reservations[0]", "did you mean 10.0.0.0/24?"},
			{"serviceCIDRs[0]", "did you mean 10.96.0.0/12?"},
		}},
		{"service CIDR overlaps network", oneNet + `
topologies:
  - {networks: [a], groups: [{name: g}]}
serviceCIDRs: [10.96.0.0/12, 10.0.0.0/8]
`, []want{{"serviceCIDRs[1]", `service CIDR 10.0.0.0/8 overlaps network "a" (10.0.0.0/16, networks[0])`}}},

		// Topologies and network references.
		{"unknown network", oneNet + `
topologies:
  - {networks: [a, nope], groups: [{name: g}]}
`, []want{{"topologies[0].networks[1]", `unknown network "nope"; defined networks: a`}}},
		{"network listed twice in a tree", oneNet + `
topologies:
  - {networks: [a, a], groups: [{name: g}]}
`, []want{{"topologies[0].networks[1]", `network "a" is listed twice`}}},
		{"network in two trees", oneNet + `
topologies:
  - {networks: [a], groups: [{name: g}]}
  - {networks: [a], groups: [{name: h}]}
`, []want{{"topologies[1].networks[0]", `network "a" already belongs to topologies[0]`}}},
		{"network in no tree", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}
  - {name: b, cidr: 10.1.0.0/16, blockSize: 26}
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"networks[1]", `network "b" is in no topology`}}},
		{"tree without networks or groups", oneNet + `
topologies:
  - {networks: [a], groups: [{name: g}]}
  - {groups: []}
`, []want{{"topologies[1].groups", "at least one group is required"}, {"topologies[1].networks", "required"}}},

		// Groups.
		{"more groups than address bits", `
networks:
  - {name: a, cidr: 10.0.0.0/24, blockSize: 26}
topologies:
  - networks: [a]
    groups: [{name: g1}, {name: g2}, {name: g3}, {name: g4}, {name: g5}, {name: g6}, {name: g7}, {name: g8}, {name: g9}]
`, []want{{"topologies[0]", "9 groups need 4 address bits but only 2 remain between 10.0.0.0/24 and block size /26"}}},
		{"more child groups than address bits", `
networks:
  - {name: a, cidr: 10.0.0.0/24, blockSize: 26}
topologies:
  - networks: [a]
    groups:
      - {name: z1, groups: [{name: r1}, {name: r2}, {name: r3}]}
      - {name: z2}
`, []want{{"topologies[0].groups[0].groups", "3 groups need 2 address bits but only 1 remain between 10.0.0.0/25 and block size /26"}}},
		{"more groups than bits names the network", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}
  - {name: b, cidr: 10.1.0.0/24, blockSize: 26}
topologies:
  - networks: [a, b]
    groups: [{name: g1}, {name: g2}, {name: g3}, {name: g4}, {name: g5}]
`, []want{{"topologies[0]", `5 groups need 3 address bits in network "b" but only 2 remain`}}},
		{"leaf smaller than a block", `
networks:
  - {name: a, cidr: 10.0.0.0/24, blockSize: 26}
topologies:
  - networks: [a]
    groups: [{name: big, weight: 7}, {name: small}]
`, []want{{"topologies[0].groups[1]", "prefix /27 is smaller than block size /26"}}},
		{"expected hosts weigh like weights", `
networks:
  - {name: a, cidr: 10.0.0.0/24, blockSize: 26}
topologies:
  - networks: [a]
    groups: [{name: big, expectedHosts: 70}, {name: small, expectedHosts: 10}]
`, []want{{"topologies[0].groups[1]", "prefix /27 is smaller than block size /26"}}},
		{"duplicate sibling names", oneNet + `
topologies:
  - networks: [a]
    groups:
      - {name: g}
      - name: g
        groups: [{name: r}, {name: r}]
`, []want{
			{"topologies[0].groups[1].groups[1].name", `group "r" is already defined at topologies[0].groups[1].groups[0]`},
			{"topologies[0].groups[1].name", `group "g" is already defined at topologies[0].groups[0]`},
		}},
		{"bad group name", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: "-g"}, {}]
`, []want{{"topologies[0].groups[0].name", `"-g": use letters`}, {"topologies[0].groups[1].name", "required"}}},
		{"hosts and groups", oneNet + `
topologies:
  - networks: [a]
    groups:
      - name: g
        hosts: [{name: h1, ip: 192.168.0.1}]
        groups: [{name: r}]
`, []want{{"topologies[0].groups[0]", "a group holds either child groups or hosts, not both"}}},
		{"duplicate host names", oneNet + `
topologies:
  - networks: [a]
    groups:
      - {name: g1, hosts: [{name: h1, ip: 192.168.0.1}]}
      - {name: g2, hosts: [{name: h1, ip: 192.168.0.2}]}
`, []want{{"topologies[0].groups[1].hosts[0].name", `host "h1" is already placed at topologies[0].groups[0].hosts[0]`}}},
		{"duplicate host IPs", oneNet + `
topologies:
  - networks: [a]
    groups:
      - name: g1
        hosts: [{name: h1, ip: 192.168.0.1}, {name: h2, ip: "::ffff:192.168.0.1"}]
`, []want{{"topologies[0].groups[0].hosts[1].ip", "192.168.0.1 is already the address of the host at topologies[0].groups[0].hosts[0]"}}},
		{"bad host fields", oneNet + `
topologies:
  - networks: [a]
    groups:
      - name: g1
        hosts: [{ip: 192.168.0.1}, {name: h2}, {name: h3, ip: 999.1.1.1}]
`, []want{
			{"topologies[0].groups[0].hosts[0].name", "required"},
			{"topologies[0].groups[0].hosts[1].ip", "required: the host's own address"},
			{"topologies[0].groups[0].hosts[2].ip", `"999.1.1.1" is not an IP address`},
		}},
		{"negative weight and expected hosts", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: g, weight: -1, expectedHosts: -3}]
`, []want{{"topologies[0].groups[0].expectedHosts", "must not be negative"}, {"topologies[0].groups[0].weight", "must not be negative"}}},
		{"invalid routing", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: g, routing: ospf}]
`, []want{{"topologies[0].groups[0].routing", `"ospf" is not a routing mode; use l2, bgp or vpc`}}},
		{"invalid advertise", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: g, routing: bgp, advertise: all}]
`, []want{{"topologies[0].groups[0].advertise", `"all": use blocks`}}},
		{"advertise without bgp", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: g, routing: vpc, advertise: group}]
`, []want{{"topologies[0].groups[0].advertise", "applies only to bgp groups; this group routes by vpc"}}},

		// Pinned prefixes.
		{"pinned outside network", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: g, prefix: 10.9.0.0/24}, {name: h}]
`, []want{{"topologies[0].groups[0].prefix", `10.9.0.0/24 is not inside network "a" (10.0.0.0/16)`}}},
		{"pinned outside every network of a multi-network tree", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}
  - {name: b, cidr: 10.1.0.0/16, blockSize: 26}
topologies:
  - networks: [a, b]
    groups: [{name: g, prefix: 10.9.0.0/24}, {name: h}]
`, []want{{"topologies[0].groups[0].prefix", "10.9.0.0/24 is not inside any network of its topology (a, b)"}}},
		{"pinned straddling the network", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: g, prefix: 10.0.0.0/8}]
`, []want{{"topologies[0].groups[0].prefix", "10.0.0.0/8 is outside the parent's prefix 10.0.0.0/16"}}},
		{"pinned outside parent home", oneNet + `
topologies:
  - networks: [a]
    groups:
      - {name: z1, groups: [{name: r, prefix: 10.0.200.0/24}]}
      - {name: z2}
`, []want{{"topologies[0].groups[0].groups[0].prefix", "10.0.200.0/24 is outside the parent's prefix 10.0.0.0/17"}}},
		{"pinned overlapping a sibling's", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: g, prefix: 10.0.0.0/18}, {name: h, prefix: 10.0.32.0/19}]
`, []want{{"topologies[0].groups[1].prefix", `10.0.32.0/19 overlaps 10.0.0.0/18, the prefix of sibling group "g"`}}},
		{"pinned smaller than a block", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: g, prefix: 10.0.0.0/28}]
`, []want{{"topologies[0].groups[0].prefix", "prefix /28 is smaller than block size /26"}}},
		{"pinned malformed", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: g, prefix: 10.0.0.7/24}]
`, []want{{"topologies[0].groups[0].prefix", "did you mean 10.0.0.0/24?"}}},
		{"pinned leaves no room", `
networks:
  - {name: a, cidr: 10.0.0.0/24, blockSize: 26}
topologies:
  - networks: [a]
    groups: [{name: g, prefix: 10.0.0.0/25}, {name: h}, {name: i}, {name: j}]
`, []want{{"topologies[0].groups[3]", "no room left in 10.0.0.0/24 for a prefix of at least one block (/26)"}}},

		// Selectors.
		{"bad label key and value", oneNet + `
topologies:
  - networks: [a]
    groups:
      - name: g
        assignment:
          matchLabels: {"-rack": "1", zone: "a b", "Example.com/x": "y"}
`, []want{
			{"topologies[0].groups[0].assignment.matchLabels.-rack", `"-rack" is not a valid label key`},
			{"topologies[0].groups[0].assignment.matchLabels.Example.com/x", `"Example.com/x" is not a valid label key`},
			{"topologies[0].groups[0].assignment.matchLabels.zone", `"a b" is not a valid label value`},
		}},
		{"bad expressions", oneNet + `
topologies:
  - networks: [a]
    groups:
      - name: g
        assignment:
          matchExpressions:
            - {key: "bad key", operator: In, values: [x]}
            - {key: rack, operator: Equals, values: [x]}
            - {key: rack, operator: In}
            - {key: rack, operator: NotIn, values: []}
            - {key: rack, operator: Exists, values: [x]}
            - {key: rack, operator: DoesNotExist, values: [x]}
            - {key: rack, operator: In, values: [ok, "not ok"]}
            - {key: rack, operator: in, values: [x]}
`, []want{
			{"topologies[0].groups[0].assignment.matchExpressions[0].key", `"bad key" is not a valid label key`},
			{"topologies[0].groups[0].assignment.matchExpressions[1].operator", `"Equals" is not an operator; use In, NotIn, Exists or DoesNotExist`},
			{"topologies[0].groups[0].assignment.matchExpressions[2].values", "operator In needs at least one value"},
			{"topologies[0].groups[0].assignment.matchExpressions[3].values", "operator NotIn needs at least one value"},
			{"topologies[0].groups[0].assignment.matchExpressions[4].values", "operator Exists takes no values"},
			{"topologies[0].groups[0].assignment.matchExpressions[5].values", "operator DoesNotExist takes no values"},
			{"topologies[0].groups[0].assignment.matchExpressions[6].values[1]", `"not ok" is not a valid label value`},
			{"topologies[0].groups[0].assignment.matchExpressions[7].operator", `"in" is not an operator`},
		}},

		// Shape: unknown fields and wrong types, at several depths.
		{"unknown fields native", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26, blocksize: 27}
topologies:
  - networks: [a]
    tree: x
    groups:
      - name: g
        assignment: {matchLabel: {rack: "1"}}
        groups:
          - name: r
            hosts: [{name: h1, address: 192.168.0.1}]
            assignment:
              matchExpressions: [{key: rack, operator: In, value: ["1"]}]
extra: 1
`, []want{
			{"extra", "unknown field; known fields here: apiVersion, kind, networks, reservations, serviceCIDRs, topologies"},
			{"networks[0].blocksize", "unknown field; known fields here: blockSize, cidr, default, name, namespaces"},
			{"topologies[0].groups[0].assignment.matchLabel", "unknown field; known fields here: matchExpressions, matchLabels"},
			{"topologies[0].groups[0].groups[0].assignment.matchExpressions[0].value", "unknown field; known fields here: key, operator, values"},
			// Unknown fields do not stop validation: what is missing without
			// them is reported in the same pass.
			{"topologies[0].groups[0].groups[0].assignment.matchExpressions[0].values", "operator In needs at least one value"},
			{"topologies[0].groups[0].groups[0].hosts[0].address", "unknown field; known fields here: ip, name"},
			{"topologies[0].groups[0].groups[0].hosts[0].ip", "required"},
			{"topologies[0].tree", "unknown field; known fields here: groups, networks"},
		}},
		{"unknown fields romana", `{
  "networks": [{"name": "a", "cidr": "10.0.0.0/16", "block_mask": 26, "blockSize": 26}],
  "topologies": [{
    "networks": ["a"],
    "map": [{"name": "g", "labels": {"rack": "1"}, "groups": [
      {"name": "h1", "ip": "192.168.0.1", "mac": "x"},
      {"name": "r", "groups": [], "weight": 2}
    ]}]
  }],
  "version": 2
}`, []want{
			{"networks[0].blockSize", "unknown field; known fields here: block_mask, cidr, name, tenants"},
			{"topologies[0].map[0]", "a group holds either child groups or hosts, not both"},
			{"topologies[0].map[0].groups[0].mac", "unknown field; known fields here: assignment, cidr, dummy, groups, ip, name, routing"},
			{"topologies[0].map[0].groups[1].weight", "unknown field"},
			{"topologies[0].map[0].labels", "unknown field"},
			{"version", "unknown field; known fields here: networks, topologies"},
		}},
		{"wrong types native", `
networks:
  - {name: a, cidr: 10, blockSize: "26", default: "yes", namespaces: x}
  - {name: b, cidr: 10.1.0.0/16, blockSize: 26.5}
  - [c]
topologies:
  - networks: a
    groups:
      - name: g
        weight: 1.5
        assignment: {matchLabels: [rack]}
      - name: h
        assignment: {matchLabels: {rack: 1}}
        hosts: [h1]
`, []want{
			{"networks[0].blockSize", `want a whole number, got string "26"`},
			{"networks[0].cidr", "want a string, got number 10 (quote it)"},
			{"networks[0].default", `want true or false, got string "yes"`},
			{"networks[0].namespaces", `want a list, got string "x"`},
			{"networks[1].blockSize", "want a whole number, got 26.5"},
			{"networks[2]", "want an object, got a list"},
			{"topologies[0].groups[0].assignment.matchLabels", "want an object of key: value pairs, got a list"},
			{"topologies[0].groups[0].weight", "want a whole number, got 1.5"},
			{"topologies[0].groups[1].assignment.matchLabels.rack", "want a string, got number 1 (quote it)"},
			{"topologies[0].groups[1].hosts[0]", `want an object, got string "h1"`},
			{"topologies[0].networks", `want a list, got string "a"`},
		}},
		{"wrong types romana", `{
  "networks": [{"name": "a", "cidr": "10.0.0.0/16", "block_mask": "26"}],
  "topologies": [{"networks": ["a"], "map": [{"name": "g", "assignment": {"rack": 1}, "dummy": "no", "groups": {}}]}]
}`, []want{
			{"networks[0].block_mask", `want a whole number, got string "26"`},
			{"topologies[0].map[0].assignment.rack", "want a string, got number 1"},
			{"topologies[0].map[0].dummy", `want true or false, got string "no"`},
			{"topologies[0].map[0].groups", "want a list, got an object"},
		}},
		{"numbers out of range", `{"networks": [{"name": "a", "cidr": "10.0.0.0/16", "blockSize": 1e30}],
 "topologies": [{"networks": ["a"], "groups": [{"name": "g", "weight": 99999999999999999999}]}]}`, []want{
			{"networks[0].blockSize", "want a whole number, got 1e+30"},
			{"topologies[0].groups[0].weight", "want a whole number, got 100000000000000000000"},
		}},
		{"YAML 1.1 booleans need quotes", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: g, assignment: {matchLabels: {enabled: yes, x: n}}}]
`, []want{
			{"topologies[0].groups[0].assignment.matchLabels.enabled", "want a string, got boolean true (quote it)"},
			{"topologies[0].groups[0].assignment.matchLabels.x", "want a string, got boolean false (quote it)"},
		}},
		{"top-level lists of the wrong kind", `{"networks": {}, "topologies": "all"}`, []want{
			{"networks", "want a list, got an object"},
			{"topologies", `want a list, got string "all"`},
		}},

		// Header.
		{"bad apiVersion and kind", `
apiVersion: terrane.io/v2
kind: Network
` + oneNet + `
topologies:
  - {networks: [a], groups: [{name: g}]}
`, []want{{"apiVersion", `"terrane.io/v2" is not supported; use "terrane.io/v1"`}, {"kind", `"Network" is not a topology`}}},

		// Romana specifics.
		{"romana host at top of map", `{
  "networks": [{"name": "a", "cidr": "10.0.0.0/16", "block_mask": 26}],
  "topologies": [{"networks": ["a"], "map": [{"name": "h1", "ip": "192.168.0.1"}]}]
}`, []want{{"topologies[0].map[0]", "a host cannot stand at the top of a topology map"}}},
		{"romana host with groups", `{
  "networks": [{"name": "a", "cidr": "10.0.0.0/16", "block_mask": 26}],
  "topologies": [{"networks": ["a"], "map": [{"name": "g", "groups": [
    {"name": "h1", "ip": "192.168.0.1", "groups": [{"name": "x", "groups": []}]}
  ]}]}]
}`, []want{{"topologies[0].map[0].groups[0]", "an element with an ip is a host and cannot have groups, assignment or cidr"}}},
		{"romana paths in compile errors", `{
  "networks": [{"name": "a", "cidr": "10.0.0.0/16", "block_mask": 26, "tenants": [""]}],
  "topologies": [{"networks": ["a"], "map": [
    {"name": "g", "cidr": "10.0.0.1/24", "groups": [
      {"name": "h1", "ip": "192.168.0.1"},
      {"name": "h1", "ip": "192.168.0.1"}
    ]},
    {"name": "g", "assignment": {"bad key": "x"}, "groups": []}
  ]}]
}`, []want{
			{"networks[0].tenants[0]", "empty name"},
			{"topologies[0].map[0].cidr", "did you mean 10.0.0.0/24?"},
			{"topologies[0].map[0].groups[1].ip", "already the address of the host at topologies[0].map[0].groups[0]"},
			{"topologies[0].map[0].groups[1].name", `host "h1" is already placed at topologies[0].map[0].groups[0]`},
			{"topologies[0].map[1].assignment.matchLabels.bad key", "not a valid label key"},
			{"topologies[0].map[1].name", `group "g" is already defined at topologies[0].map[0]`},
		}},
		{"romana pinned overlap", `{
  "networks": [{"name": "a", "cidr": "10.0.0.0/16", "block_mask": 26}],
  "topologies": [{"networks": ["a"], "map": [
    {"name": "g", "cidr": "10.0.0.0/17", "groups": []},
    {"name": "h", "cidr": "10.0.64.0/18", "groups": []}
  ]}]
}`, []want{{"topologies[0].map[1].cidr", `10.0.64.0/18 overlaps 10.0.0.0/17, the prefix of sibling group "g"`}}},

		// Whole-file problems.
		{"empty file", "", []want{{"", "file is empty"}}},
		{"blank file", " \n\t\n", []want{{"", "file is empty"}}},
		{"JSON list", "[1, 2]", []want{{"", "the file must hold an object with networks and topologies, not a list"}}},
		{"JSON string", `"networks"`, []want{{"", `not string "networks"`}}},
		{"JSON number", "42", []want{{"", "not number 42"}}},
		{"JSON null", "null", []want{{"", "not null"}}},
		{"broken YAML", "networks: [", []want{{"", "not valid YAML or JSON"}}},
		{"broken JSON", `{"networks": [}`, []want{{"", "not valid YAML or JSON"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]byte(tt.file))
			got := fieldErrors(t, err)
			for i, w := range tt.want {
				if i >= len(got) {
					t.Errorf("missing error %d: %s: ...%s...", i, w.path, w.phrase)
					continue
				}
				if got[i].Path != w.path || !strings.Contains(got[i].Msg, w.phrase) {
					t.Errorf("error %d:\n got %s: %s\nwant %s: ...%s...", i, got[i].Path, got[i].Msg, w.path, w.phrase)
				}
			}
			for _, e := range got[min(len(got), len(tt.want)):] {
				t.Errorf("unexpected error: %v", e)
			}
		})
	}
}

func TestValidationTooLarge(t *testing.T) {
	data := bytes.Repeat([]byte(" "), MaxFileSize+1)
	got := fieldErrors(t, func() error { _, err := Load(data); return err }())
	if len(got) != 1 || got[0].Path != "" || !strings.Contains(got[0].Msg, "more than the 4194304 a topology may have") {
		t.Errorf("got %v", got)
	}
	// A file of exactly MaxFileSize is read (and here found empty).
	got = fieldErrors(t, func() error { _, err := Load(data[:MaxFileSize]); return err }())
	if !strings.Contains(got[0].Msg, "file is empty") {
		t.Errorf("at the limit: got %v", got)
	}
}

// TestValidationReportsEverything: one file with many problems yields one
// error listing all of them, in file order.
func TestValidationReportsEverything(t *testing.T) {
	file := `
networks:
  - {name: a, cidr: 10.0.0.1/16, blockSize: 26}          # 1 host bits
  - {name: b, cidr: 10.1.0.0/16, blockSize: 8}           # 2 block too short
  - {name: c, cidr: 10.2.0.0/16, blockSize: 26}          # 3 in no tree
topologies:
  - networks: [a, b, nope]                               # 4 unknown network
    groups:
      - name: g
        routing: ospf                                    # 5 bad routing
        assignment: {matchExpressions: [{key: k, operator: In}]}   # 6 In without values
        hosts: [{name: h1, ip: 192.168.0.1}]
      - name: g                                          # 7 duplicate name
        hosts: [{name: h1, ip: 192.168.0.2}]             # 8 duplicate host
serviceCIDRs: [10.1.0.0/12]                              # 9 host bits
`
	_, err := Load([]byte(file))
	got := fieldErrors(t, err)
	wantPaths := []string{
		"networks[0].cidr",
		"networks[1].blockSize",
		"networks[2]",
		"serviceCIDRs[0]",
		"topologies[0].groups[0].assignment.matchExpressions[0].values",
		"topologies[0].groups[0].routing",
		"topologies[0].groups[1].hosts[0].name",
		"topologies[0].groups[1].name",
		"topologies[0].networks[2]",
	}
	if len(got) != len(wantPaths) {
		t.Fatalf("got %d errors, want %d:\n%v", len(got), len(wantPaths), err)
	}
	for i, p := range wantPaths {
		if got[i].Path != p {
			t.Errorf("error %d at %s, want %s (%s)", i, got[i].Path, p, got[i].Msg)
		}
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "invalid topology (9 problems):\n  networks[0].cidr: ") {
		t.Errorf("Error() = %q", msg)
	}
}

// TestValidationAccepts: near misses of the rejected cases that are fine.
func TestValidationAccepts(t *testing.T) {
	tests := []struct{ name, file string }{
		{"defaults for disjoint namespaces", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26, default: true, namespaces: [web]}
  - {name: b, cidr: 10.1.0.0/16, blockSize: 26, default: true, namespaces: [api]}
topologies:
  - {networks: [a, b], groups: [{name: g}]}
`},
		{"same name under different parents", oneNet + `
topologies:
  - networks: [a]
    groups: [{name: z1, groups: [{name: r}]}, {name: z2, groups: [{name: r}]}]
`},
		{"same network name in two files is unrelated; JSON native", `{"networks": [{"name": "a", "cidr": "10.0.0.0/16", "blockSize": 26}],
 "topologies": [{"networks": ["a"], "groups": [{"name": "g", "routing": "bgp", "advertise": "blocks"}]}]}`},
		{"exactly as many groups as slots", `
networks:
  - {name: a, cidr: 10.0.0.0/24, blockSize: 26}
topologies:
  - networks: [a]
    groups: [{name: g1}, {name: g2}, {name: g3}, {name: g4}]
`},
		{"pinned in one network of a multi-network tree", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}
  - {name: b, cidr: 10.1.0.0/16, blockSize: 26}
topologies:
  - networks: [a, b]
    groups: [{name: g, prefix: 10.1.128.0/17}, {name: h}]
`},
		{"IPv4-mapped IPv6 CIDR", `
networks:
  - {name: a, cidr: "::ffff:10.0.0.0/112", blockSize: 26}
topologies:
  - {networks: [a], groups: [{name: g}]}
`},
		{"null values are absent", `
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26, namespaces: null}
topologies:
  - {networks: [a], groups: [{name: g, assignment: null}]}
reservations: null
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top, err := Load([]byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			assertInvariants(t, top)
		})
	}
}

// TestLayoutErrorsReportedWithOthers: a problem in one tree does not hide
// the layout problems of another.
func TestLayoutErrorsReportedWithOthers(t *testing.T) {
	_, err := Load([]byte(`
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}
  - {name: b, cidr: 10.1.0.0/24, blockSize: 26}
topologies:
  - networks: [a]
    groups: [{name: g, routing: ospf}]
  - networks: [b]
    groups: [{name: p, prefix: 10.1.0.0/25}, {name: q, prefix: 10.1.0.64/26}]
`))
	got := fieldErrors(t, err)
	var paths []string
	for _, e := range got {
		paths = append(paths, e.Path+": "+e.Msg)
	}
	joined := strings.Join(paths, "\n")
	if !strings.Contains(joined, "topologies[0].groups[0].routing") || !strings.Contains(joined, "topologies[1].groups[1].prefix") {
		t.Fatalf("want the routing error of tree 0 and the overlap of tree 1 together, got:\n%s", joined)
	}
}
