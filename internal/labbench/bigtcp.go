package labbench

import (
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/terrane-net/terrane/internal/dataplane/linux"
	"github.com/terrane-net/terrane/internal/lab"
)

// LinkGSO is a device's GSO/GRO limits as the kernel reports them
// (IFLA_*_MAX_SIZE; read over netlink, since iproute2 6.1 neither shows nor
// sets the IPv4 ones). IPv4 BIG TCP is on when GSOIPv4MaxSize > 65536.
type LinkGSO struct {
	Netns          string `json:"netns"`
	Dev            string `json:"dev"`
	GSOMaxSize     uint32 `json:"gso_max_size"`
	GSOIPv4MaxSize uint32 `json:"gso_ipv4_max_size"`
	GROMaxSize     uint32 `json:"gro_max_size"`
	GROIPv4MaxSize uint32 `json:"gro_ipv4_max_size"`
	TSOMaxSize     uint32 `json:"tso_max_size"`
}

// DeviceBigTCP is what asking one overlay device for BIG TCP did: the
// limits read back afterwards, and each size the kernel refused.
type DeviceBigTCP struct {
	LinkGSO
	Requested uint32 `json:"requested"`
	// Refused: "gso_max_size 196608: invalid argument", one per refusal;
	// a refused GSO size is retried at the device's tso_max_size.
	Refused []string `json:"refused,omitempty"`
}

// BigTCPFull reports whether all four sizes reached Requested.
func (d DeviceBigTCP) BigTCPFull() bool {
	return d.GSOMaxSize >= d.Requested && d.GSOIPv4MaxSize >= d.Requested &&
		d.GROMaxSize >= d.Requested && d.GROIPv4MaxSize >= d.Requested
}

// inNetns runs f with a netlink handle in the named network namespace.
func inNetns(name string, f func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", name, err)
	}
	defer h.Close()
	return f(h)
}

func linkGSO(nsName string, l netlink.Link) LinkGSO {
	a := l.Attrs()
	return LinkGSO{Netns: nsName, Dev: a.Name, GSOMaxSize: a.GSOMaxSize, GSOIPv4MaxSize: a.GSOIPv4MaxSize,
		GROMaxSize: a.GROMaxSize, GROIPv4MaxSize: a.GROIPv4MaxSize, TSOMaxSize: a.TSOMaxSize}
}

// readLinkGSO reads dev's GSO/GRO limits in namespace nsName.
func readLinkGSO(nsName, dev string) (LinkGSO, error) {
	g, err := linux.LinkGSOSizes(lab.NetnsPath(nsName), dev)
	if err != nil {
		return LinkGSO{}, err
	}
	return LinkGSO{Netns: nsName, Dev: dev, GSOMaxSize: uint32(g.GSO), GSOIPv4MaxSize: uint32(g.GSOIPv4),
		GROMaxSize: uint32(g.GRO), GROIPv4MaxSize: uint32(g.GROIPv4), TSOMaxSize: uint32(g.TSOMax)}, nil
}

// setBigTCP asks for size on dev's four GSO/GRO limits in nsName. A size
// the kernel refuses is recorded, not an error; a refused GSO size is tried
// again at the device's tso_max_size when that is above 64 KiB. The error
// is for a device that cannot be found or read.
func setBigTCP(nsName, dev string, size uint32) (DeviceBigTCP, error) {
	d := DeviceBigTCP{Requested: size}
	err := inNetns(nsName, func(h *netlink.Handle) error {
		l, err := h.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", dev, nsName, err)
		}
		tso := l.Attrs().TSOMaxSize
		for _, s := range []struct {
			name  string
			set   func(netlink.Link, int) error
			isGSO bool
		}{
			{"gso_max_size", h.LinkSetGSOMaxSize, true},
			{"gso_ipv4_max_size", h.LinkSetGSOIPv4MaxSize, true},
			{"gro_max_size", h.LinkSetGROMaxSize, false},
			{"gro_ipv4_max_size", h.LinkSetGROIPv4MaxSize, false},
		} {
			err := s.set(l, int(size))
			if err == nil {
				continue
			}
			d.Refused = append(d.Refused, fmt.Sprintf("%s %d: %v", s.name, size, err))
			if s.isGSO && tso > linux.DefaultGSOSize && tso < size {
				if err := s.set(l, int(tso)); err != nil {
					d.Refused = append(d.Refused, fmt.Sprintf("%s %d: %v", s.name, tso, err))
				}
			}
		}
		if l, err = h.LinkByName(dev); err != nil {
			return fmt.Errorf("%s in %s: %w", dev, nsName, err)
		}
		d.LinkGSO = linkGSO(nsName, l)
		return nil
	})
	return d, err
}

// bigTCPNote is one line on the overlay devices that did not take the full
// BIG TCP size ("" when all did); prefix is cut from namespace names.
func bigTCPNote(devs []DeviceBigTCP, prefix string) string {
	var short []string
	for _, d := range devs {
		if d.BigTCPFull() {
			continue
		}
		short = append(short, fmt.Sprintf("%s/%s gso %d, gso_ipv4 %d, gro %d, gro_ipv4 %d (tso_max_size %d)",
			strings.TrimPrefix(d.Netns, prefix), d.Dev, d.GSOMaxSize, d.GSOIPv4MaxSize, d.GROMaxSize, d.GROIPv4MaxSize, d.TSOMaxSize))
	}
	if len(short) == 0 {
		return ""
	}
	return fmt.Sprintf("overlay BIG TCP: the kernel kept lower limits than %d on %s", devs[0].Requested, strings.Join(short, "; "))
}
