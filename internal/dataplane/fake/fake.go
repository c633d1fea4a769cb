// Package fake is an in-memory dataplane.Dataplane for fast unit tests of
// code that programs routes (the agent). It keeps one routing table, applies
// States through dataplane.Plan exactly as the Linux adapter does, and
// renders its table as golden text.
package fake

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/terrane-net/terrane/internal/dataplane"
)

// ErrNoDevice mirrors the kernel's ENODEV: a route names an interface the
// host does not have.
var ErrNoDevice = errors.New("no such device")

// Options configure a fake Dataplane.
type Options struct {
	// Table is the table the dataplane owns (required).
	Table int
	// Devices, when non-nil, are the interfaces that exist: a route on any
	// other device fails as it would in the kernel. Nil: every device exists.
	Devices []string
}

// Dataplane is an in-memory routing table.
type Dataplane struct {
	table int

	mu      sync.Mutex
	devices map[string]bool // nil: any device exists
	routes  []dataplane.Route
	applies int
}

var _ dataplane.Dataplane = (*Dataplane)(nil)

// New returns an empty fake dataplane owning opts.Table.
func New(opts Options) (*Dataplane, error) {
	if err := dataplane.ValidateTable(opts.Table); err != nil {
		return nil, fmt.Errorf("new fake dataplane: %w", err)
	}
	f := &Dataplane{table: opts.Table}
	if opts.Devices != nil {
		f.devices = make(map[string]bool, len(opts.Devices))
		for _, d := range opts.Devices {
			f.devices[d] = true
		}
	}
	return f, nil
}

// Apply converges the table on s and returns the changes made. Routes on a
// missing device are skipped and reported in the error; the rest apply.
func (f *Dataplane) Apply(ctx context.Context, s dataplane.State) (dataplane.Diff, error) {
	if err := ctx.Err(); err != nil {
		return dataplane.Diff{}, err
	}
	if err := s.Validate(); err != nil {
		return dataplane.Diff{}, err
	}
	if err := s.CheckTable(f.table); err != nil {
		return dataplane.Diff{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	plan := dataplane.Plan(s.Routes, f.routes)

	var done dataplane.Diff
	var errs []error
	for _, r := range plan.Added {
		if err := f.checkDevice(r); err != nil {
			errs = append(errs, fmt.Errorf("add route %s: %w", r, err))
			continue
		}
		f.routes = append(f.routes, r)
		done.Added = append(done.Added, r)
	}
	for _, c := range plan.Replaced {
		if err := f.checkDevice(c.To); err != nil {
			errs = append(errs, fmt.Errorf("replace route %s: %w", c.From, err))
			continue
		}
		f.routes[slices.Index(f.routes, c.From)] = c.To
		done.Replaced = append(done.Replaced, c)
	}
	for _, r := range plan.Removed {
		f.routes = slices.DeleteFunc(f.routes, func(x dataplane.Route) bool { return x == r })
		done.Removed = append(done.Removed, r)
	}
	return done, errors.Join(errs...)
}

func (f *Dataplane) checkDevice(r dataplane.Route) error {
	if r.Dev == "" || f.devices == nil || f.devices[r.Dev] {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNoDevice, r.Dev)
}

// DeleteDevice removes an interface and, as the kernel does, every route on
// it. It is a no-op when the fake accepts every device.
func (f *Dataplane) DeleteDevice(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.devices == nil {
		return
	}
	delete(f.devices, name)
	f.routes = slices.DeleteFunc(f.routes, func(r dataplane.Route) bool { return r.Dev == name })
}

// RemoveRoute deletes the routes to dst, as another program would.
func (f *Dataplane) RemoveRoute(dst netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes = slices.DeleteFunc(f.routes, func(r dataplane.Route) bool { return r.Dst == dst })
}

// AddDevice makes an interface exist.
func (f *Dataplane) AddDevice(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.devices != nil {
		f.devices[name] = true
	}
}

// Routes returns the table's routes, normalized and sorted.
func (f *Dataplane) Routes() []dataplane.Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sorted(f.routes)
}

// Applies counts the Apply calls that reached the table.
func (f *Dataplane) Applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

// String renders the table as golden text: a "table N" line, then one route
// a line in sorted order.
func (f *Dataplane) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %d\n", f.table)
	for _, r := range f.Routes() {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func sorted(rs []dataplane.Route) []dataplane.Route {
	out := slices.Clone(rs)
	slices.SortFunc(out, dataplane.CompareRoutes)
	return out
}
