//go:build linux

package linux

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// BIG TCP: the largest packet a link's GSO builds on transmit and its GRO
// merges on receive. The kernel's default is 64 KiB; larger GSO packets
// carry the same bytes in fewer trips through each hop of the path (a
// veth, a forward, a route lookup), which is what a routed pod path pays
// per packet. The four sizes are kept equal: gso_max_size and gro_max_size
// (IPv6 and the legacy limit), gso_ipv4_max_size and gro_ipv4_max_size.

// Sizes for SetGSOMaxSize.
const (
	// DefaultGSOSize is 64 KiB, the kernel's default.
	DefaultGSOSize = 65536
	// BigTCPSize is 192 KiB, the BIG TCP size Cilium uses (Terrane's
	// agent defaults to the uplink's largest instead).
	BigTCPSize = 196608
	// MaxGSOSize is the kernel's GRO_MAX_SIZE (8 × 65535), the largest
	// size any of the four takes.
	MaxGSOSize = 8 * 65535
)

// GSOSizes are a link's current GSO and GRO maximums.
type GSOSizes struct {
	GSO, GRO, GSOIPv4, GROIPv4 int
	// TSOMax is the largest GSO packet the device accepts (tso_max_size).
	TSOMax int
}

// ErrGSOSize is wrapped by SetGSOMaxSize's error for a size out of range.
var ErrGSOSize = errors.New("GSO size out of range")

// SetGSOMaxSize sets the four GSO/GRO maximums of the link called name in
// the namespace at netnsPath (empty: the caller's) to size, capped at the
// device's tso_max_size and at MaxGSOSize, and returns the size applied. A
// size below DefaultGSOSize is refused: lowering GSO is not what this is
// for.
func SetGSOMaxSize(netnsPath, name string, size int) (int, error) {
	n, err := openPodNetlink(netnsPath)
	if err != nil {
		return 0, fmt.Errorf("set GSO size of %s: %w", name, err)
	}
	defer n.close()
	return setGSOMaxSize(n.h, name, size)
}

// SetGSOMaxSize is the package function in the host's namespace. It also
// returns undo, which puts back the four sizes the link had before (nil
// when the link could not be read). On an error some sizes may be set:
// call undo then too.
func (x *Host) SetGSOMaxSize(name string, size int) (applied int, undo func() error, err error) {
	if l, err := x.h.LinkByName(name); err == nil {
		was := gsoSizes(l)
		undo = func() error { return restoreGSOSizes(x.h, name, was) }
	}
	applied, err = setGSOMaxSize(x.h, name, size)
	return applied, undo, err
}

// restoreGSOSizes sets the link's four sizes to was. gso_max_size first:
// setting it lowers gso_ipv4_max_size when that is larger, and raising it
// back lets gso_ipv4_max_size follow.
func restoreGSOSizes(h *netlink.Handle, name string, was GSOSizes) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("restore GSO sizes of %s: %w", name, err)
	}
	for _, set := range []struct {
		what string
		fn   func(netlink.Link, int) error
		size int
	}{
		{"gso_max_size", h.LinkSetGSOMaxSize, was.GSO},
		{"gro_max_size", h.LinkSetGROMaxSize, was.GRO},
		{"gso_ipv4_max_size", h.LinkSetGSOIPv4MaxSize, was.GSOIPv4},
		{"gro_ipv4_max_size", h.LinkSetGROIPv4MaxSize, was.GROIPv4},
	} {
		if set.size == 0 {
			continue // the kernel does not report it (before 6.3): never set
		}
		if err := set.fn(l, set.size); err != nil {
			return fmt.Errorf("restore %s of %s to %d: %w", set.what, name, set.size, err)
		}
	}
	return nil
}

// LinkGSOSizes reports the GSO/GRO maximums of the link called name in the
// namespace at netnsPath (empty: the caller's).
func LinkGSOSizes(netnsPath, name string) (GSOSizes, error) {
	n, err := openPodNetlink(netnsPath)
	if err != nil {
		return GSOSizes{}, fmt.Errorf("GSO sizes of %s: %w", name, err)
	}
	defer n.close()
	l, err := n.h.LinkByName(name)
	if err != nil {
		return GSOSizes{}, fmt.Errorf("GSO sizes of %s: %w", name, err)
	}
	return gsoSizes(l), nil
}

func gsoSizes(l netlink.Link) GSOSizes {
	a := l.Attrs()
	return GSOSizes{GSO: int(a.GSOMaxSize), GRO: int(a.GROMaxSize), GSOIPv4: int(a.GSOIPv4MaxSize), GROIPv4: int(a.GROIPv4MaxSize), TSOMax: int(a.TSOMaxSize)}
}

func setGSOMaxSize(h *netlink.Handle, name string, size int) (int, error) {
	if size < DefaultGSOSize || size > MaxGSOSize {
		return 0, fmt.Errorf("set GSO size of %s to %d: %w (want %d to %d bytes)", name, size, ErrGSOSize, DefaultGSOSize, MaxGSOSize)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("set GSO size of %s: %w", name, err)
	}
	if tso := int(l.Attrs().TSOMaxSize); tso > 0 && size > tso {
		size = tso
	}
	if gsoSizes(l) == (GSOSizes{GSO: size, GRO: size, GSOIPv4: size, GROIPv4: size, TSOMax: int(l.Attrs().TSOMaxSize)}) {
		return size, nil
	}
	// gso_max_size first: setting it also lowers gso_ipv4_max_size when
	// that is larger.
	for _, set := range []struct {
		what string
		fn   func(netlink.Link, int) error
	}{
		{"gso_max_size", h.LinkSetGSOMaxSize},
		{"gro_max_size", h.LinkSetGROMaxSize},
		{"gso_ipv4_max_size", h.LinkSetGSOIPv4MaxSize},
		{"gro_ipv4_max_size", h.LinkSetGROIPv4MaxSize},
	} {
		if err := set.fn(l, size); err != nil {
			return 0, fmt.Errorf("set %s of %s to %d: %w", set.what, name, size, err)
		}
	}
	return size, nil
}

// SetPodGSOMaxSize applies SetGSOMaxSize to both ends of a pod's pair: the
// host end in v.HostNetns and the pod end in v.PodNetns.
func SetPodGSOMaxSize(v PodVeth, size int) error {
	var p PodHandles
	defer p.Close()
	return p.SetPodGSOMaxSize(v, size)
}

// SetPodGSOMaxSize is the package function on p's handles. Each end gets
// its four sizes in one request (the kernel applies gso_max_size before
// gso_ipv4_max_size, the order setGSOMaxSize keeps), not four: the agent
// found at its start that the kernel takes them, on the uplink.
func (p *PodHandles) SetPodGSOMaxSize(v PodVeth, size int) error {
	if size < DefaultGSOSize || size > MaxGSOSize {
		return fmt.Errorf("set GSO size of %s to %d: %w (want %d to %d bytes)", v.HostName, size, ErrGSOSize, DefaultGSOSize, MaxGSOSize)
	}
	for _, end := range []struct{ netns, name string }{{v.HostNetns, v.HostName}, {v.PodNetns, v.PodName}} {
		n, err := p.handle(end.netns)
		if err != nil {
			return fmt.Errorf("set GSO size of %s: %w", end.name, err)
		}
		l, err := p.link(n, end.netns, end.name)
		if err != nil {
			return fmt.Errorf("set GSO size of %s: %w", end.name, err)
		}
		sz := size
		if tso := int(l.Attrs().TSOMaxSize); tso > 0 && sz > tso {
			sz = tso
		}
		if gsoSizes(l) == (GSOSizes{GSO: sz, GRO: sz, GSOIPv4: sz, GROIPv4: sz, TSOMax: int(l.Attrs().TSOMaxSize)}) {
			continue
		}
		raw, err := n.rawSocket()
		if err != nil {
			return fmt.Errorf("set GSO size of %s: %w", end.name, err)
		}
		req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(l.Attrs().Index)
		req.AddData(msg)
		for _, attr := range []int{unix.IFLA_GSO_MAX_SIZE, unix.IFLA_GRO_MAX_SIZE, unix.IFLA_GSO_IPV4_MAX_SIZE, unix.IFLA_GRO_IPV4_MAX_SIZE} {
			req.AddData(nl.NewRtAttr(attr, nl.Uint32Attr(uint32(sz))))
		}
		if err := execute(raw, req); err != nil {
			if end.netns == v.PodNetns {
				return fmt.Errorf("in %s: set GSO and GRO sizes of %s to %d: %w", v.PodNetns, end.name, sz, err)
			}
			return fmt.Errorf("set GSO and GRO sizes of %s to %d: %w", end.name, sz, err)
		}
	}
	return nil
}
