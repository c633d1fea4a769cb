package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/server"
)

// Keys of the topology ConfigMap: the file (as `terrane ctl topology apply`
// reads it) and, optionally, the planning mode and the route budgets (as
// its --mode and --route-budget; absent: the applied topology's).
const (
	TopologyKey       = "topology.yaml"
	TopologyModeKey   = "mode"
	TopologyBudgetKey = "route-budget"
)

// Event reasons recorded on the topology ConfigMap.
const (
	ReasonTopologyApplied = "TerraneTopologyApplied"
	ReasonTopologyRefused = "TerraneTopologyRefused"
)

// DefaultTopologyLeaseName is the Lease the servers elect the topology
// controller's leader with.
const DefaultTopologyLeaseName = "terrane-topology"

// Topologies is what the topology controller drives: *server.State,
// through the operations behind GET and POST /v1/topology.
type Topologies interface {
	Topology(ctx context.Context) (*api.Topology, error)
	ApplyTopology(ctx context.Context, b api.TopologyRequest) (*api.TopologyResult, error)
}

var _ Topologies = (*server.State)(nil)

// TopologyControllerOptions configure a TopologyController.
type TopologyControllerOptions struct {
	Client kubernetes.Interface
	// Namespace and Name of the ConfigMap.
	Namespace, Name string
	Log             *slog.Logger
}

// TopologyController applies the topology a ConfigMap holds, the same way
// `terrane ctl topology apply` does, whenever the ConfigMap changes (and on
// start, and every resync): while it runs, the ConfigMap is the truth, and
// a topology applied by other means is replaced by the ConfigMap's. A
// refused topology (invalid, or orphaning live state) changes nothing; the
// reason, whole, goes to a Warning Event on the ConfigMap and to the log.
// It is meant to run in one server at a time (RunLeader).
type TopologyController struct {
	o TopologyControllerOptions

	// Owned by Run's single worker: the resourceVersion of the ConfigMap
	// last refused, so a resync does not repeat its Event.
	refused string
}

// NewTopologyController fills in o's defaults.
func NewTopologyController(o TopologyControllerOptions) *TopologyController {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &TopologyController{o: o}
}

// Run watches the ConfigMap and applies its topology until ctx ends.
func (c *TopologyController) Run(ctx context.Context, state Topologies) {
	factory := informers.NewSharedInformerFactoryWithOptions(c.o.Client, defaultResync,
		informers.WithNamespace(c.o.Namespace),
		// Only this ConfigMap: the server may read no other (RBAC by name).
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", c.o.Name).String()
		}))
	cms := factory.Core().V1().ConfigMaps()
	lister := cms.Lister().ConfigMaps(c.o.Namespace)
	rec, stop := newRecorder(ctx, c.o.Client)
	defer stop()
	c.o.Log.Info("applying the topology of a ConfigMap", "configmap", c.o.Namespace+"/"+c.o.Name)
	worker{name: "terrane-topology", log: c.o.Log, factory: factory, inf: cms.Informer(),
		// Apply at start even before any change is seen.
		seed: func(context.Context) []string { return []string{c.o.Namespace + "/" + c.o.Name} },
		reconcile: func(ctx context.Context, key string) (time.Duration, error) {
			cm, err := lister.Get(c.o.Name)
			if apierrors.IsNotFound(err) {
				c.o.Log.Info("no topology ConfigMap: the applied topology stays", "configmap", key)
				return 0, nil
			}
			if err != nil {
				return 0, err
			}
			return 0, c.reconcile(ctx, state, rec, cm)
		},
	}.run(ctx)
}

// reconcile applies cm's topology; an error is worth a retry.
func (c *TopologyController) reconcile(ctx context.Context, state Topologies, rec record.EventRecorder, cm *corev1.ConfigMap) error {
	where := cm.Namespace + "/" + cm.Name
	req, err := c.request(ctx, state, cm)
	var bad *refusedInput
	if errors.As(err, &bad) {
		c.refuse(rec, cm, bad.msg)
		return nil
	}
	if err != nil {
		return err
	}
	res, err := state.ApplyTopology(ctx, req)
	if err != nil {
		if msg, refused := server.TopologyRefusal(err); refused {
			c.refuse(rec, cm, msg)
			return nil
		}
		return fmt.Errorf("apply the topology of configmap %s: %w", where, err)
	}
	c.refused = ""
	if res.Writes == 0 {
		return nil
	}
	msg := fmt.Sprintf("Terrane applied topology revision %d: %d record writes", res.Revision, res.Writes)
	if res.Replaces != 0 {
		msg = fmt.Sprintf("Terrane applied topology revision %d, replacing revision %d: %d record writes", res.Revision, res.Replaces, res.Writes)
	}
	rec.Event(cm, corev1.EventTypeNormal, ReasonTopologyApplied, msg)
	c.o.Log.Info("applied the topology of a ConfigMap", "configmap", where, "revision", res.Revision, "replaces", res.Replaces, "writes", res.Writes)
	return nil
}

// request builds the apply from cm, defaulting the mode and the budgets
// to the applied topology's. A ConfigMap that says nothing applicable is
// a refusal (see server.TopologyRefusal).
func (c *TopologyController) request(ctx context.Context, state Topologies, cm *corev1.ConfigMap) (api.TopologyRequest, error) {
	text, ok := cm.Data[TopologyKey]
	if !ok || strings.TrimSpace(text) == "" {
		return api.TopologyRequest{}, refusal(fmt.Sprintf("data.%s: the ConfigMap holds no topology; put the file there (kubectl -n %s create configmap %s --from-file=%s=FILE)", TopologyKey, cm.Namespace, cm.Name, TopologyKey))
	}
	req := api.TopologyRequest{Topology: text}
	cur, err := state.Topology(ctx)
	switch {
	case errors.Is(err, server.ErrNoTopology):
	case err != nil:
		return req, err
	default:
		req.Mode, req.Budgets = cur.Mode, cur.Budgets
	}
	if m, ok := cm.Data[TopologyModeKey]; ok {
		mode, err := ipam.ParsePlanMode(strings.TrimSpace(m))
		if err != nil {
			return req, refusal(fmt.Sprintf("data.%s: %v", TopologyModeKey, err))
		}
		req.Mode = mode.String()
	}
	if b, ok := cm.Data[TopologyBudgetKey]; ok {
		if req.Budgets, err = parseRouteBudget(b); err != nil {
			return req, refusal(fmt.Sprintf("data.%s: %v", TopologyBudgetKey, err))
		}
	}
	return req, nil
}

func (c *TopologyController) refuse(rec record.EventRecorder, cm *corev1.ConfigMap, msg string) {
	if c.refused == cm.ResourceVersion {
		return // this version was refused already
	}
	c.refused = cm.ResourceVersion
	rec.Event(cm, corev1.EventTypeWarning, ReasonTopologyRefused, "Terrane refused this topology and changed nothing: "+msg)
	c.o.Log.Warn("refused the topology of a ConfigMap; nothing changed", "configmap", cm.Namespace+"/"+cm.Name, "resource_version", cm.ResourceVersion, "reason", msg)
}

// refusedInput is a ConfigMap the controller cannot turn into a request.
type refusedInput struct{ msg string }

func (e *refusedInput) Error() string { return e.msg }

func refusal(msg string) error { return &refusedInput{msg: msg} }

// parseRouteBudget reads "vpc=50,bgp=200" (0: unbounded; a target not
// named is unbounded).
func parseRouteBudget(s string) (ipam.Budgets, error) {
	var b ipam.Budgets
	seen := map[string]bool{}
	for _, kv := range strings.Split(strings.TrimSpace(s), ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if !ok || err != nil || n < 0 {
			return b, fmt.Errorf("%q: want target=count pairs such as vpc=50,bgp=200", s)
		}
		k = strings.TrimSpace(k)
		if seen[k] {
			return b, fmt.Errorf("%q: %s is given twice", s, k)
		}
		seen[k] = true
		switch k {
		case "vpc":
			b.VPC = n
		case "bgp":
			b.BGP = n
		default:
			return b, fmt.Errorf("%q: unknown target %q; use vpc or bgp", s, k)
		}
	}
	return b, nil
}
