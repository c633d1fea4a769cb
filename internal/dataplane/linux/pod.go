//go:build linux

package linux

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
)

// The pod side of the dataplane, for the CNI plugin: a veth pair between the
// host's namespace and a pod's, and the pod's address and routes. Every
// operation works through netlink handles opened in the namespaces, so no OS
// thread ever changes namespace.

// PodVeth names a pod's veth pair.
type PodVeth struct {
	// HostNetns is the host's namespace by path; empty: the caller's.
	HostNetns string
	// HostName is the host end (cniapi.HostVeth).
	HostName string
	// PodNetns is the pod's namespace by path (CNI_NETNS).
	PodNetns string
	// PodName is the pod end (CNI_IFNAME).
	PodName string
}

// PodLinks describes a pair CreatePodVeth made.
type PodLinks struct {
	HostMAC  string
	PodMAC   string
	PodIndex int
}

// ErrHostVethExists is returned by CreatePodVeth when the host end's name is
// taken.
var ErrHostVethExists = errors.New("host veth already exists")

// ErrNetnsGone is returned when the pod's namespace cannot be opened because
// it no longer exists.
var ErrNetnsGone = errors.New("network namespace does not exist")

// PodHandles keeps the netlink handles one CNI command opens, one per
// namespace, until Close, and the links it created: an ADD works in the
// host's and in the pod's namespace several times over, and each handle
// opened in another namespace costs two namespace switches and a socket,
// each link looked up a round trip the kernel answers with the whole link.
// The package functions (CreatePodVeth, ConfigurePod, ...) each use a
// PodHandles of their own. Not for concurrent use.
type PodHandles struct {
	open  map[string]podNetlink
	links map[podLinkKey]netlink.Link
}

type podLinkKey struct{ netns, name string }

// Close closes every handle.
func (p *PodHandles) Close() {
	for _, n := range p.open {
		n.close()
	}
	p.open, p.links = nil, nil
}

// handle is the handle in the namespace at path, opened on first use.
func (p *PodHandles) handle(path string) (podNetlink, error) {
	if n, ok := p.open[path]; ok {
		return n, nil
	}
	n, err := openPodNetlink(path)
	if err != nil {
		return podNetlink{}, err
	}
	if p.open == nil {
		p.open = map[string]podNetlink{}
	}
	p.open[path] = n
	return n, nil
}

// link is the link called name in the namespace at path: the one this
// PodHandles created, else looked up.
func (p *PodHandles) link(n podNetlink, path, name string) (netlink.Link, error) {
	if l, ok := p.links[podLinkKey{path, name}]; ok {
		return l, nil
	}
	l, err := n.h.LinkByName(name)
	if err != nil {
		return nil, err
	}
	p.remember(path, l)
	return l, nil
}

func (p *PodHandles) remember(path string, l netlink.Link) {
	if p.links == nil {
		p.links = map[podLinkKey]netlink.Link{}
	}
	p.links[podLinkKey{path, l.Attrs().Name}] = l
}

func (p *PodHandles) forget(path, name string) { delete(p.links, podLinkKey{path, name}) }

// CreatePodVeth creates the pair with both ends at mtu: the host end in the
// host namespace and up, without an address; the pod end directly in the pod
// namespace, down (ConfigurePod brings it up). It refuses to touch an
// existing host end (ErrHostVethExists).
func CreatePodVeth(v PodVeth, mtu int) (PodLinks, error) {
	var p PodHandles
	defer p.Close()
	return p.CreatePodVeth(v, mtu)
}

// CreatePodVeth is the package function on p's handles.
func (p *PodHandles) CreatePodVeth(v PodVeth, mtu int) (PodLinks, error) {
	host, err := p.handle(v.HostNetns)
	if err != nil {
		return PodLinks{}, fmt.Errorf("create veth %s: host namespace: %w", v.HostName, err)
	}
	pod, err := p.handle(v.PodNetns)
	if err != nil {
		return PodLinks{}, fmt.Errorf("create veth %s: pod namespace: %w", v.HostName, err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = v.HostName
	la.MTU = mtu
	la.Flags = net.FlagUp // the host end comes up as it is created
	veth := &netlink.Veth{
		LinkAttrs:     la,
		PeerName:      v.PodName,
		PeerNamespace: netlink.NsFd(int(pod.fd)),
		PeerMTU:       uint32(mtu),
	}
	if err := host.h.LinkAdd(veth); err != nil {
		if errors.Is(err, syscall.EEXIST) {
			// Which name is taken: the host end's is a repeated ADD.
			if _, lerr := host.h.LinkByName(v.HostName); lerr == nil {
				return PodLinks{}, fmt.Errorf("create veth %s: %w", v.HostName, ErrHostVethExists)
			}
			return PodLinks{}, fmt.Errorf("create veth %s with peer %s in %s: a link of either name exists: %w", v.HostName, v.PodName, v.PodNetns, err)
		}
		return PodLinks{}, fmt.Errorf("create veth %s with peer %s in %s: %w", v.HostName, v.PodName, v.PodNetns, err)
	}
	links, err := p.finishVeth(host, pod, v)
	if err != nil {
		_ = host.h.LinkDel(veth)
		p.forget(v.HostNetns, v.HostName)
		p.forget(v.PodNetns, v.PodName)
		return PodLinks{}, err
	}
	return links, nil
}

func (p *PodHandles) finishVeth(host, pod podNetlink, v PodVeth) (PodLinks, error) {
	hl, err := p.link(host, v.HostNetns, v.HostName)
	if err != nil {
		return PodLinks{}, fmt.Errorf("find new veth %s: %w", v.HostName, err)
	}
	if hl.Attrs().Flags&net.FlagUp == 0 {
		// A kernel that ignored the flag at creation.
		if err := host.h.LinkSetUp(hl); err != nil {
			return PodLinks{}, fmt.Errorf("set %s up: %w", v.HostName, err)
		}
	}
	pl, err := p.link(pod, v.PodNetns, v.PodName)
	if err != nil {
		return PodLinks{}, fmt.Errorf("find new veth %s in %s: %w", v.PodName, v.PodNetns, err)
	}
	return PodLinks{
		HostMAC:  hl.Attrs().HardwareAddr.String(),
		PodMAC:   pl.Attrs().HardwareAddr.String(),
		PodIndex: pl.Attrs().Index,
	}, nil
}

// ConfigurePod gives the pod end addr, brings it up and routes the pod
// through gw: gw/32 (or /128) on link, then the default route via gw. Safe to
// repeat.
func ConfigurePod(v PodVeth, addr netip.Prefix, gw netip.Addr) error {
	var p PodHandles
	defer p.Close()
	return p.ConfigurePod(v, addr, gw)
}

// ConfigurePod is the package function on p's handles.
func (p *PodHandles) ConfigurePod(v PodVeth, addr netip.Prefix, gw netip.Addr) error {
	if !addr.IsValid() || !gw.IsValid() || addr.Addr().Is4() != gw.Is4() {
		return fmt.Errorf("configure %s in %s: address %s and gateway %s: want both of one family", v.PodName, v.PodNetns, addr, gw)
	}
	pod, err := p.handle(v.PodNetns)
	if err != nil {
		return fmt.Errorf("configure %s: %w", v.PodName, err)
	}
	link, err := p.link(pod, v.PodNetns, v.PodName)
	if err != nil {
		return fmt.Errorf("configure %s in %s: %w", v.PodName, v.PodNetns, err)
	}
	nlAddr := &netlink.Addr{IPNet: podIPNet(addr)}
	if addr.Addr().Is6() {
		nlAddr.Flags = syscall.IFA_F_NODAD // the host never claims pod addresses
	}
	if err := pod.h.AddrReplace(link, nlAddr); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr, v.PodName, err)
	}
	if err := pod.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", v.PodName, err)
	}
	gwHost := netip.PrefixFrom(gw, gw.BitLen())
	onLink := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: podIPNet(gwHost), Scope: netlink.SCOPE_LINK}
	if err := pod.h.RouteReplace(onLink); err != nil {
		return fmt.Errorf("route %s dev %s: %w", gwHost, v.PodName, err)
	}
	def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	if gw.Is6() {
		def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	dflt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: podIPNet(def), Gw: net.IP(gw.AsSlice()), Scope: netlink.SCOPE_UNIVERSE}
	if err := pod.h.RouteReplace(dflt); err != nil {
		return fmt.Errorf("default route via %s dev %s: %w", gw, v.PodName, err)
	}
	return p.neighbours(v, pod.h, link, addr.Addr(), gw)
}

// neighbours makes both ends of the pair know each other without ARP or
// neighbour discovery: in the pod, the gateway at the host end's address;
// in the host, the pod's address at the pod end's. Both are permanent and go
// with the veth. A pod is then reachable the moment its ADD returns: an
// address resolution started while the pair was still coming up (its first
// request lost) would otherwise hold the first packets for the kernel's
// retransmit time, a second.
func (p *PodHandles) neighbours(v PodVeth, podH *netlink.Handle, podLink netlink.Link, addr, gw netip.Addr) error {
	host, err := p.handle(v.HostNetns)
	if err != nil {
		return fmt.Errorf("neighbours of %s: host namespace: %w", v.HostName, err)
	}
	hostLink, err := p.link(host, v.HostNetns, v.HostName)
	if err != nil {
		return fmt.Errorf("neighbours of %s: %w", v.HostName, err)
	}
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	for _, n := range []struct {
		h    *netlink.Handle
		link netlink.Link
		ip   netip.Addr
		mac  net.HardwareAddr
	}{
		{podH, podLink, gw, hostLink.Attrs().HardwareAddr},
		{host.h, hostLink, addr, podLink.Attrs().HardwareAddr},
	} {
		neigh := &netlink.Neigh{LinkIndex: n.link.Attrs().Index, Family: family, State: netlink.NUD_PERMANENT, IP: net.IP(n.ip.AsSlice()), HardwareAddr: n.mac}
		if err := n.h.NeighSet(neigh); err != nil {
			return fmt.Errorf("neighbour %s lladdr %s dev %s: %w", n.ip, n.mac, n.link.Attrs().Name, err)
		}
	}
	return nil
}

// DeletePodVeth removes the pair: the pod end, if the pod namespace still
// exists and holds a veth of that name, then the host end by name if it is
// still there. Anything already gone is success, so it is safe to repeat.
func DeletePodVeth(v PodVeth) error {
	var p PodHandles
	defer p.Close()
	return p.DeletePodVeth(v)
}

// DeletePodVeth is the package function on p's handles.
func (p *PodHandles) DeletePodVeth(v PodVeth) error {
	p.forget(v.PodNetns, v.PodName)
	p.forget(v.HostNetns, v.HostName)
	var errs []error
	if v.PodNetns != "" {
		switch pod, err := p.handle(v.PodNetns); {
		case errors.Is(err, ErrNetnsGone):
		case err != nil:
			// The host end below still removes the pair.
			errs = append(errs, fmt.Errorf("delete %s: %w", v.PodName, err))
		default:
			if err := podDeleteVeth(pod.h, v.PodName); err != nil {
				errs = append(errs, fmt.Errorf("delete %s in %s: %w", v.PodName, v.PodNetns, err))
			}
		}
	}
	host, err := p.handle(v.HostNetns)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("delete %s: host namespace: %w", v.HostName, err))...)
	}
	if err := podDeleteVeth(host.h, v.HostName); err != nil {
		return errors.Join(append(errs, fmt.Errorf("delete %s: %w", v.HostName, err))...)
	}
	// The pair is gone now whatever failed on the pod side, unless the pod
	// end was not ours to delete.
	return nil
}

// deleteVeth deletes the veth called name; absent is success, and a link of
// that name that is not a veth is left alone.
func podDeleteVeth(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if podLinkNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Type() != "veth" {
		return fmt.Errorf("%s is a %s, not a veth: left alone", name, l.Type())
	}
	if err := h.LinkDel(l); err != nil && !podLinkNotFound(err) {
		return err
	}
	return nil
}

// HostVethExists reports whether the host namespace has a link called name.
func HostVethExists(hostNetns, name string) (bool, error) {
	host, err := openPodNetlink(hostNetns)
	if err != nil {
		return false, err
	}
	defer host.close()
	_, err = host.h.LinkByName(name)
	if podLinkNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// PodRoute is one route of the pod's main table through the pod interface.
type PodRoute struct {
	Dst netip.Prefix
	Via netip.Addr // invalid for a route on link
}

func (r PodRoute) String() string {
	if r.Via.IsValid() {
		return r.Dst.String() + " via " + r.Via.String()
	}
	return r.Dst.String()
}

// PodState is what InspectPod found.
type PodState struct {
	HostVeth       bool // the host end exists
	HostVethIsVeth bool
	HostUp         bool
	HostMTU        int

	PodLink  bool // the pod end exists
	PodUp    bool
	PodMTU   int
	PodIndex int
	PodMAC   string
	// Addrs are the pod end's global addresses, sorted.
	Addrs []netip.Prefix
	// Routes are the main-table routes through the pod end, sorted.
	Routes []PodRoute
}

// InspectPod reports the pair and the pod's addresses and routes, for CHECK.
// A missing link is reported in the state, not as an error; a missing pod
// namespace is ErrNetnsGone.
func InspectPod(v PodVeth) (PodState, error) {
	var st PodState
	host, err := openPodNetlink(v.HostNetns)
	if err != nil {
		return st, fmt.Errorf("inspect %s: host namespace: %w", v.HostName, err)
	}
	defer host.close()
	switch hl, err := host.h.LinkByName(v.HostName); {
	case podLinkNotFound(err):
	case err != nil:
		return st, fmt.Errorf("inspect %s: %w", v.HostName, err)
	default:
		st.HostVeth = true
		st.HostVethIsVeth = hl.Type() == "veth"
		st.HostUp = hl.Attrs().Flags&net.FlagUp != 0
		st.HostMTU = hl.Attrs().MTU
	}

	pod, err := openPodNetlink(v.PodNetns)
	if err != nil {
		return st, fmt.Errorf("inspect %s: %w", v.PodName, err)
	}
	defer pod.close()
	pl, err := pod.h.LinkByName(v.PodName)
	if podLinkNotFound(err) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("inspect %s in %s: %w", v.PodName, v.PodNetns, err)
	}
	st.PodLink = true
	st.PodUp = pl.Attrs().Flags&net.FlagUp != 0
	st.PodMTU = pl.Attrs().MTU
	st.PodIndex = pl.Attrs().Index
	st.PodMAC = pl.Attrs().HardwareAddr.String()
	addrs, err := pod.h.AddrList(pl, netlink.FAMILY_ALL)
	if err != nil {
		return st, fmt.Errorf("list addresses of %s: %w", v.PodName, err)
	}
	for _, a := range addrs {
		if a.Scope != int(netlink.SCOPE_UNIVERSE) {
			continue // link-local IPv6 and the like
		}
		if p, ok := podPrefixOf(a.IPNet); ok {
			st.Addrs = append(st.Addrs, p)
		}
	}
	routes, err := pod.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: pl.Attrs().Index, Table: syscall.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return st, fmt.Errorf("list routes through %s: %w", v.PodName, err)
	}
	for _, r := range routes {
		if r.Protocol == syscall.RTPROT_KERNEL {
			continue // prefix routes of addresses
		}
		pr := PodRoute{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
		if r.Family == netlink.FAMILY_V6 {
			pr.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if r.Dst != nil {
			p, ok := podPrefixOf(r.Dst)
			if !ok {
				continue
			}
			pr.Dst = p
		}
		if gw, ok := netip.AddrFromSlice(r.Gw); ok {
			pr.Via = gw.Unmap()
		}
		st.Routes = append(st.Routes, pr)
	}
	slices.SortFunc(st.Addrs, netip.Prefix.Compare)
	slices.SortFunc(st.Routes, func(a, b PodRoute) int {
		if c := a.Dst.Compare(b.Dst); c != 0 {
			return c
		}
		return a.Via.Compare(b.Via)
	})
	return st, nil
}

// podNetlink is a netlink handle in one namespace.
type podNetlink struct {
	fd netns.NsHandle // -1 for the caller's namespace
	h  *netlink.Handle
	// raw, opened on first use (rawSocket), carries the requests the
	// netlink package does not build.
	raw *struct{ s *nl.SocketHandle }
}

// rawSocket is n's socket for requests of our own, opened on first use.
func (n podNetlink) rawSocket() (*nl.SocketHandle, error) {
	if n.raw.s == nil {
		ns := netns.None()
		if n.fd >= 0 {
			ns = n.fd
		}
		s, err := openRawSocket(ns)
		if err != nil {
			return nil, err
		}
		n.raw.s = s
	}
	return n.raw.s, nil
}

func (n podNetlink) close() {
	n.h.Close()
	if n.raw.s != nil {
		n.raw.s.Close()
	}
	if n.fd >= 0 {
		n.fd.Close()
	}
}

// nsfsMagic is the file system type of namespace files (NSFS_MAGIC).
const nsfsMagic = 0x6e736673

// openPodNetlink opens a netlink handle in the namespace at path; empty: the
// caller's namespace.
func openPodNetlink(path string) (podNetlink, error) {
	if path == "" {
		h, err := netlink.NewHandle(syscall.NETLINK_ROUTE)
		if err != nil {
			return podNetlink{}, err
		}
		return podNetlink{fd: -1, h: h, raw: &struct{ s *nl.SocketHandle }{}}.withTimeout()
	}
	fd, err := netns.GetFromPath(path)
	if errors.Is(err, syscall.ENOENT) {
		return podNetlink{}, fmt.Errorf("%s: %w", path, ErrNetnsGone)
	}
	if err != nil {
		return podNetlink{}, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	var fs syscall.Statfs_t
	if err := syscall.Fstatfs(int(fd), &fs); err == nil && fs.Type != nsfsMagic {
		// A file that is no longer a namespace: what a bind mount leaves
		// once unmounted.
		fd.Close()
		return podNetlink{}, fmt.Errorf("%s: %w", path, ErrNetnsGone)
	}
	// Routing only: without a family the netlink package opens XFRM and
	// netfilter sockets too, each with its own two namespace switches.
	h, err := netlink.NewHandleAt(fd, syscall.NETLINK_ROUTE)
	if err != nil {
		fd.Close()
		return podNetlink{}, fmt.Errorf("open netlink in %s: %w", path, err)
	}
	return podNetlink{fd: fd, h: h, raw: &struct{ s *nl.SocketHandle }{}}.withTimeout()
}

// withTimeout bounds each netlink exchange, or closes n.
func (n podNetlink) withTimeout() (podNetlink, error) {
	if err := n.h.SetSocketTimeout(socketTimeout); err != nil {
		n.close()
		return podNetlink{}, err
	}
	return n, nil
}

func podLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT)
}

func podIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func podPrefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}
