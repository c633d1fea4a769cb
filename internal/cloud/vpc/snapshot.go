package vpc

import (
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/usage"
)

// SnapshotFrom reads an allocator's state: every network's routing input
// (the same usage.RoutingInput `terrane plan` uses) and each host's
// instance from its label. Health is left unknown (every host healthy);
// the caller fills it in.
func SnapshotFrom(a *ipam.Allocator, instanceLabel string) Snapshot {
	var s Snapshot
	if a == nil {
		return s
	}
	for _, n := range a.Topology().Networks {
		s.Networks = append(s.Networks, Network{Name: n.Name, CIDR: n.CIDR, Input: usage.RoutingInput(a, n)})
	}
	s.Instances = map[string]string{}
	for _, h := range a.Hosts() {
		if id := h.Labels[instanceLabel]; id != "" {
			s.Instances[h.Name] = id
		}
	}
	return s
}
