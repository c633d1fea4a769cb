package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"

	"sigs.k8s.io/yaml"
)

// Host is one entry of a --hosts file.
type Host struct {
	Name   string            `json:"name"`
	IP     string            `json:"ip,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// ParsedHost is a checked host.
type ParsedHost struct {
	Name   string
	IP     netip.Addr
	Labels map[string]string
}

// maxHostsFile bounds a hosts file (100k hosts fit comfortably).
const maxHostsFile = 32 << 20

// ParseHosts reads a YAML or JSON list of hosts {name, ip, labels}. It
// reports every problem with its index, and accepts nothing partially.
func ParseHosts(data []byte) ([]ParsedHost, error) {
	if len(data) > maxHostsFile {
		return nil, fmt.Errorf("hosts file is %d bytes, more than %d", len(data), maxHostsFile)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("hosts file: not valid YAML or JSON: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var hosts []Host
	if err := dec.Decode(&hosts); err != nil {
		return nil, fmt.Errorf("hosts file: want a list of {name, ip, labels}: %w", err)
	}
	var errs []error
	out := make([]ParsedHost, 0, len(hosts))
	names := map[string]int{}
	ips := map[netip.Addr]int{}
	for i, h := range hosts {
		p := ParsedHost{Name: h.Name, Labels: h.Labels}
		if h.Name == "" {
			errs = append(errs, fmt.Errorf("hosts[%d].name: required", i))
		} else if j, dup := names[h.Name]; dup {
			errs = append(errs, fmt.Errorf("hosts[%d].name: %q is already hosts[%d]", i, h.Name, j))
		}
		names[h.Name] = i
		if h.IP != "" {
			ip, err := netip.ParseAddr(h.IP)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("hosts[%d].ip: %q is not an IP address", i, h.IP))
			default:
				p.IP = ip.Unmap()
				if j, dup := ips[p.IP]; dup {
					errs = append(errs, fmt.Errorf("hosts[%d].ip: %s is already the address of hosts[%d]", i, p.IP, j))
				}
				ips[p.IP] = i
			}
		}
		out = append(out, p)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return out, nil
}

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msg := fmt.Sprintf("%d problems:", len(errs))
	for _, e := range errs {
		msg += "\n  " + e.Error()
	}
	return fmt.Errorf("%s", msg)
}
