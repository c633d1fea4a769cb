package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/server"
)

// NetworkAnnotation on a Namespace names its default network; on a Pod,
// the pod's own network (read by terrane-cni from the CRI's pod
// annotations).
const NetworkAnnotation = "terrane.io/network"

// ReasonNetworkRefused is the Event reason on a Namespace whose annotation
// names a network it may not have.
const ReasonNetworkRefused = "TerraneNetworkRefused"

// Namespaces is what the Namespace controller drives: *server.State.
type Namespaces interface {
	NamespaceNetworks(ctx context.Context) (map[string]string, error)
	SetNamespaceNetwork(ctx context.Context, namespace, network string) ([]ipam.Change, error)
}

var _ Namespaces = (*server.State)(nil)

// NamespaceControllerOptions configure a NamespaceController.
type NamespaceControllerOptions struct {
	Client kubernetes.Interface
	Log    *slog.Logger
}

// NamespaceController keeps each namespace's default network equal to its
// annotation terrane.io/network: set when annotated, cleared when the
// annotation or the namespace goes. While it runs, the annotations are the
// truth: a default set by hand (terrane ctl namespaces set) for a namespace
// without the annotation is cleared. It is meant to run in one server at a
// time (RunLeader).
type NamespaceController struct{ o NamespaceControllerOptions }

// NewNamespaceController fills in o's defaults.
func NewNamespaceController(o NamespaceControllerOptions) *NamespaceController {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &NamespaceController{o: o}
}

// Run watches Namespaces and reconciles their default networks until ctx
// ends.
func (c *NamespaceController) Run(ctx context.Context, state Namespaces) {
	factory := informers.NewSharedInformerFactory(c.o.Client, defaultResync)
	nss := factory.Core().V1().Namespaces()
	lister := nss.Lister()
	rec, stop := newRecorder(ctx, c.o.Client)
	defer stop()
	worker{name: "terrane-namespaces", log: c.o.Log, factory: factory, inf: nss.Informer(),
		// Defaults of namespaces deleted while no controller ran.
		seed: func(ctx context.Context) []string {
			have, err := state.NamespaceNetworks(ctx)
			if err != nil {
				return nil
			}
			return slices.Sorted(maps.Keys(have))
		},
		reconcile: func(ctx context.Context, name string) (time.Duration, error) {
			return c.reconcile(ctx, state, lister.Get, rec, name)
		},
	}.run(ctx)
}

func (c *NamespaceController) reconcile(ctx context.Context, state Namespaces, get func(string) (*corev1.Namespace, error), rec record.EventRecorder, name string) (retry time.Duration, err error) {
	ns, err := get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	want := ""
	if ns != nil && ns.DeletionTimestamp == nil {
		want = ns.Annotations[NetworkAnnotation]
	}
	have, err := state.NamespaceNetworks(ctx)
	if err != nil {
		return 0, err
	}
	if have[name] == want {
		return 0, nil
	}
	_, err = state.SetNamespaceNetwork(ctx, name, want)
	switch {
	case errors.Is(err, server.ErrNoTopology):
		return noTopologyRetry, nil
	case errors.Is(err, ipam.ErrNotFound), errors.Is(err, ipam.ErrInvalid):
		if ns != nil {
			rec.Event(ns, corev1.EventTypeWarning, ReasonNetworkRefused, fmt.Sprintf("Terrane cannot make %s=%q this namespace's default network: %v", NetworkAnnotation, want, err))
		}
		// The old default, if any, no longer says what the annotation
		// does: clear it rather than keep a stale one.
		if have[name] != "" {
			if _, cerr := state.SetNamespaceNetwork(ctx, name, ""); cerr != nil {
				return 0, cerr
			}
		}
		return 0, nil
	case err != nil:
		return 0, err
	}
	c.o.Log.Info("namespace default network", "namespace", name, "network", want, "was", have[name])
	return 0, nil
}
