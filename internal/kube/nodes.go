package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/server"
)

// ManagedLabel marks a host the Node controller registered: only such a
// host is removed when its Node is gone (hosts an admin registered by
// hand, hypervisors without a Node, are left alone). Its value is
// ManagedValue.
const (
	ManagedLabel = "terrane.io/managed-by"
	ManagedValue = "node-controller"
)

// Defaults of NodeControllerOptions.
const (
	// DefaultNodeGrace is how long a deleted Node's host is kept: a Node
	// deleted and re-created (a kubelet re-registering) keeps its blocks.
	DefaultNodeGrace = 5 * time.Minute
	// defaultRecheck spaces the checks of a gone Node's host whose agent
	// still reports addresses in use.
	defaultRecheck = 30 * time.Second
	// defaultResync re-places every Node periodically: a topology change
	// may admit a Node no group admitted.
	defaultResync = 5 * time.Minute
	// noTopologyRetry spaces attempts while no topology is applied.
	noTopologyRetry = 10 * time.Second
)

// Event reasons recorded on Nodes.
const (
	ReasonRegistered  = "TerraneHostRegistered"
	ReasonMoved       = "TerraneHostMoved"
	ReasonUnplaceable = "TerraneNoGroup"
	ReasonNotMoved    = "TerraneHostNotMoved"
	ReasonRejected    = "TerraneHostRejected"
)

// Hosts is what the Node controller drives: *server.State, through the
// same operations as the API.
type Hosts interface {
	Hosts(ctx context.Context) ([]ipam.HostInfo, error)
	RegisterHost(ctx context.Context, h ipam.HostSpec) ([]ipam.Change, error)
	AddressesInUse(ctx context.Context, host string) (int, error)
	RemoveHost(ctx context.Context, host string) ([]ipam.Change, error)
}

var _ Hosts = (*server.State)(nil)

// NodeControllerOptions configure a NodeController.
type NodeControllerOptions struct {
	Client kubernetes.Interface
	// Grace: a host is removed no sooner than this after its Node was seen
	// gone (default DefaultNodeGrace; 0 is taken as the default, use a
	// nanosecond for "at once").
	Grace time.Duration
	// Recheck spaces the checks of a gone Node's host that still has
	// addresses in use (default 30 s).
	Recheck time.Duration
	// Resync re-places every Node this often (default 5 minutes).
	Resync time.Duration
	Log    *slog.Logger
}

// NodeController keeps one host per Node: the Node's labels (they place
// it in the topology) and its InternalIP. It is meant to run in one server
// at a time (RunLeader).
type NodeController struct {
	o NodeControllerOptions

	// Owned by Run's single worker.
	missing map[string]time.Time // host → when its Node was first seen gone
}

// NewNodeController fills in o's defaults.
func NewNodeController(o NodeControllerOptions) *NodeController {
	if o.Grace == 0 {
		o.Grace = DefaultNodeGrace
	}
	if o.Recheck == 0 {
		o.Recheck = defaultRecheck
	}
	if o.Resync == 0 {
		o.Resync = defaultResync
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &NodeController{o: o, missing: map[string]time.Time{}}
}

// Run watches Nodes and reconciles hosts until ctx ends.
func (c *NodeController) Run(ctx context.Context, hosts Hosts) {
	factory := informers.NewSharedInformerFactory(c.o.Client, c.o.Resync)
	nodes := factory.Core().V1().Nodes()
	lister := nodes.Lister()
	rec, stop := newRecorder(ctx, c.o.Client)
	defer stop()
	c.o.Log.Info("reconciling nodes as hosts", "grace", c.o.Grace)
	worker{name: "terrane-nodes", log: c.o.Log, factory: factory, inf: nodes.Informer(),
		// Hosts whose Node went while no controller ran: their grace starts now.
		seed: func(ctx context.Context) []string {
			var names []string
			if hs, err := hosts.Hosts(ctx); err == nil {
				for _, h := range hs {
					if h.Labels[ManagedLabel] == ManagedValue {
						names = append(names, h.Name)
					}
				}
			}
			return names
		},
		reconcile: func(ctx context.Context, name string) (time.Duration, error) {
			return c.reconcile(ctx, hosts, lister, rec, name)
		},
	}.run(ctx)
}

// reconcile makes the host match the Node; it returns when to look again
// (0: on the next change).
func (c *NodeController) reconcile(ctx context.Context, hosts Hosts, lister corelisters.NodeLister, rec record.EventRecorder, name string) (time.Duration, error) {
	node, err := lister.Get(name)
	if apierrors.IsNotFound(err) {
		return c.gone(ctx, hosts, name)
	}
	if err != nil {
		return 0, err
	}
	delete(c.missing, name)
	if err := api.ValidateName("host", name); err != nil {
		rec.Event(node, corev1.EventTypeWarning, ReasonRejected, fmt.Sprintf("Terrane cannot register this Node as a host: %v", err))
		return 0, nil
	}
	spec := HostSpec(node)
	changes, err := hosts.RegisterHost(ctx, spec)
	switch {
	case errors.Is(err, server.ErrNoTopology):
		return noTopologyRetry, nil
	case errors.Is(err, ipam.ErrNoGroup):
		registered, herr := isRegistered(ctx, hosts, name)
		if herr != nil {
			return 0, herr
		}
		if registered {
			rec.Event(node, corev1.EventTypeWarning, ReasonNotMoved, "Terrane keeps the host in its groups: its new labels place it nowhere: "+err.Error())
		} else {
			rec.Event(node, corev1.EventTypeWarning, ReasonUnplaceable, "Terrane cannot place this Node in its topology: "+err.Error())
		}
		return 0, nil // a Node or topology change (resync) tries again
	case errors.Is(err, ipam.ErrInvalid), errors.Is(err, ipam.ErrConflict):
		rec.Event(node, corev1.EventTypeWarning, ReasonRejected, "Terrane refused the host: "+err.Error())
		return 0, nil
	case err != nil:
		return 0, err
	}
	for _, ch := range changes {
		switch {
		case ch.Kind == ipam.HostJoined && ch.Host == name:
			rec.Event(node, corev1.EventTypeNormal, ReasonRegistered, "Terrane host in groups "+formatGroups(ch.Groups))
			c.o.Log.Info("registered a node as a host", "node", name, "ip", spec.IP, "groups", ch.Groups)
		case ch.Kind == ipam.HostUpdated && ch.Host == name && ch.Old != nil && !maps.Equal(ch.Old.Groups, ch.Groups):
			rec.Event(node, corev1.EventTypeNormal, ReasonMoved, "Terrane host moved to groups "+formatGroups(ch.Groups)+" (blocks in the old groups stay until empty)")
			c.o.Log.Info("moved a node's host", "node", name, "groups", ch.Groups, "from", ch.Old.Groups)
		}
	}
	return 0, nil
}

// gone removes the host of a deleted Node once the grace period has
// passed and its agent reports no address in use.
func (c *NodeController) gone(ctx context.Context, hosts Hosts, name string) (time.Duration, error) {
	hs, err := hosts.Hosts(ctx)
	if err != nil {
		return 0, err
	}
	managed := false
	for _, h := range hs {
		if h.Name == name {
			managed = h.Labels[ManagedLabel] == ManagedValue
		}
	}
	if !managed {
		delete(c.missing, name)
		return 0, nil
	}
	now := time.Now()
	since, ok := c.missing[name]
	if !ok {
		since = now
		c.missing[name] = now
		c.o.Log.Info("node deleted; its host is removed after the grace period", "node", name, "grace", c.o.Grace)
	}
	if left := c.o.Grace - now.Sub(since); left > 0 {
		return left, nil
	}
	inUse, err := hosts.AddressesInUse(ctx, name)
	if err != nil {
		return 0, err
	}
	if inUse > 0 {
		c.o.Log.Warn("deleted node's host kept: its agent reports addresses in use", "node", name, "in_use", inUse)
		return c.o.Recheck, nil
	}
	if _, err := hosts.RemoveHost(ctx, name); err != nil && !errors.Is(err, ipam.ErrNotFound) {
		return 0, err
	}
	delete(c.missing, name)
	c.o.Log.Info("removed the host of a deleted node", "node", name)
	return 0, nil
}

func isRegistered(ctx context.Context, hosts Hosts, name string) (bool, error) {
	hs, err := hosts.Hosts(ctx)
	if err != nil {
		return false, err
	}
	for _, h := range hs {
		if h.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// HostSpec is the host a Node stands for: its name, its labels (and
// ManagedLabel) and its first InternalIP, IPv4 before IPv6, and on a
// dual-stack Node its first IPv6 InternalIP as the host's IPv6 address.
func HostSpec(n *corev1.Node) ipam.HostSpec {
	labels := maps.Clone(n.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[ManagedLabel] = ManagedValue
	var ip netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if x, err := netip.ParseAddr(a.Address); err == nil && (!ip.IsValid() || (x.Unmap().Is4() && !ip.Is4())) {
			ip = x.Unmap()
		}
	}
	var ip6 netip.Addr
	if ip.Is4() {
		for _, a := range n.Status.Addresses {
			if x, err := netip.ParseAddr(a.Address); a.Type == corev1.NodeInternalIP && err == nil && x.Is6() && !x.Is4In6() && !ip6.IsValid() {
				ip6 = x
			}
		}
	}
	return ipam.HostSpec{Name: n.Name, IP: ip, IP6: ip6, Labels: labels}
}

func formatGroups(g map[string]string) string {
	parts := make([]string, 0, len(g))
	for _, n := range slices.Sorted(maps.Keys(g)) {
		parts = append(parts, n+"="+g[n])
	}
	return strings.Join(parts, ", ")
}
