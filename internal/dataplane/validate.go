package dataplane

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"

	"github.com/terrane-net/terrane/internal/fielderr"
)

// Reserved kernel routing tables, never Terrane's.
const (
	tableDefault = 253
	tableMain    = 254
	tableLocal   = 255
)

// FieldError is one problem with a State, at the field that has it, e.g.
// "routes[2].via".
type FieldError = fielderr.FieldError

// ValidationError carries every problem found in one State.
type ValidationError = fielderr.ValidationError

// ValidateTable reports whether t may hold Terrane's routes: a kernel table
// ID (1 to 2^32-1) other than the reserved default, main and local tables.
func ValidateTable(t int) error {
	switch {
	case t <= 0 || t > math.MaxUint32:
		return fmt.Errorf("table %d is not a routing table ID (1 to %d)", t, uint32(math.MaxUint32))
	case t == tableDefault || t == tableMain || t == tableLocal:
		return fmt.Errorf("table %d is reserved by the kernel; Terrane uses its own table", t)
	}
	return nil
}

// Validate checks s whole and reports every problem at once, so a bad State
// is refused before any route is touched.
func (s State) Validate() error {
	var errs []FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if s.Table != 0 {
		if err := ValidateTable(s.Table); err != nil {
			add("table", "%v", err)
		}
	}
	seen := make(map[netip.Prefix]int, len(s.Routes))
	for i, r := range s.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		for _, fe := range r.problems() {
			add(path+fe.Path, "%s", fe.Msg)
		}
		if !r.Dst.IsValid() {
			continue
		}
		dst := r.Normalize().Dst
		if j, dup := seen[dst]; dup {
			add(path+".dst", "%s is also the destination of routes[%d]", dst, j)
			continue
		}
		seen[dst] = i
	}
	if len(errs) == 0 {
		return nil
	}
	return &ValidationError{Subject: "dataplane state", Errors: errs}
}

// problems lists what is wrong with r, with paths relative to the route.
func (r Route) problems() []FieldError {
	var errs []FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if !r.Dst.IsValid() {
		add(".dst", "missing or invalid prefix")
	} else if r.Dst.Addr().Is4In6() {
		add(".dst", "%s is an IPv4-mapped IPv6 prefix; write the IPv4 prefix", r.Dst)
	} else if r.Dst.Addr().Zone() != "" {
		add(".dst", "%s has a zone", r.Dst)
	}
	if r.Via.IsValid() {
		via := r.Via.Unmap()
		switch {
		case via.IsUnspecified():
			add(".via", "%s is the unspecified address", r.Via)
		case via.IsMulticast():
			add(".via", "%s is a multicast address", r.Via)
		case r.Dst.IsValid() && via.Is4() != r.Dst.Addr().Is4():
			add(".via", "next hop %s is not of the destination's address family", r.Via)
		case via.Is6() && via.IsLinkLocalUnicast() && r.Dev == "":
			add(".dev", "a link-local next hop (%s) needs a device", r.Via)
		}
		if via.Zone() != "" {
			add(".via", "%s has a zone; name the interface in dev", r.Via)
		}
	} else if r.Dev == "" {
		add("", "a route needs a next hop (via), a device (dev) or both")
	}
	if r.Dev != "" {
		if err := validateDev(r.Dev); err != nil {
			add(".dev", "%v", err)
		}
	}
	switch r.Scope {
	case ScopeAuto, ScopeUniverse:
	case ScopeLink, ScopeHost:
		if r.Dst.IsValid() && r.Dst.Addr().Is6() {
			add(".scope", "IPv6 routes have no scope; leave it auto")
		} else if r.Via.IsValid() {
			add(".scope", "a route via a next hop must have global scope, not %s", r.Scope)
		}
	default:
		add(".scope", "unknown scope %d", uint8(r.Scope))
	}
	return errs
}

// validateDev applies the kernel's rules for interface names.
func validateDev(name string) error {
	switch {
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	case strings.ContainsAny(name, "/: \t\n\x00"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}

// ErrWrongTable is returned when a State names a table other than the one
// the dataplane owns.
var ErrWrongTable = errors.New("state is for another routing table")

// CheckTable reports whether s may be applied by a dataplane that owns table
// own: s.Table must be zero (meaning own) or own.
func (s State) CheckTable(own int) error {
	if s.Table != 0 && s.Table != own {
		return fmt.Errorf("%w: state table %d, dataplane owns table %d", ErrWrongTable, s.Table, own)
	}
	return nil
}
