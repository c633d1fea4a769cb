package lab

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// BirdRoute is one route of BIRD's table as `show route` prints it; a
// prefix learned from several peers has one BirdRoute per peer.
type BirdRoute struct {
	Prefix netip.Prefix `json:"prefix"`
	// Type is unicast, blackhole, unreachable or prohibit.
	Type string `json:"type"`
	// Protocol is the BIRD protocol the route came from ("h_r1_host_1",
	// "r_tor_2", "segments").
	Protocol string `json:"protocol"`
	// Primary marks the route BIRD chose for the prefix (and exports).
	Primary bool `json:"primary"`
	// Via are the next hops; a device route has none and a Dev.
	Via []netip.Addr `json:"via,omitempty"`
	Dev string       `json:"dev,omitempty"`
	// Origin is BIRD's summary of a BGP route's origin: the AS that
	// announced it first and the origin code ("AS64601i").
	Origin string `json:"origin,omitempty"`
	// Stale marks a route kept for a peer that is restarting (graceful
	// restart) and has not announced it again yet; read from FRR only.
	Stale bool `json:"stale,omitempty"`
}

// String renders r on one line.
func (r BirdRoute) String() string {
	var b strings.Builder
	b.WriteString(r.Prefix.String())
	if r.Type != "unicast" {
		b.WriteString(" " + r.Type)
	}
	for _, v := range r.Via {
		b.WriteString(" via " + v.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev " + r.Dev)
	}
	b.WriteString(" from " + r.Protocol)
	if r.Origin != "" {
		b.WriteString(" " + r.Origin)
	}
	if r.Stale {
		b.WriteString(" stale")
	}
	if r.Primary {
		b.WriteString(" *")
	}
	return b.String()
}

// BirdProtocol is one line of BIRD's `show protocols`.
type BirdProtocol struct {
	Name  string `json:"name"`
	Proto string `json:"proto"` // BGP, Kernel, Direct, Device, Static
	State string `json:"state"` // up, start, down
	// Info is BGP's session state ("Established", "Passive", "Active")
	// and the last error, if any.
	Info string `json:"info,omitempty"`
}

// Established reports whether p is a BGP session that is up.
func (p BirdProtocol) Established() bool {
	return p.Proto == "BGP" && strings.HasPrefix(p.Info, "Established")
}

// BirdState is what a BGP router's daemon holds: its sessions and its
// table, in BIRD's terms (ReadFRR puts FRR's in them too).
type BirdState struct {
	ASN uint32 `json:"asn"`
	// Daemon is DaemonBIRD or DaemonFRR ("": BIRD).
	Daemon    string         `json:"daemon,omitempty"`
	Protocols []BirdProtocol `json:"protocols"`
	Routes    []BirdRoute    `json:"routes"`
}

// birdc runs one birdc command against a control socket and returns its
// output (birdc reaches BIRD over the socket: no namespace needed).
func birdc(ctx context.Context, ctl string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "birdc", append([]string{"-s", ctl}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	if err == nil && !strings.Contains(text, " ready.") {
		err = fmt.Errorf("no greeting from BIRD")
	}
	if err != nil {
		return "", fmt.Errorf("birdc -s %s %s: %v: %s", ctl, strings.Join(args, " "), err, strings.TrimSpace(text))
	}
	return text, nil
}

// ReadBird reads a BGP router's sessions and table through birdc.
func ReadBird(ctx context.Context, st *State, router string) (*BirdState, error) {
	r, ok := st.Scenario.Router(router)
	if !ok || r.BGP == nil {
		return nil, fmt.Errorf("router %q does not run BGP", router)
	}
	ctl := st.names().BirdCtl(router)
	bs := &BirdState{ASN: r.BGP.ASN, Daemon: DaemonBIRD}
	out, err := birdc(ctx, ctl, "show", "protocols")
	if err != nil {
		return nil, err
	}
	bs.Protocols = ParseBirdProtocols(out)
	if out, err = birdc(ctx, ctl, "show", "route"); err != nil {
		return nil, err
	}
	if bs.Routes, err = ParseBirdRoutes(out); err != nil {
		return nil, fmt.Errorf("router %s: %w", router, err)
	}
	return bs, nil
}

// ParseBirdRoutes parses `birdc show route` (BIRD 2) into routes sorted
// by prefix, the primary route of a prefix first:
//
//	Table master4:
//	10.20.0.0/28         unicast [h_r1_host_1 10:26:16.893] * (100) [AS64601i]
//		via 192.168.1.11 on s-rack-1
//	                     unicast [h_r1_host_2 10:26:17.001] (100) [AS64601i]
//		via 192.168.1.12 on s-rack-1
//	192.168.1.0/24       unicast [segments 10:26:15.932] * (240)
//		dev s-rack-1
//
// Attribute lines (`show route all`) and tables' headers are skipped.
func ParseBirdRoutes(text string) ([]BirdRoute, error) {
	var (
		out []BirdRoute
		cur netip.Prefix
	)
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "", strings.HasPrefix(line, "BIRD "), strings.HasPrefix(line, "Table "):
			continue
		case line[0] != ' ' && line[0] != '\t':
			first, rest, _ := strings.Cut(trimmed, " ")
			p, err := netip.ParsePrefix(first)
			if err != nil {
				return nil, fmt.Errorf("show route line %d: %q: not a route", i+1, line)
			}
			cur = p
			r, err := parseBirdRouteHead(strings.TrimSpace(rest))
			if err != nil {
				return nil, fmt.Errorf("show route line %d: %w", i+1, err)
			}
			r.Prefix = p
			out = append(out, r)
		case line[0] == ' ' && strings.Contains(trimmed, " ["):
			// Another route for the prefix above.
			if !cur.IsValid() {
				return nil, fmt.Errorf("show route line %d: a route with no prefix before it", i+1)
			}
			r, err := parseBirdRouteHead(trimmed)
			if err != nil {
				return nil, fmt.Errorf("show route line %d: %w", i+1, err)
			}
			r.Prefix = cur
			out = append(out, r)
		case strings.HasPrefix(trimmed, "via "):
			if len(out) == 0 {
				return nil, fmt.Errorf("show route line %d: a next hop with no route", i+1)
			}
			f := strings.Fields(trimmed)
			a, err := netip.ParseAddr(f[1])
			if err != nil {
				return nil, fmt.Errorf("show route line %d: next hop %q: %v", i+1, f[1], err)
			}
			last := &out[len(out)-1]
			last.Via = append(last.Via, a)
		case strings.HasPrefix(trimmed, "dev "):
			if len(out) == 0 {
				return nil, fmt.Errorf("show route line %d: a device with no route", i+1)
			}
			out[len(out)-1].Dev = strings.Fields(trimmed)[1]
		}
	}
	sortRoutes(out)
	return out, nil
}

// parseBirdRouteHead parses `unicast [proto time] * (100) [AS64601i]`.
func parseBirdRouteHead(s string) (BirdRoute, error) {
	typ, rest, ok := strings.Cut(s, " [")
	if !ok || typ == "" || strings.ContainsAny(typ, " \t") {
		return BirdRoute{}, fmt.Errorf("%q: want TYPE [PROTOCOL TIME] and the rest", s)
	}
	src, rest, ok := strings.Cut(rest, "]")
	if !ok {
		return BirdRoute{}, fmt.Errorf("%q: no ']' after the protocol", s)
	}
	proto, _, _ := strings.Cut(src, " ")
	if proto == "" {
		return BirdRoute{}, fmt.Errorf("%q: no protocol", s)
	}
	r := BirdRoute{Type: typ, Protocol: proto}
	for _, f := range strings.Fields(rest) {
		switch {
		case f == "*":
			r.Primary = true
		case strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]"):
			r.Origin = strings.Trim(f, "[]")
		}
	}
	return r, nil
}

// ParseBirdProtocols parses `birdc show protocols`:
//
//	Name       Proto      Table      State  Since         Info
//	h_r1_host_1 BGP        ---        up     10:26:16.850  Established
func ParseBirdProtocols(text string) []BirdProtocol {
	var out []BirdProtocol
	for line := range strings.SplitSeq(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] == "Name" || f[0] == "BIRD" {
			continue
		}
		p := BirdProtocol{Name: f[0], Proto: f[1], State: f[3]}
		// Since is one field ("10:26:16.850") or two ("2026-11-26
		// 10:26:16"): the info starts after the first field holding ':'.
		for j := 4; j < len(f); j++ {
			if strings.Contains(f[j], ":") {
				p.Info = strings.Join(f[j+1:], " ")
				break
			}
		}
		out = append(out, p)
	}
	return out
}

// Text renders a BIRD state under a router's routes.
func (bs *BirdState) Text() string {
	var b strings.Builder
	up, sessions := 0, 0
	for _, p := range bs.Protocols {
		if p.Proto == "BGP" {
			sessions++
			if p.Established() {
				up++
			}
		}
	}
	daemon := DaemonBIRD
	if bs.Daemon != "" {
		daemon = bs.Daemon
	}
	fmt.Fprintf(&b, "  %s (AS %d): %d of %d BGP sessions established\n", daemon, bs.ASN, up, sessions)
	for _, p := range bs.Protocols {
		if p.Proto == "BGP" {
			fmt.Fprintf(&b, "    %-16s %s\n", p.Name, p.Info)
		}
	}
	fmt.Fprintf(&b, "  %s table (%s routes, * = chosen)\n", daemon, strconv.Itoa(len(bs.Routes)))
	for _, r := range bs.Routes {
		fmt.Fprintf(&b, "    %s\n", r)
	}
	return b.String()
}
