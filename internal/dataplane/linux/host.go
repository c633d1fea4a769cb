//go:build linux

package linux

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
)

// Host is what the agent changes on its host besides routes: the policy
// rule that makes the kernel consult Terrane's table, per-interface sysctls,
// and pod links. It works in the network namespace it was opened in.
type Host struct {
	h *netlink.Handle
	// raw carries the requests the netlink package does not build
	// (linkconf.go).
	raw *nl.SocketHandle
	// sysctlRoot is /proc/sys; tests of the paths may point it elsewhere.
	sysctlRoot string
}

// OpenHost opens the current network namespace.
func OpenHost() (*Host, error) {
	h, err := netlink.NewHandle(syscall.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	if err := h.SetSocketTimeout(socketTimeout); err != nil {
		h.Close()
		return nil, err
	}
	raw, err := openRawSocket(netns.None())
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &Host{h: h, raw: raw, sysctlRoot: "/proc/sys"}, nil
}

// Close releases the netlink sockets.
func (x *Host) Close() {
	x.h.Close()
	if x.raw != nil {
		x.raw.Close()
	}
}

// EnsureRule makes sure a policy rule "from all lookup table" exists at
// priority for family (4 or 6), adding it when missing. A rule at another
// priority for the same table is left alone (an operator's choice).
func (x *Host) EnsureRule(family, table, priority int) error {
	fam := netlink.FAMILY_V4
	if family == 6 {
		fam = netlink.FAMILY_V6
	}
	rules, err := x.h.RuleList(fam)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	for _, r := range rules {
		if r.Table == table && r.Src == nil && r.Dst == nil && r.Mark == 0 && r.IifName == "" && r.OifName == "" {
			return nil
		}
	}
	r := netlink.NewRule()
	r.Family = fam
	r.Table = table
	r.Priority = priority
	if err := x.h.RuleAdd(r); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("add rule priority %d lookup %d: %w", priority, table, err)
	}
	return nil
}

// LinkExists reports whether an interface of that name exists.
func (x *Host) LinkExists(name string) (bool, error) {
	_, err := x.h.LinkByName(name)
	if err == nil {
		return true, nil
	}
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return false, nil
	}
	return false, err
}

// DeleteLink deletes an interface (for a veth, both ends); one that does
// not exist is not an error.
func (x *Host) DeleteLink(name string) error {
	l, err := x.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	if err := x.h.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// LinksWithPrefix lists the interfaces whose names start with prefix.
func (x *Host) LinksWithPrefix(prefix string) ([]string, error) {
	links, err := x.h.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		if n := l.Attrs().Name; strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out, nil
}

// InterfaceOf names the interface that holds addr.
func (x *Host) InterfaceOf(addr netip.Addr) (string, error) {
	fam := netlink.FAMILY_V4
	if addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := x.h.AddrList(nil, fam)
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			l, err := x.h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return "", err
			}
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("no interface holds %s", addr)
}

// SetSysctl writes value to the sysctl key ("net/ipv4/conf/eth0/forwarding"
// or "net.ipv4.conf.eth0.forwarding"; an interface name with a dot must use
// the slash form), in the current network namespace.
func (x *Host) SetSysctl(key, value string) error {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	p := filepath.Join(x.sysctlRoot, filepath.Clean("/"+key))
	if cur, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(cur)) == value {
		return nil // unchanged: no write, no netlink notification
	}
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// LinkInfo reports an interface's index and hardware address.
func (x *Host) LinkInfo(name string) (ifindex int, mac net.HardwareAddr, err error) {
	l, err := x.h.LinkByName(name)
	if err != nil {
		return 0, nil, fmt.Errorf("link %s: %w", name, err)
	}
	return l.Attrs().Index, l.Attrs().HardwareAddr, nil
}
