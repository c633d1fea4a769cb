package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/terrane-net/terrane/internal/topology"
)

// ParsedHost is a checked entry of a --hosts file.
type ParsedHost struct {
	Name   string
	IP     netip.Addr
	Labels map[string]string
}

// maxHostsFile bounds a hosts file (100k hosts fit comfortably).
const maxHostsFile = 32 << 20

var hostFields = []string{"ip", "labels", "name"}

// ParseHosts reads a YAML or JSON list of hosts {name, ip, labels}. It
// reports every problem with the entry and field it is in, and accepts
// nothing partially.
func ParseHosts(data []byte) ([]ParsedHost, error) {
	if len(data) > maxHostsFile {
		return nil, fmt.Errorf("hosts file is %d bytes, more than %d", len(data), maxHostsFile)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("hosts file: not valid YAML or JSON: %w", err)
	}
	var entries []any
	if err := json.Unmarshal(js, &entries); err != nil || entries == nil {
		return nil, errors.New("hosts file: want a list of hosts, each {name, ip, labels}")
	}
	if len(entries) == 0 {
		return nil, errors.New("hosts file: the list is empty; give at least one host {name, ip, labels}")
	}
	var errs []error
	bad := func(i int, field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("hosts[%d].%s: %s", i, field, fmt.Sprintf(format, args...)))
	}
	out := make([]ParsedHost, 0, len(entries))
	names := map[string]int{}
	ips := map[netip.Addr]int{}
	for i, e := range entries {
		m, ok := e.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("hosts[%d]: want an object {name, ip, labels}", i))
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !slices.Contains(hostFields, k) {
				bad(i, k, "unknown field; known fields: name, ip, labels")
			}
		}
		var h ParsedHost
		switch name := m["name"].(type) {
		case string:
			h.Name = name
			if name == "" {
				bad(i, "name", "required")
			} else if j, dup := names[name]; dup {
				bad(i, "name", "%q is already hosts[%d]", name, j)
			} else {
				names[name] = i
			}
		case nil:
			bad(i, "name", "required")
		default:
			bad(i, "name", "want a string")
		}
		switch ip := m["ip"].(type) {
		case string:
			a, err := netip.ParseAddr(ip)
			if err != nil {
				bad(i, "ip", "%q is not an IP address", ip)
				break
			}
			h.IP = a.Unmap()
			if j, dup := ips[h.IP]; dup {
				bad(i, "ip", "%s is already the address of hosts[%d]", h.IP, j)
			}
			ips[h.IP] = i
		case nil:
			bad(i, "ip", "required: the host's own address (routes to its blocks go via it)")
		default:
			bad(i, "ip", "want a string such as 192.0.2.10")
		}
		switch labels := m["labels"].(type) {
		case nil:
		case map[string]any:
			h.Labels = make(map[string]string, len(labels))
			for k, v := range labels {
				sv, ok := v.(string)
				switch {
				case !ok:
					bad(i, "labels."+k, "want a string value (quote numbers and booleans)")
				case !topology.ValidLabelKey(k):
					bad(i, "labels."+k, "%q is not a valid label key", k)
				case !topology.ValidLabelValue(sv):
					bad(i, "labels."+k, "%q is not a valid label value", sv)
				default:
					h.Labels[k] = sv
				}
			}
		default:
			bad(i, "labels", "want an object of key: value pairs")
		}
		out = append(out, h)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
