package server

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/ipam"
)

// Key layout (docs/design/store.md). Every kind of thing is its own record,
// so writers touch only what they change: no document holds everything.
const (
	keySchema     = "v1/schema"
	keyTopology   = "v1/topology"
	keyGroups     = "v1/groups/"     // v1/groups/<network>: every group's prefixes
	keyHosts      = "v1/hosts/"      // v1/hosts/<host>
	keyBlocks     = "v1/blocks/"     // v1/blocks/<network>/<addr>_<bits>
	keyEndpoints  = "v1/endpoints/"  // v1/endpoints/<id>
	keyNamespaces = "v1/namespaces/" // v1/namespaces/<ns>: its default network
	keyAll        = "v1/"

	schemaVersion = 1
)

type schemaRecord struct {
	Version int `json:"version"`
}

// topologyRecord is the applied topology: the file as the operator wrote it
// and the planning options.
type topologyRecord struct {
	Source []byte       `json:"source"`
	Mode   string       `json:"mode"`
	Budget ipam.Budgets `json:"budgets"`
}

// groupsRecord holds the prefixes of every group of one network. One record
// per network, not per group: a group grows by taking space its parent or a
// sibling held, so two servers growing different groups must conflict.
type groupsRecord struct {
	Groups map[string][]netip.Prefix `json:"groups"`
}

type hostRecord struct {
	IP     netip.Addr        `json:"ip,omitzero"`
	IP6    netip.Addr        `json:"ip6,omitzero"`
	Labels map[string]string `json:"labels,omitempty"`
	Groups map[string]string `json:"groups"`
}

type blockRecord struct {
	Host  string `json:"host"`
	Group string `json:"group"`
	// Issuer is who hands out the block's addresses: "agent" or
	// "server". A record without one predates issuers: a block with server
	// endpoints in it is the server's, any other the agent's.
	Issuer ipam.Issuer `json:"issuer,omitempty"`
	// Used counts the server-allocated (VM) endpoints in the block.
	Used int `json:"used"`
}

// issuer is the record's issuer, defaulted for records that predate it.
func (r blockRecord) issuer() ipam.Issuer {
	switch {
	case r.Issuer != "":
		return r.Issuer
	case r.Used > 0:
		return ipam.IssuerServer
	}
	return ipam.IssuerAgent
}

type endpointRecord struct {
	Network   string       `json:"network"`
	Host      string       `json:"host"`
	Namespace string       `json:"namespace,omitempty"`
	Addr      netip.Addr   `json:"addr"`
	Block     netip.Prefix `json:"block"`
	Since     time.Time    `json:"since,omitzero"`
}

func groupsKey(network string) string { return keyGroups + network }
func hostKey(name string) string      { return keyHosts + name }
func endpointKey(id string) string    { return keyEndpoints + id }
func namespaceKey(ns string) string   { return keyNamespaces + ns }

type namespaceRecord struct {
	Network string `json:"network"`
}

func blockKey(network string, p netip.Prefix) string {
	return fmt.Sprintf("%s%s/%s_%d", keyBlocks, network, p.Addr(), p.Bits())
}

func parseBlockKey(k string) (network string, p netip.Prefix, err error) {
	rest := strings.TrimPrefix(k, keyBlocks)
	network, enc, ok := strings.Cut(rest, "/")
	if !ok {
		return "", p, fmt.Errorf("block key %q: want %s<network>/<addr>_<bits>", k, keyBlocks)
	}
	p, err = netip.ParsePrefix(strings.Replace(enc, "_", "/", 1))
	if err != nil {
		return "", p, fmt.Errorf("block key %q: %w", k, err)
	}
	return network, p, nil
}

// keysOf names the records a change touches. An endpoint change also
// rewrites its block's record: the block is where addresses are handed out,
// so two servers allocating in one block (or one allocating while another
// releases the block) must conflict.
func keysOf(c ipam.Change) []string {
	switch c.Kind {
	case ipam.GroupPrefixAdded, ipam.GroupPrefixRemoved:
		return []string{groupsKey(c.Network)}
	case ipam.HostJoined, ipam.HostUpdated, ipam.HostLeft:
		return []string{hostKey(c.Host)}
	case ipam.BlockClaimed, ipam.BlockReleased:
		return []string{blockKey(c.Network, c.Prefix)}
	case ipam.NamespaceNetworkSet, ipam.NamespaceNetworkCleared:
		return []string{namespaceKey(c.Namespace)}
	default:
		return []string{endpointKey(c.Endpoint), blockKey(c.Network, c.Prefix)}
	}
}

// record renders what the allocator now holds for key; ok is false when
// the thing no longer exists (the record is to be deleted).
func record(a *ipam.Allocator, key string) (value []byte, ok bool, err error) {
	var v any
	switch {
	case strings.HasPrefix(key, keyGroups):
		gp := a.GroupPrefixes(strings.TrimPrefix(key, keyGroups))
		if len(gp) == 0 {
			return nil, false, nil
		}
		v = groupsRecord{Groups: gp}
	case strings.HasPrefix(key, keyHosts):
		h, found := a.Host(strings.TrimPrefix(key, keyHosts))
		if !found {
			return nil, false, nil
		}
		v = hostRecord{IP: h.IP, IP6: h.IP6, Labels: h.Labels, Groups: h.Groups}
	case strings.HasPrefix(key, keyBlocks):
		network, p, err := parseBlockKey(key)
		if err != nil {
			return nil, false, err
		}
		b, found := a.Block(network, p)
		if !found {
			return nil, false, nil
		}
		v = blockRecord{Host: b.Host, Group: b.Group, Issuer: b.Issuer, Used: b.Endpoints}
	case strings.HasPrefix(key, keyNamespaces):
		network := a.NamespaceNetwork(strings.TrimPrefix(key, keyNamespaces))
		if network == "" {
			return nil, false, nil
		}
		v = namespaceRecord{Network: network}
	case strings.HasPrefix(key, keyEndpoints):
		e, found := a.Endpoint(strings.TrimPrefix(key, keyEndpoints))
		if !found {
			return nil, false, nil
		}
		v = endpointRecord{Network: e.Network, Host: e.Host, Namespace: e.Namespace, Addr: e.Addr, Block: e.Block, Since: e.Since}
	default:
		return nil, false, fmt.Errorf("no record kind for key %q", key)
	}
	b, err := json.Marshal(v)
	return b, true, err
}
