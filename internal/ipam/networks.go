package ipam

import (
	"fmt"
	"maps"
	"strings"

	"github.com/terrane-net/terrane/internal/topology"
)

// NetworkChoice is what a new endpoint's network is chosen from.
type NetworkChoice struct {
	// Requested is an explicit choice (a pod's annotation, an API field);
	// empty lets the order below decide.
	Requested string
	// Namespace is the endpoint's namespace (Kubernetes) or tenant.
	Namespace string
	// NamespaceDefault is the namespace's own default network
	// (Allocator.NamespaceNetworks; Kubernetes: its annotation
	// terrane.io/network), "" when it has none.
	NamespaceDefault string
	// HostGroups is the host's leaf group per network: a host in no group
	// of a network cannot have addresses in it.
	HostGroups map[string]string
}

// CandidateNetworks is Terrane's one network choice, used by the agent for
// pods and by the server for VM ports: the requested network if the
// namespace may use it and the host is in it; else every network the
// namespace may use and the host is in — the namespace's own default
// first, then the topology's default networks, then the others, each in
// file order. Callers take the first that has room.
func CandidateNetworks(t *topology.Topology, c NetworkChoice) ([]*topology.Network, error) {
	var mine []string
	for _, n := range t.Networks {
		if c.HostGroups[n.Name] != "" {
			mine = append(mine, n.Name)
		}
	}
	usable := func(n *topology.Network) error {
		switch {
		case c.HostGroups[n.Name] == "":
			return fmt.Errorf("%w: network %s: the host is in no group of it (its labels match none); its networks: %s", ErrInvalid, n.Name, orNone(mine))
		case !n.Allows(c.Namespace):
			return fmt.Errorf("%w: network %s does not admit namespace %q (it admits %s)", ErrInvalid, n.Name, c.Namespace, strings.Join(n.Namespaces, ", "))
		}
		return nil
	}
	if c.Requested != "" {
		n := t.Network(c.Requested)
		if n == nil {
			all := make([]string, len(t.Networks))
			for i, n := range t.Networks {
				all[i] = n.Name
			}
			return nil, fmt.Errorf("%w: network %q does not exist; the topology has %s", ErrNotFound, c.Requested, orNone(all))
		}
		if err := usable(n); err != nil {
			return nil, err
		}
		return []*topology.Network{n}, nil
	}
	var out []*topology.Network
	if n := t.Network(c.NamespaceDefault); n != nil && usable(n) == nil {
		out = append(out, n)
	}
	for _, def := range []bool{true, false} {
		for _, n := range t.Networks {
			if n.Default == def && n.Name != c.NamespaceDefault && usable(n) == nil {
				out = append(out, n)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no network admits namespace %q on this host (its networks: %s)", ErrInvalid, c.Namespace, orNone(mine))
	}
	return out, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// SetNamespaceNetwork makes network the default of namespace (Kubernetes:
// the namespace's annotation terrane.io/network); "" clears it. The network
// must exist and admit the namespace. Two networks separated by a comma,
// one IPv4 and one IPv6 ("v4net,v6net"), make the namespace's pods
// dual-stack by default.
func (a *Allocator) SetNamespaceNetwork(namespace, network string) ([]Change, error) {
	if namespace == "" {
		return nil, fmt.Errorf("namespace network: %w: namespace is required", ErrInvalid)
	}
	if network != "" {
		names := strings.Split(network, ",")
		if len(names) > 2 {
			return nil, fmt.Errorf("namespace %s: %w: network %q: name one network, or two separated by a comma (one IPv4, one IPv6) for dual-stack pods", namespace, ErrInvalid, network)
		}
		var fams []bool
		for _, name := range names {
			n := a.s.topo.Network(name)
			if n == nil {
				return nil, fmt.Errorf("namespace %s: %w: network %q does not exist", namespace, ErrNotFound, name)
			}
			if !n.Allows(namespace) {
				return nil, fmt.Errorf("namespace %s: %w: network %s does not admit it (it admits %s)", namespace, ErrInvalid, name, strings.Join(n.Namespaces, ", "))
			}
			fams = append(fams, n.CIDR.Addr().Is4())
		}
		if len(fams) == 2 && fams[0] == fams[1] {
			return nil, fmt.Errorf("namespace %s: %w: networks %s are of one family; a dual-stack default names one IPv4 and one IPv6 network", namespace, ErrInvalid, network)
		}
	}
	old := a.s.nsNetworks[namespace]
	if old == network {
		return nil, nil
	}
	tx := &tx{s: a.s}
	var err error
	if old != "" {
		err = tx.do(Change{Kind: NamespaceNetworkCleared, Namespace: namespace, Network: old})
	}
	if err == nil && network != "" {
		err = tx.do(Change{Kind: NamespaceNetworkSet, Namespace: namespace, Network: network})
	}
	if err != nil {
		tx.rollback()
		return nil, err
	}
	return tx.changes, nil
}

// NamespaceNetworks maps each namespace that has its own default network
// to it.
func (a *Allocator) NamespaceNetworks() map[string]string { return maps.Clone(a.s.nsNetworks) }

// NamespaceNetwork is namespace's own default network ("" if none).
func (a *Allocator) NamespaceNetwork(namespace string) string { return a.s.nsNetworks[namespace] }
