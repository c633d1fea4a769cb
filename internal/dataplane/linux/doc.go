// Package linux is the kernel adapter of the dataplane: it converges a host's
// routing table on a dataplane.State through rtnetlink. It is the only
// package that imports github.com/vishvananda/netlink.
//
// A Dataplane owns one routing table and one rtnetlink protocol number: the
// routes it manages are exactly those in its table marked with its protocol.
// Apply lists them (IPv4 and IPv6), plans the difference with dataplane.Plan
// and applies only that difference, with RouteReplace (make before break) and
// then RouteDel. It never flushes, and never touches a route of another table
// or protocol: when one occupies a destination the State wants, the route is
// refused with ErrForeignRoute instead of being overwritten. Policy rules
// that steer traffic into the table are the agent's business, not this
// package's.
package linux
