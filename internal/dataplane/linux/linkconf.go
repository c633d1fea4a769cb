//go:build linux

package linux

import (
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Per-interface settings through rtnetlink rather than /proc/sys. A write
// to a device's ipv4 forwarding sysctl takes the RTNL lock with trylock and,
// when another task holds it, restarts the write system call until it gets
// it: while a burst of pods is being wired (every veth created, addressed
// and routed under that lock) the agent's writes spun on the CPU the
// wiring needed. RTM_SETLINK and RTM_SETNEIGHTBL wait for the lock like any
// other rtnetlink request, and set the same values: the device's
// ipv4_devconf entries and the ARP parameters the sysctls show.

// Kernel numbers the x/sys/unix package lacks (linux/ip.h,
// linux/neighbour.h).
const (
	ipv4DevconfForwarding = 1  // IPV4_DEVCONF_FORWARDING
	ipv4DevconfProxyARP   = 3  // IPV4_DEVCONF_PROXY_ARP
	ipv4DevconfRPFilter   = 8  // IPV4_DEVCONF_RP_FILTER
	ndtaName              = 1  // NDTA_NAME
	ndtaParms             = 6  // NDTA_PARMS
	ndtpaIfindex          = 1  // NDTPA_IFINDEX
	ndtpaProxyDelay       = 13 // NDTPA_PROXY_DELAY, u64 milliseconds
	arpTable              = "arp_cache"
)

// PrepareEndpointLink readies the host side of a pod's veth (or a VM
// port's device) for routed traffic, in two rtnetlink requests: IPv4
// forwarding in, proxy ARP for the pod's gateway answered at once
// (proxy_delay 0, or first packets are lost), and strict reverse-path
// filtering so an endpoint cannot send from an address that is not its
// own.
func (x *Host) PrepareEndpointLink(name string) error {
	l, err := x.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("prepare %s: %w", name, err)
	}
	idx := l.Attrs().Index
	if err := x.setIPv4Conf(idx, map[int]uint32{ipv4DevconfForwarding: 1, ipv4DevconfProxyARP: 1, ipv4DevconfRPFilter: 1}); err != nil {
		return fmt.Errorf("prepare %s: forwarding, proxy_arp and rp_filter: %w", name, err)
	}
	if err := x.setARPProxyDelay(idx, 0); err != nil {
		return fmt.Errorf("prepare %s: ARP proxy_delay: %w", name, err)
	}
	return nil
}

// setIPv4Conf sets ipv4_devconf entries of the device at index
// (RTM_SETLINK with IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF).
func (x *Host) setIPv4Conf(index int, conf map[int]uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	inet := spec.AddRtAttr(unix.AF_INET, nil)
	cfg := inet.AddRtAttr(unix.IFLA_INET_CONF, nil)
	for _, k := range []int{ipv4DevconfForwarding, ipv4DevconfProxyARP, ipv4DevconfRPFilter} {
		if v, ok := conf[k]; ok {
			cfg.AddRtAttr(k, nl.Uint32Attr(v))
		}
	}
	req.AddData(spec)
	return x.execute(req)
}

// setARPProxyDelay sets the ARP proxy_delay of the device at index
// (RTM_SETNEIGHTBL on arp_cache with the device's parameters).
func (x *Host) setARPProxyDelay(index int, ms uint64) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETNEIGHTBL, unix.NLM_F_ACK)
	req.AddData(ndtmsg{family: unix.AF_INET})
	req.AddData(nl.NewRtAttr(ndtaName, nl.ZeroTerminated(arpTable)))
	parms := nl.NewRtAttr(ndtaParms, nil)
	parms.AddRtAttr(ndtpaIfindex, nl.Uint32Attr(uint32(index)))
	parms.AddRtAttr(ndtpaProxyDelay, nl.Uint64Attr(ms))
	req.AddData(parms)
	return x.execute(req)
}

// execute sends req on the Host's own rtnetlink socket (the handle's are
// not reachable for requests the netlink package does not build) and
// waits for the kernel's answer.
func (x *Host) execute(req *nl.NetlinkRequest) error { return execute(x.raw, req) }

// execute sends req on s and waits for the kernel's answer.
func execute(s *nl.SocketHandle, req *nl.NetlinkRequest) error {
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: s}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// openRawSocket opens an rtnetlink socket for requests of our own in the
// namespace ns (netns.None(): the current one).
func openRawSocket(ns netns.NsHandle) (*nl.SocketHandle, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval(socketTimeout.Nanoseconds())
	if err := s.SetSendTimeout(&tv); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.SetReceiveTimeout(&tv); err != nil {
		s.Close()
		return nil, err
	}
	return &nl.SocketHandle{Socket: s}, nil
}

// ndtmsg is struct ndtmsg: the family, padded to four bytes.
type ndtmsg struct{ family uint8 }

func (m ndtmsg) Len() int          { return 4 }
func (m ndtmsg) Serialize() []byte { return []byte{m.family, 0, 0, 0} }
