package kube

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/server"
)

// Defaults of PodControllerOptions.
const (
	// DefaultPodOrphanGrace is how long an address must have been marked
	// orphaned before its release is requested.
	DefaultPodOrphanGrace = 2 * time.Minute
	// defaultPodSettle: a candidate is marked once it has been one this
	// long, and only if its address was handed out at least this long
	// ago. An agent reports a change within its ReportMax (10 s): a
	// normal DEL, or an ADD racing the Pod informer, is never marked.
	defaultPodSettle = 15 * time.Second
	// defaultPodInterval re-checks every host this often: reports change
	// without an event the controller could watch.
	defaultPodInterval = 30 * time.Second
)

// ReasonOrphanReleased is the Event reason on a Node whose agent is asked
// to release the address of a pod that no longer exists.
const ReasonOrphanReleased = "TerraneOrphanReleased"

// MirrorAnnotation on a static pod's mirror Pod holds the static pod's own
// UID, which the kubelet and the runtime (K8S_POD_UID) know it by.
const MirrorAnnotation = "kubernetes.io/config.mirror"

// Orphans is what the Pod controller reads and writes: *server.State.
type Orphans interface {
	Reports(ctx context.Context) ([]ipam.HostReport, error)
	Report(ctx context.Context, host string) (ipam.HostReport, bool, error)
	Orphans(ctx context.Context) ([]ipam.HostOrphans, error)
	PublishOrphans(ctx context.Context, host string, marks []ipam.OrphanedAddress) error
	Releases(ctx context.Context, host string) ([]ipam.OrphanedAddress, error)
	SetReleases(ctx context.Context, host string, rels []ipam.OrphanedAddress) (int, error)
}

var _ Orphans = (*server.State)(nil)

// PodControllerOptions configure a PodController.
type PodControllerOptions struct {
	Client kubernetes.Interface
	// Grace: a release is requested no sooner than this after the address
	// was first seen orphaned (default DefaultPodOrphanGrace).
	Grace time.Duration
	// Settle: see defaultPodSettle (default 15 s; tests shorten it).
	Settle time.Duration
	// Interval: every host is looked at again this often (default 30 s).
	Interval time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	Log *slog.Logger
}

// PodController finds the pod addresses whose Pod no longer exists (gone,
// re-created with another UID, bound to another node), marks them, and
// once a mark has outlived the grace and a fresh read of the Pod from the
// API server confirms it, asks the host's agent to release the address.
// It is meant to run in one server at a time (RunLeader): the marks live
// in its memory, so a new leader starts every grace afresh.
type PodController struct {
	o PodControllerOptions

	// Owned by Run's single worker.
	noticed map[string][]ipam.OrphanedAddress // host → candidates, since first seen
	// published are the marks this leader last wrote per host: an
	// unchanged set is not read back from the store on every pass.
	published map[string][]ipam.OrphanedAddress
	rec       record.EventRecorder // set by Run
}

// NewPodController fills in o's defaults.
func NewPodController(o PodControllerOptions) *PodController {
	if o.Grace == 0 {
		o.Grace = DefaultPodOrphanGrace
	}
	if o.Settle == 0 {
		o.Settle = defaultPodSettle
	}
	if o.Interval == 0 {
		o.Interval = defaultPodInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &PodController{o: o, noticed: map[string][]ipam.OrphanedAddress{}, published: map[string][]ipam.OrphanedAddress{}}
}

// Run watches Pods and Nodes and reconciles each host's orphaned pod
// addresses until ctx ends. The queue is keyed by host (a Pod's node).
func (c *PodController) Run(ctx context.Context, state Orphans) {
	// Only what the decision needs is kept of a Pod: a cluster's Pods are
	// many.
	factory := informers.NewSharedInformerFactoryWithOptions(c.o.Client, defaultResync, informers.WithTransform(slimPod))
	pods, nodes := factory.Core().V1().Pods(), factory.Core().V1().Nodes()
	podLister, nodeLister := pods.Lister(), nodes.Lister()
	rec, stop := newRecorder(ctx, c.o.Client)
	defer stop()
	c.rec = rec
	c.o.Log.Info("releasing the addresses of pods that no longer exist", "grace", c.o.Grace, "settle", c.o.Settle)
	worker{name: "terrane-pods", log: c.o.Log, factory: factory, inf: pods.Informer(), also: []cache.SharedIndexInformer{nodes.Informer()},
		key: podNode,
		// Every host with a report, marks or requests: orphans of pods
		// deleted while no controller ran, and records an earlier leader
		// left behind.
		seed: func(ctx context.Context) []string {
			hosts := map[string]bool{}
			if rs, err := state.Reports(ctx); err == nil {
				for _, r := range rs {
					hosts[r.Host] = true
				}
			}
			if os, err := state.Orphans(ctx); err == nil {
				for _, o := range os {
					hosts[o.Host] = true
				}
			}
			return slices.Sorted(maps.Keys(hosts))
		},
		reconcile: func(ctx context.Context, host string) (time.Duration, error) {
			return c.reconcile(ctx, state, podLister, nodeLister, host)
		},
	}.run(ctx)
}

// podNode keys a Pod event by the Pod's node: its host's addresses are
// what the event may change.
func podNode(obj any) (string, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" {
		return "", false
	}
	return p.Spec.NodeName, true
}

// slimPod keeps of a Pod its name, UID, node and mirror annotation.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion, DeletionTimestamp: p.DeletionTimestamp},
		Spec:       corev1.PodSpec{NodeName: p.Spec.NodeName},
	}
	if m := p.Annotations[MirrorAnnotation]; m != "" {
		slim.Annotations = map[string]string{MirrorAnnotation: m}
	}
	return slim, nil
}

// podObject is what the decision knows of p.
func podObject(p *corev1.Pod) ipam.PodObject {
	o := ipam.PodObject{UIDs: []string{string(p.UID)}, Node: p.Spec.NodeName}
	if m := p.Annotations[MirrorAnnotation]; m != "" {
		o.UIDs = append(o.UIDs, m)
	}
	return o
}

// reconcile runs one pass of the two phases over host; it returns when to
// look again.
func (c *PodController) reconcile(ctx context.Context, state Orphans, pods corelisters.PodLister, nodes corelisters.NodeLister, host string) (time.Duration, error) {
	_, err := nodes.Get(host)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	report, reported, rerr := state.Report(ctx, host)
	if rerr != nil {
		return 0, rerr
	}
	if apierrors.IsNotFound(err) || !reported {
		// Not a Node (a hypervisor, a host an admin registered), or no
		// report: nothing here is the controller's to touch. Marks and
		// requests it left earlier go.
		delete(c.noticed, host)
		if err := c.publish(ctx, state, host, nil); err != nil {
			return 0, err
		}
		if _, err := state.SetReleases(ctx, host, nil); err != nil {
			return 0, err
		}
		if apierrors.IsNotFound(err) && !reported {
			return 0, nil // neither a Node nor a report: a Pod event brings it back
		}
		// A report may come, or the host become a Node, without an event.
		return c.o.Interval, nil
	}
	objs := map[string]ipam.PodObject{}
	for _, ad := range report.Addresses {
		ns, name, ok := strings.Cut(ad.Pod, "/")
		if !ok {
			continue
		}
		p, err := pods.Pods(ns).Get(name)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return 0, err
		default:
			objs[ad.Pod] = podObject(p)
		}
	}
	requested, err := state.Releases(ctx, host)
	if err != nil {
		return 0, err
	}
	now := c.o.Now()
	pass := ipam.PlanOrphans(report, objs, c.noticed[host], requested, ipam.OrphanOptions{Now: now, Settle: c.o.Settle, Grace: c.o.Grace})
	c.noticed[host] = pass.Noticed
	if len(pass.Noticed) == 0 {
		delete(c.noticed, host)
	}

	// Phase 2: what fell due is checked against the API server itself,
	// not the informer's cache, which may lag.
	confirmed, err := c.confirm(ctx, host, report, pass.Due)
	if err != nil {
		return 0, err
	}
	rels := slices.DeleteFunc(slices.Clone(requested), func(r ipam.OrphanedAddress) bool {
		return slices.ContainsFunc(pass.Done, func(d ipam.OrphanedAddress) bool { return d.Key() == r.Key() })
	})
	var marks []ipam.OrphanedAddress
	for _, m := range pass.Marks {
		if slices.ContainsFunc(pass.Due, func(d ipam.OrphanedAddress) bool { return d.Key() == m.Key() }) {
			r, ok := confirmed[m.Key()]
			if !ok {
				continue // the Pod is there after all: unmarked
			}
			r.Requested = now
			rels = append(rels, r)
			m = r
		}
		marks = append(marks, m)
	}
	for _, d := range pass.Done {
		c.o.Log.Info("orphaned pod address released", "host", host, "addr", d.Addr, "pod", d.Pod, "attachment", d.Attachment)
	}
	if _, err := state.SetReleases(ctx, host, sortOrphans(rels)); err != nil {
		return 0, err
	}
	for _, r := range rels {
		if r.Requested.Equal(now) {
			c.o.Log.Info("release of an orphaned pod address requested", "host", host, "addr", r.Addr, "pod", r.Pod, "attachment", r.Attachment, "reason", r.Reason, "marked_since", r.Since)
			if c.rec != nil {
				node := &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: host}
				c.rec.Event(node, corev1.EventTypeNormal, ReasonOrphanReleased, fmt.Sprintf("Terrane asked this node's agent to release %s (attachment %s): %s (marked since %s)", r.Addr, r.Attachment, r.Detail, r.Since.UTC().Format(time.RFC3339)))
			}
		}
	}
	if err := c.publish(ctx, state, host, sortOrphans(marks)); err != nil {
		return 0, err
	}
	return c.next(host, now), nil
}

// publish writes host's marks unless they are what this leader last wrote.
func (c *PodController) publish(ctx context.Context, state Orphans, host string, marks []ipam.OrphanedAddress) error {
	if last, ok := c.published[host]; ok && slices.Equal(last, marks) {
		return nil
	}
	if err := state.PublishOrphans(ctx, host, marks); err != nil {
		return err
	}
	if len(marks) == 0 {
		marks = []ipam.OrphanedAddress{} // published as none: not nil, which means unknown
	}
	c.published[host] = marks
	return nil
}

// confirm reads the Pod of each due address (and the host's Node) from the
// API server: only those still orphaned are returned, with the reason the
// fresh read gives. A due address whose Pod turns out to exist as reported
// is forgotten (the informer lagged), so its grace starts again if it is
// ever a candidate again.
func (c *PodController) confirm(ctx context.Context, host string, report ipam.HostReport, due []ipam.OrphanedAddress) (map[ipam.OrphanKey]ipam.OrphanedAddress, error) {
	out := map[ipam.OrphanKey]ipam.OrphanedAddress{}
	if len(due) == 0 {
		return out, nil
	}
	if _, err := c.o.Client.CoreV1().Nodes().Get(ctx, host, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			c.o.Log.Info("host is no Node any more: no release requested", "host", host)
			delete(c.noticed, host)
			return out, nil
		}
		return nil, fmt.Errorf("read node %s: %w", host, err)
	}
	for _, d := range due {
		ad, held := reportedHolding(report, d.Key())
		if !held {
			continue
		}
		ns, name, _ := strings.Cut(d.Pod, "/")
		p, err := c.o.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		var obj ipam.PodObject
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("read pod %s: %w", d.Pod, err)
		default:
			obj = podObject(p)
		}
		reason, detail := ipam.IsOrphan(host, ad, obj, err == nil)
		if reason == "" {
			c.o.Log.Info("orphan mark dropped: the API server has the pod as reported", "host", host, "addr", d.Addr, "pod", d.Pod)
			c.forget(host, d.Key())
			continue
		}
		d.Reason, d.Detail = reason, detail
		out[d.Key()] = d
	}
	return out, nil
}

func reportedHolding(r ipam.HostReport, k ipam.OrphanKey) (ipam.ReportedAddress, bool) {
	for _, ad := range r.Addresses {
		if ad.Key() == k.AddressKey && ad.Attachment == k.Attachment {
			return ad, true
		}
	}
	return ipam.ReportedAddress{}, false
}

func (c *PodController) forget(host string, k ipam.OrphanKey) {
	c.noticed[host] = slices.DeleteFunc(c.noticed[host], func(m ipam.OrphanedAddress) bool { return m.Key() == k })
}

// next is when host wants looking at again: when its next candidate
// settles or falls due, at the latest after Interval.
func (c *PodController) next(host string, now time.Time) time.Duration {
	after := c.o.Interval
	for _, m := range c.noticed[host] {
		for _, t := range []time.Time{m.Since.Add(c.o.Settle), m.Due} {
			if d := t.Sub(now); d > 0 && d < after {
				after = d
			}
		}
	}
	return max(after, time.Millisecond)
}

func sortOrphans(s []ipam.OrphanedAddress) []ipam.OrphanedAddress {
	slices.SortFunc(s, func(x, y ipam.OrphanedAddress) int {
		if c := strings.Compare(x.Network, y.Network); c != 0 {
			return c
		}
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		return strings.Compare(x.Attachment, y.Attachment)
	})
	return s
}
