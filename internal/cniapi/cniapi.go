// Package cniapi is the contract between the CNI plugin (terrane-cni) and the
// node agent: JSON over HTTP on a unix socket that only root can open.
// The agent does IPAM and routes; the plugin wires the pod. This package and
// its Client use the standard library only and not net/http (the agent's
// side, cnihttp, does), so the plugin binary stays small and starts fast:
// the runtime starts one plugin process per pod.
//
// One ADD is one round trip: the plugin creates the veth pair (pod side in
// the pod's netns, host side named HostVeth(containerID, ifName) in the
// host's), then calls Add; the agent allocates an address from a block the
// host already owns (no store write on the hot path), prepares the host veth
// (sysctls) and routes the address to it, and answers with the address and
// gateway the plugin puts in the pod.
package cniapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// Defaults shared by the agent and the plugin's configuration.
const (
	// DefaultSocket is where the agent serves the plugin.
	DefaultSocket = "/run/terrane/agent.sock"
	// DefaultQueueDir holds releases the plugin could not deliver because
	// the agent was down; the agent replays them when it is back.
	DefaultQueueDir = "/var/lib/terrane/cni-queue"
	// NetworkAnnotation is the pod annotation that picks a network.
	NetworkAnnotation = "terrane.io/network"
	// PodAnnotationsCapability is the runtimeConfig key containerd and CRI-O
	// fill with the pod's annotations when the plugin declares it.
	PodAnnotationsCapability = "io.kubernetes.cri.pod-annotations"
	// NetworkArg is the CNI_ARGS key that picks a network.
	NetworkArg = "TERRANE_NETWORK"
)

// GatewayV4 is the link-local next hop every pod routes through; the host
// answers ARP for it on the pod's veth (proxy ARP).
var GatewayV4 = netip.MustParseAddr("169.254.1.1")

// GatewayV6 is the IPv6 next hop every pod routes through: a link-local
// address no interface holds. The pod knows it by a permanent neighbour
// entry (the host end's MAC), so no neighbour discovery is asked of the
// host.
var GatewayV6 = netip.MustParseAddr("fe80::1")

// Gateway is the pods' next hop of a's family.
func Gateway(a netip.Addr) netip.Addr {
	if a.Is4() {
		return GatewayV4
	}
	return GatewayV6
}

// SplitNetworks reads a network choice: one network name, or two
// separated by a comma for a dual-stack pod ("v4net,v6net", one network
// of each family, in either order). Spaces around names are dropped;
// empty names are an error.
func SplitNetworks(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return nil, fmt.Errorf("network %q: name one network, or two separated by a comma (one IPv4, one IPv6) for a dual-stack pod", s)
	}
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
		if parts[i] == "" {
			return nil, fmt.Errorf("network %q: an empty network name; write \"v4net,v6net\" for a dual-stack pod", s)
		}
	}
	if len(parts) == 2 && parts[0] == parts[1] {
		return nil, fmt.Errorf("network %q: names %s twice; a dual-stack pod takes two networks of different families", s, parts[0])
	}
	return parts, nil
}

// HostVethPrefix starts every host-side interface Terrane creates.
const HostVethPrefix = "trn"

// HostVeth is the host-side interface name of a pod's attachment: "trn" and
// 11 hex digits of a hash of the container ID and interface name (15
// characters at most, the kernel's limit). Deterministic, so DEL and GC find
// it without state.
func HostVeth(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return HostVethPrefix + hex.EncodeToString(sum[:])[:11]
}

// Attachment names one pod interface: the CNI key (container ID, ifname).
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

// ID is the attachment's key in the agent's state.
func (a Attachment) ID() string { return a.ContainerID + "/" + a.IfName }

// AddRequest asks the agent for an address for a pod interface.
type AddRequest struct {
	Attachment
	// Netns is the pod's network namespace path (CNI_NETNS).
	Netns string `json:"netns"`
	// Network is the Terrane network asked for; empty: the pod
	// namespace's default. Two names separated by a comma (one IPv4
	// network, one IPv6; SplitNetworks) ask for a dual-stack pod.
	Network      string `json:"network,omitempty"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
	// PodUID is the pod's UID (K8S_POD_UID), when the runtime gives it.
	PodUID string `json:"podUID,omitempty"`
	// HostVeth is the host-side interface the plugin created.
	HostVeth string `json:"hostVeth"`
}

// AddResponse is the pod's address. Repeating an ADD for the same
// attachment returns the same address.
type AddResponse struct {
	Network string       `json:"network"`
	Addr    netip.Prefix `json:"addr"` // the address as a host prefix (/32, /128)
	Gateway netip.Addr   `json:"gateway"`
	// Second is a dual-stack pod's address of the other family (nil for a
	// single-stack pod): allocated, routed and released with the first.
	Second *Address `json:"second,omitempty"`
	// GSOMaxSize, when non-zero, is the GSO/GRO maximum (BIG TCP) the
	// plugin gives both ends of the pod's veth pair; 0: the kernel's
	// default.
	GSOMaxSize int `json:"gsoMaxSize,omitempty"`
}

// Address is one more address of a pod, in another network.
type Address struct {
	Network string       `json:"network"`
	Addr    netip.Prefix `json:"addr"` // a host prefix (/32, /128)
	Gateway netip.Addr   `json:"gateway"`
}

// Addresses are r's addresses, the first one first.
func (r AddResponse) Addresses() []Address {
	out := []Address{{Network: r.Network, Addr: r.Addr, Gateway: r.Gateway}}
	if r.Second != nil {
		out = append(out, *r.Second)
	}
	return out
}

// CheckResponse is what the agent holds for an attachment.
type CheckResponse struct {
	Network  string       `json:"network"`
	Addr     netip.Prefix `json:"addr"`
	Gateway  netip.Addr   `json:"gateway"`
	Second   *Address     `json:"second,omitempty"`
	HostVeth string       `json:"hostVeth"`
	Netns    string       `json:"netns"`
}

// GCRequest lists the attachments the runtime still has; the agent releases
// every other one it holds.
type GCRequest struct {
	Valid []Attachment `json:"valid"`
}

// GCResponse lists what GC released.
type GCResponse struct {
	Released []Attachment `json:"released"`
}

// StatusResponse says whether the agent can serve ADDs.
type StatusResponse struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	// Code is a CNI error code (types.ErrInternal = 999, 11 try again
	// later, 50 plugin not available, ...).
	Code    uint   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// CNI error codes the agent uses (from the CNI spec).
const (
	CodeTryAgainLater = 11
	CodeNotAvailable  = 50
	CodeInternal      = 999
	// CodeNotFound is Terrane's own (100+ are plugin-defined): CHECK of an
	// attachment the agent does not hold.
	CodeNotFound = 100
	// CodeInvalid: the request names an unknown network or is malformed.
	CodeInvalid = 101
)

// Agent is what the agent implements; cnihttp.Handler serves it.
type Agent interface {
	Add(ctx context.Context, req AddRequest) (AddResponse, error)
	Del(ctx context.Context, a Attachment) error
	Check(ctx context.Context, a Attachment) (CheckResponse, error)
	GC(ctx context.Context, req GCRequest) (GCResponse, error)
	Status(ctx context.Context) StatusResponse
}

// Paths of the socket API.
const (
	PathAdd    = "/v1/add"
	PathDel    = "/v1/del"
	PathCheck  = "/v1/check"
	PathGC     = "/v1/gc"
	PathStatus = "/v1/status"
)

// Addresses are r's addresses, the first one first.
func (r CheckResponse) Addresses() []Address {
	out := []Address{{Network: r.Network, Addr: r.Addr, Gateway: r.Gateway}}
	if r.Second != nil {
		out = append(out, *r.Second)
	}
	return out
}

// HostSideSysctlsV6 are what the agent sets on the host end of a dual-stack
// or IPv6 pod's veth besides HostSideSysctls: IPv6 forwarding (which
// Linux decides for all interfaces at once) and no router advertisements
// taken from the pod.
func HostSideSysctlsV6(dev string) [][2]string {
	return [][2]string{
		{"ipv6/conf/all/forwarding", "1"},
		{"ipv6/conf/" + dev + "/forwarding", "1"},
		{"ipv6/conf/" + dev + "/accept_ra", "0"},
	}
}

// HostSideSysctls are what the agent sets on the host end of a pod's veth
// or a VM port's device, as keys under /proc/sys/net: forwarding in, proxy
// ARP for the gateway answered at once (or first packets are lost), and
// strict reverse-path filtering so an endpoint cannot send from an address
// that is not its own.
func HostSideSysctls(dev string) [][2]string {
	return [][2]string{
		{"ipv4/conf/" + dev + "/forwarding", "1"},
		{"ipv4/conf/" + dev + "/proxy_arp", "1"},
		{"ipv4/neigh/" + dev + "/proxy_delay", "0"},
		{"ipv4/conf/" + dev + "/rp_filter", "1"},
	}
}
