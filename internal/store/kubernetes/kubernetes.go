// Package kubernetes implements store.Store on the Kubernetes API: every
// record is a StoreRecord custom resource (terrane.io/v1alpha1) in one
// namespace, and one more object of that kind, the head, is the store's
// serialization point. The Kubernetes API offers compare-and-swap on one
// object's resourceVersion but no multi-object transaction; a Txn therefore
// commits by one CAS on the head that records the whole transaction as
// pending, and is then applied to the record objects, each write fenced by
// the resourceVersion the commit read, by its writer or by whoever finds it
// pending. Readers overlay the pending transaction, so they never see half
// of one. Watch follows the record objects through the API's watch. The
// design, its invariants and limits: docs/design/store-kubernetes.md.
package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/terrane-net/terrane/internal/store"
)

// DefaultNamespace holds the store's objects when Config.Namespace is empty.
const DefaultNamespace = "terrane-system"

// Config says where the store lives.
type Config struct {
	// REST reaches the API server. When nil, Kubeconfig is loaded.
	REST *rest.Config
	// Kubeconfig is the path of a kubeconfig file (its current context);
	// "" with REST nil means the in-cluster service account.
	Kubeconfig string
	// Namespace holds the store's objects; "" means DefaultNamespace. It
	// must exist. Several stores can share a cluster in different
	// namespaces.
	Namespace string
}

// Store is a store.Store on the Kubernetes API.
type Store struct {
	ns string
	// rc carries the hot paths (get, list, create, update) as raw JSON
	// straight into this package's types; res (the dynamic client) the
	// rest.
	rc   rest.Interface
	res  dynamic.ResourceInterface
	path string // of the namespace's StoreRecord collection
	// commitMu serialises this process's commits (see Txn).
	commitMu sync.Mutex
	// watchTimeout, when set, makes the API server end every watch after
	// it (whole seconds), as it does by itself after minutes: tests use it
	// to exercise re-opening.
	watchTimeout time.Duration
	// reopens counts API watches opened after the first, per store.
	reopens atomic.Int64
	// closed ends running watches when the store is closed.
	closed    chan struct{}
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// New connects to the API server and creates the store's head in the
// namespace if it is not there yet. The StoreRecord CRD must be installed
// (InstallCRDs, or kubectl apply -f deploy/kubernetes/crds/).
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	rc, err := cfg.restConfig()
	if err != nil {
		return nil, fmt.Errorf("open kubernetes store: %w", err)
	}
	if rc.QPS == 0 {
		// Every Txn is several requests; client-go's default of 5 per
		// second would throttle a busy server to a crawl.
		rc.QPS, rc.Burst = 200, 400
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("open kubernetes store: %w", err)
	}
	raw, err := rest.UnversionedRESTClientFor(dynamic.ConfigFor(rc))
	if err != nil {
		return nil, fmt.Errorf("open kubernetes store: %w", err)
	}
	s := &Store{
		ns:     cfg.Namespace,
		rc:     raw,
		res:    dyn.Resource(recordsGVR).Namespace(cfg.Namespace),
		path:   "/apis/" + apiVersion + "/namespaces/" + cfg.Namespace + "/" + resource,
		closed: make(chan struct{}),
	}
	if err := s.ensureHead(ctx); err != nil {
		return nil, fmt.Errorf("open kubernetes store in namespace %s: %w", cfg.Namespace, err)
	}
	return s, nil
}

// restConfig is a copy of REST, or the kubeconfig's, or the in-cluster
// configuration.
func (cfg Config) restConfig() (*rest.Config, error) {
	if cfg.REST != nil {
		return rest.CopyConfig(cfg.REST), nil
	}
	if cfg.Kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no kubeconfig given and not in a cluster: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	return rc, nil
}

// ensureHead creates the head at revision 1 (as a new etcd or bolt store
// starts) with its creation as the first commit a watch can start from.
func (s *Store) ensureHead(ctx context.Context) error {
	h := &object{
		APIVersion: apiVersion, Kind: kind,
		Metadata: objectMeta{Name: headName, Namespace: s.ns, Labels: map[string]string{objectLabel: headName}},
		Spec:     spec{Revision: 1, Head: &headSpec{}},
	}
	created, err := s.create(ctx, h)
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if apierrors.IsNotFound(err) {
		var se apierrors.APIStatus
		if errors.As(err, &se) && se.Status().Details != nil && se.Status().Details.Kind == "namespaces" {
			return fmt.Errorf("namespace %s does not exist (create it: kubectl create namespace %s): %w", s.ns, s.ns, err)
		}
		return fmt.Errorf("the %s custom resource is not served (install it: kubectl apply -f deploy/kubernetes/crds/): %w", CRDName, err)
	}
	if err != nil {
		return fmt.Errorf("create head: %w", err)
	}
	created.Spec.Head.Commits = []commit{{Revision: 1, ResourceVersion: created.Metadata.ResourceVersion}}
	if _, err := s.update(ctx, created); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("record the head's first commit: %w", err)
	}
	return nil
}

// Get implements store.Store: one consistent read of the head and the
// record; the pending transaction, if it writes key, is the answer,
// otherwise the record is (every transaction before the pending one is fully
// applied).
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := store.CheckKey(key); err != nil {
		return store.KV{}, fmt.Errorf("get: %w", err)
	}
	_, recs, err := s.read(ctx, []string{key})
	if err != nil {
		return store.KV{}, fmt.Errorf("get %q: %w", key, err)
	}
	o := recs[key]
	if o == nil || o.Spec.Deleted {
		return store.KV{}, fmt.Errorf("get %q: %w", key, store.ErrNotFound)
	}
	return o.kv(), nil
}

// List implements store.Store. One API list of the namespace is one
// consistent etcd read holding the head and every record, so overlaying the
// head's pending transaction gives exactly the state at the head's revision.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	head, recs, _, err := s.snapshot(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("list %q: %w", prefix, err)
	}
	var kvs []store.KV
	for key, o := range recs {
		if strings.HasPrefix(key, prefix) && !o.Spec.Deleted {
			kvs = append(kvs, o.kv())
		}
	}
	slices.SortFunc(kvs, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	return kvs, head.Spec.Revision, nil
}

// snapshot lists the namespace: the head, every record by key with the
// pending transaction overlaid (tombstones included), and the list's
// resourceVersion.
func (s *Store) snapshot(ctx context.Context) (*object, map[string]*object, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, "", err
	}
	var list struct {
		Metadata objectMeta `json:"metadata"`
		Items    []*object  `json:"items"`
	}
	if err := s.call(ctx, s.rc.Get().AbsPath(s.path), &list); err != nil {
		return nil, nil, "", err
	}
	var head *object
	recs := make(map[string]*object, len(list.Items))
	for _, o := range list.Items {
		if o.Metadata.Name == headName {
			head = o
			continue
		}
		recs[o.key()] = o
	}
	if head == nil || head.Spec.Head == nil {
		return nil, nil, "", fmt.Errorf("the store's head object %s/%s is missing", s.ns, headName)
	}
	if p := head.Spec.Head.Pending; p != nil {
		for _, op := range p.Ops {
			recs[op.key()] = recordFor(s.ns, op, p.Revision)
		}
	}
	return head, recs, list.Metadata.ResourceVersion, nil
}

// read reads the head and the records of keys in one consistent list (by
// their labels) and returns them with the head's pending transaction
// overlaid; tombstones included, absent keys missing.
func (s *Store) read(ctx context.Context, keys []string) (*object, map[string]*object, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	labels := []string{headName}
	seen := map[string]bool{}
	for _, k := range keys {
		if l := labelFor(k); !seen[l] {
			seen[l] = true
			labels = append(labels, l)
		}
	}
	var list struct {
		Items []*object `json:"items"`
	}
	req := s.rc.Get().AbsPath(s.path).Param("labelSelector", objectLabel+" in ("+strings.Join(labels, ",")+")")
	if err := s.call(ctx, req, &list); err != nil {
		return nil, nil, err
	}
	var head *object
	recs := make(map[string]*object, len(keys))
	for _, o := range list.Items {
		switch {
		case o.Metadata.Name == headName:
			head = o
		case slices.Contains(keys, o.key()):
			recs[o.key()] = o
		default:
			// Another key with the same label: the hash collided.
		}
	}
	if head == nil || head.Spec.Head == nil {
		return nil, nil, fmt.Errorf("the store's head object %s/%s is missing", s.ns, headName)
	}
	if p := head.Spec.Head.Pending; p != nil {
		for _, op := range p.Ops {
			if slices.Contains(keys, op.key()) {
				recs[op.key()] = recordFor(s.ns, op, p.Revision)
			}
		}
	}
	return head, recs, nil
}

// Close implements store.Store: running watches end with an error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// head reads the head object.
func (s *Store) head(ctx context.Context) (*object, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var o object
	if err := s.call(ctx, s.rc.Get().AbsPath(s.path, headName), &o); err != nil {
		return nil, fmt.Errorf("read head: %w", err)
	}
	if o.Spec.Head == nil {
		return nil, fmt.Errorf("object %s/%s is not a store head", s.ns, headName)
	}
	return &o, nil
}

func (s *Store) create(ctx context.Context, o *object) (*object, error) {
	body, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var out object
	if err := s.call(ctx, s.rc.Post().AbsPath(s.path).Body(body), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// update writes o if its resourceVersion is still the object's: the API's
// compare-and-swap.
func (s *Store) update(ctx context.Context, o *object) (*object, error) {
	if o.Metadata.ResourceVersion == "" {
		return nil, fmt.Errorf("update %s without a resourceVersion", o.Metadata.Name)
	}
	body, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var out object
	if err := s.call(ctx, s.rc.Put().AbsPath(s.path, o.Metadata.Name).Body(body), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// call runs req and decodes its JSON answer into out; API errors come back
// as the usual *errors.StatusError.
func (s *Store) call(ctx context.Context, req *rest.Request, out any) error {
	res := req.Do(ctx)
	if err := res.Error(); err != nil {
		return err
	}
	raw, err := res.Raw()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode %s: %w", kind, err)
	}
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
