package topology

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// BGP defaults.
const (
	// DefaultBGPASN is the hosts' AS number when a group names none: the
	// first private 2-byte ASN (RFC 6996).
	DefaultBGPASN = 64512
	// DefaultBGPPort is where peers listen.
	DefaultBGPPort = 179
	// DefaultGracefulRestart is how long, in seconds, peers keep a
	// restarting host's routes.
	DefaultGracefulRestart = 120
	// MaxGracefulRestart is the largest restart time the graceful-restart
	// capability can carry (12 bits, RFC 4724).
	MaxGracefulRestart = 4095
	// maxASN is the largest 4-byte AS number.
	maxASN = 1<<32 - 1
	// maxMD5Key is the longest TCP MD5 key Linux accepts
	// (TCP_MD5SIG_MAXKEYLEN).
	maxMD5Key = 80
)

// BGPConfig is the effective BGP configuration of a bgp group: what each of
// its hosts' speakers runs with.
type BGPConfig struct {
	// ASN is the hosts' own AS number.
	ASN uint32
	// Peers are the routers every host of the group connects to, in file
	// order.
	Peers []BGPPeer
	// GracefulRestartSeconds is how long peers keep a restarting host's
	// routes; 0 disables graceful restart.
	GracefulRestartSeconds int
	// From is the path of the group whose bgp block this is ("" for the
	// defaults).
	From string
}

// BGPPeer is one router a host speaks BGP to.
type BGPPeer struct {
	Address  netip.Addr
	ASN      uint32
	Password string
	Port     int
}

// defaultBGP is the configuration of a bgp group without a bgp block
// anywhere above it.
func defaultBGP() *BGPConfig {
	return &BGPConfig{ASN: DefaultBGPASN, GracefulRestartSeconds: DefaultGracefulRestart}
}

// bgp checks a group's bgp block and sets the group's effective BGP
// configuration: its own block, else the nearest ancestor's, else the
// defaults; nil when the group does not route by bgp.
func (c *compiler) bgp(g *Group, bs *BGPSpec, path string) {
	var own *BGPConfig
	if bs != nil {
		own = c.bgpBlock(bs, path+".bgp")
		if g.Mode != ModeBGP {
			c.errs.add(path+".bgp", "applies only to bgp groups; this group routes by %s (set routing: bgp, or move the block to the bgp groups)", g.Mode)
		}
		if c.ownBGP == nil {
			c.ownBGP = map[*Group]*BGPConfig{}
		}
		c.ownBGP[g] = own
		own.From = g.Path
	}
	if g.Mode != ModeBGP {
		return
	}
	if own != nil {
		g.BGP = own
		return
	}
	for p := g.Parent; p != nil; p = p.Parent {
		if b := c.ownBGP[p]; b != nil {
			g.BGP = b
			return
		}
	}
	g.BGP = defaultBGP()
}

// bgpBlock checks one bgp block; it returns the configuration read, with
// defaults where a value is missing or wrong (the errors say which).
func (c *compiler) bgpBlock(bs *BGPSpec, path string) *BGPConfig {
	b := defaultBGP()
	if bs.ASN != nil {
		if asn, ok := c.asn(path+".asn", *bs.ASN); ok {
			b.ASN = asn
		}
	}
	if bs.GracefulRestart != "" {
		secs, err := parseSeconds(bs.GracefulRestart)
		switch {
		case err != nil:
			c.errs.add(path+".gracefulRestart", "%q: %v; write a duration such as 120s or 2m (0s disables graceful restart)", bs.GracefulRestart, err)
		case secs > MaxGracefulRestart:
			c.errs.add(path+".gracefulRestart", "%s is longer than the %ds (68m15s) the graceful-restart capability can carry", bs.GracefulRestart, MaxGracefulRestart)
		default:
			b.GracefulRestartSeconds = secs
		}
	}
	seen := map[netip.AddrPort]int{}
	for i, ps := range bs.Peers {
		pp := fmt.Sprintf("%s.peers[%d]", path, i)
		p := BGPPeer{Password: ps.Password, Port: ps.Port}
		ok := true
		addr, err := netip.ParseAddr(ps.Address)
		switch {
		case ps.Address == "":
			c.errs.add(pp+".address", "required: the router's address, e.g. 192.168.1.1")
			ok = false
		case err != nil:
			c.errs.add(pp+".address", "%q is not an IP address (want e.g. 192.168.1.1 or fd00::1)", ps.Address)
			ok = false
		case addr.Zone() != "":
			c.errs.add(pp+".address", "%q has a zone; remove it", ps.Address)
			ok = false
		case addr.IsUnspecified() || addr.IsMulticast():
			c.errs.add(pp+".address", "%s cannot be a BGP peer; give the router's unicast address", addr)
			ok = false
		}
		p.Address = addr.Unmap()
		if ps.ASN == 0 {
			c.errs.add(pp+".asn", "required: the router's AS number, 1 to 4294967295")
		} else if asn, aok := c.asn(pp+".asn", ps.ASN); aok {
			p.ASN = asn
		}
		switch {
		case ps.Port == 0:
			p.Port = DefaultBGPPort
		case ps.Port < 1 || ps.Port > 65535:
			c.errs.add(pp+".port", "%d is not a TCP port; use 1 to 65535 (default 179)", ps.Port)
		}
		if len(ps.Password) > maxMD5Key {
			c.errs.add(pp+".password", "%d characters; a TCP MD5 key holds at most %d", len(ps.Password), maxMD5Key)
		}
		if !ok {
			continue
		}
		key := netip.AddrPortFrom(p.Address, uint16(max(min(p.Port, 65535), 0)))
		if j, dup := seen[key]; dup {
			c.errs.add(pp+".address", "peer %s is already listed at %s.peers[%d]; list each router once", p.Address, path, j)
			continue
		}
		seen[key] = i
		b.Peers = append(b.Peers, p)
	}
	return b
}

// asn checks an AS number.
func (c *compiler) asn(path string, v int) (uint32, bool) {
	switch {
	case v == 0:
		c.errs.add(path, "AS 0 is reserved (RFC 7607); use 1 to 4294967295 (private: 64512-65534, 4200000000-4294967294)")
	case v < 0 || v > maxASN:
		c.errs.add(path, "%d is not an AS number; use 1 to 4294967295 (private: 64512-65534, 4200000000-4294967294)", v)
	case v == 23456:
		c.errs.add(path, "AS 23456 is AS_TRANS (RFC 6793), not a real AS; give the 4-byte AS number")
	default:
		return uint32(v), true
	}
	return 0, false
}

// parseSeconds reads a whole number of seconds written as a duration:
// "120s", "2m", "1m30s", "1h", "0s" or "0". It stays in the pure core
// (no time package) and refuses fractions, which BGP timers cannot carry.
func parseSeconds(s string) (int, error) {
	switch s {
	case "0":
		return 0, nil
	case "":
		return 0, fmt.Errorf("empty")
	}
	total, rest := 0, s
	seenUnit := ""
	for rest != "" {
		i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if i <= 0 {
			return 0, fmt.Errorf("want a number followed by h, m or s")
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > 1<<20 {
			return 0, fmt.Errorf("number %q is too large", rest[:i])
		}
		unit := rest[i : i+1]
		mult := map[string]int{"h": 3600, "m": 60, "s": 1}[unit]
		if mult == 0 {
			return 0, fmt.Errorf("unit %q: use h, m or s (whole seconds)", unit)
		}
		if seenUnit != "" && !slices.Contains([]string{"h", "m", "s"}[slices.Index([]string{"h", "m", "s"}, seenUnit)+1:], unit) {
			return 0, fmt.Errorf("units must come in the order h, m, s, each once")
		}
		seenUnit = unit
		total += n * mult
		if total > 1<<24 {
			return 0, fmt.Errorf("too long")
		}
		rest = rest[i+1:]
	}
	return total, nil
}
