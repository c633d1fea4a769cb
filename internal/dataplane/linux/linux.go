//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/terrane-net/terrane/internal/dataplane"
)

// DefaultProtocol is the rtnetlink protocol number that marks Terrane's
// routes when Options.Protocol is zero. 250 (0xfa) is unassigned in
// /etc/iproute2/rt_protos and used by no common routing daemon.
const DefaultProtocol = 0xfa

// ErrForeignRoute is returned for a desired route whose destination is held,
// in the dataplane's table, by a route of another protocol: replacing it
// would overwrite a route Terrane does not own.
var ErrForeignRoute = errors.New("destination is held by a route of another protocol")

// Options configure a Dataplane.
type Options struct {
	// Table is the routing table the dataplane owns (required; not main,
	// local or default).
	Table int
	// Protocol marks the dataplane's routes; zero means DefaultProtocol.
	// The kernel's own numbers (0 to 4: unspec, redirect, kernel, boot,
	// static) are refused, so routes added by hand are never claimed.
	Protocol int
	// NetNS, when positive, is the network namespace to program; the
	// handle stays the caller's to close. NetNSPath names one by path
	// (/run/netns/NAME, /proc/PID/ns/net). Neither: the current namespace.
	NetNS     netns.NsHandle
	NetNSPath string
	// Logger receives one line per route changed; nil discards.
	Logger *slog.Logger
}

// Dataplane programs one routing table of one network namespace.
type Dataplane struct {
	table    int
	protocol int
	log      *slog.Logger

	mu sync.Mutex // serializes Apply: one writer owns the table
	h  *netlink.Handle
	// names are the routed devices' names by index, kept between syncs
	// (linkNames) and forgotten after namesMaxAge.
	names       map[int]string
	namesAt     time.Time
	namesMaxAge time.Duration
}

var _ dataplane.Dataplane = (*Dataplane)(nil)

// socketTimeout bounds each netlink exchange, so a wedged kernel call cannot
// hang the agent forever.
const socketTimeout = 10 * time.Second

// New opens a netlink handle in the configured namespace.
func New(opts Options) (*Dataplane, error) {
	if err := dataplane.ValidateTable(opts.Table); err != nil {
		return nil, fmt.Errorf("new linux dataplane: %w", err)
	}
	proto := opts.Protocol
	if proto == 0 {
		proto = DefaultProtocol
	}
	if proto <= 4 || proto > 255 {
		return nil, fmt.Errorf("new linux dataplane: protocol %d: want 5 to 255 (0 to 4 belong to the kernel and to routes added by hand)", proto)
	}
	if opts.NetNS > 0 && opts.NetNSPath != "" {
		return nil, errors.New("new linux dataplane: set NetNS or NetNSPath, not both")
	}
	h, err := openHandle(opts)
	if err != nil {
		return nil, fmt.Errorf("new linux dataplane: %w", err)
	}
	if err := h.SetSocketTimeout(socketTimeout); err != nil {
		h.Close()
		return nil, fmt.Errorf("new linux dataplane: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dataplane{table: opts.Table, protocol: proto, log: log, h: h, namesMaxAge: linkNamesMaxAge}, nil
}

func openHandle(opts Options) (*netlink.Handle, error) {
	switch {
	case opts.NetNSPath != "":
		ns, err := netns.GetFromPath(opts.NetNSPath)
		if err != nil {
			return nil, fmt.Errorf("open network namespace %s: %w", opts.NetNSPath, err)
		}
		// The handle's sockets keep the namespace alive; the fd is not needed.
		defer ns.Close()
		return netlink.NewHandleAt(ns, syscall.NETLINK_ROUTE)
	case opts.NetNS > 0:
		return netlink.NewHandleAt(opts.NetNS, syscall.NETLINK_ROUTE)
	}
	return netlink.NewHandle(syscall.NETLINK_ROUTE)
}

// Close releases the netlink handle. Routes stay: the kernel keeps
// forwarding while the agent restarts.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h != nil {
		d.h.Close()
		d.h = nil
	}
	return nil
}

// Table is the routing table d owns.
func (d *Dataplane) Table() int { return d.table }

// Protocol is the rtnetlink protocol number marking d's routes.
func (d *Dataplane) Protocol() int { return d.protocol }

// Routes lists d's routes (its table, its protocol), normalized and sorted.
// Routes of d's protocol that Apply would never write (multipath, a TOS, a
// source address, another metric) are left out: Apply removes them.
func (d *Dataplane) Routes(ctx context.Context) ([]dataplane.Route, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(ctx); err != nil {
		return nil, err
	}
	snap, err := d.snapshot()
	if err != nil {
		return nil, err
	}
	return snap.ours, nil
}

func (d *Dataplane) usable(ctx context.Context) error {
	if d.h == nil {
		return errors.New("linux dataplane is closed")
	}
	return ctx.Err()
}

// Apply converges d's table on s: it adds and replaces first, so traffic
// always has a route, then removes. A route that fails (a missing device, an
// unreachable next hop, a foreign route in the way) is skipped and reported
// in the joined error; the others are applied, and the returned Diff lists
// what was changed. Cancelling ctx stops between two route changes.
func (d *Dataplane) Apply(ctx context.Context, s dataplane.State) (dataplane.Diff, error) {
	if err := s.Validate(); err != nil {
		return dataplane.Diff{}, err
	}
	if err := s.CheckTable(d.table); err != nil {
		return dataplane.Diff{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.usable(ctx); err != nil {
		return dataplane.Diff{}, err
	}
	snap, err := d.snapshot()
	if err != nil {
		return dataplane.Diff{}, err
	}
	plan := dataplane.Plan(s.Routes, snap.ours)

	var (
		done  dataplane.Diff
		errs  []error
		links = snap.links
	)
	write := func(r dataplane.Route) error {
		if snap.foreignAt(r.Dst) {
			return ErrForeignRoute
		}
		nr, err := d.toNetlink(r, links)
		if err != nil {
			return err
		}
		if err := d.h.RouteReplace(nr); err != nil {
			return err
		}
		if nr.LinkIndex > 0 && d.names != nil {
			d.names[nr.LinkIndex] = r.Dev // what the next snapshot finds
		}
		return nil
	}
	for _, w := range plan.Writes() {
		if err := ctx.Err(); err != nil {
			return done, errors.Join(append(errs, err)...)
		}
		if !w.From.Dst.IsValid() { // an addition
			if err := write(w.To); err != nil {
				errs = append(errs, fmt.Errorf("add route %s table %d: %w", w.To, d.table, err))
				continue
			}
			d.log.Info("route added", "route", w.To.String(), "table", d.table)
			done.Added = append(done.Added, w.To)
			continue
		}
		if err := write(w.To); err != nil {
			errs = append(errs, fmt.Errorf("replace route %s with %s table %d: %w", w.From, w.To, d.table, err))
			continue
		}
		d.log.Info("route replaced", "from", w.From.String(), "to", w.To.String(), "table", d.table)
		done.Replaced = append(done.Replaced, w)
	}
	slices.SortFunc(done.Added, dataplane.CompareRoutes)
	slices.SortFunc(done.Replaced, func(a, b dataplane.Replacement) int { return dataplane.CompareRoutes(a.To, b.To) })
	var removals []kernelRoute
	for _, r := range plan.Removed {
		for _, nr := range snap.byRoute[r] {
			removals = append(removals, kernelRoute{r, nr})
		}
	}
	removals = append(removals, snap.odd...)
	for _, rm := range removals {
		if err := ctx.Err(); err != nil {
			return done, errors.Join(append(errs, err)...)
		}
		nr := rm.nr
		if err := d.h.RouteDel(&nr); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route %s table %d: %w", rm.r, d.table, err))
			continue
		}
		d.log.Info("route removed", "route", rm.r.String(), "table", d.table)
		if !slices.Contains(done.Removed, rm.r) {
			done.Removed = append(done.Removed, rm.r)
		}
	}
	slices.SortFunc(done.Removed, dataplane.CompareRoutes)
	return done, errors.Join(errs...)
}
