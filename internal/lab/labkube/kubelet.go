package labkube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// PodRef names a Pod the lab kubelet wires.
type PodRef struct {
	Namespace, Name string
	UID             string
	// Node is the pod's spec.nodeName: a lab host.
	Node        string
	Annotations map[string]string
}

// Key is namespace/name.
func (p PodRef) Key() string { return p.Namespace + "/" + p.Name }

// Wirer does what a container runtime does for the lab kubelet.
type Wirer interface {
	// Wire makes the pod's network namespace, runs CNI ADD on its host
	// and records the pod; for a pod already wired with this UID it only
	// returns its addresses.
	Wire(ctx context.Context, p PodRef) ([]netip.Addr, error)
	// Unwire runs CNI DEL, removes the namespace and forgets the pod; a
	// pod not wired is no error.
	Unwire(ctx context.Context, p PodRef) error
	// Wired lists the pods wired now.
	Wired() ([]PodRef, error)
	// NodeChanged tells that a host's Node exists (again) or is gone: the
	// lab runs the host's agent only while its Node exists, as a
	// DaemonSet would.
	NodeChanged(ctx context.Context, node string, exists bool) error
}

// KubeletOptions configure RunKubelet.
type KubeletOptions struct {
	Client kubernetes.Interface
	// Nodes are the lab's hosts by name: their addresses (status.hostIP)
	// and labels, which the kubelet keeps on their Nodes.
	Nodes map[string]NodeSpec
	Wirer Wirer
	Log   *slog.Logger
	// Workers wire pods in parallel, as a runtime starts a node's pods
	// (default 4; one pod is never handled by two at once).
	Workers int
	// Ready is called once the caches are synced and the pods wired
	// before the kubelet started are reconciled.
	Ready func()
}

// maxWireAttempts: a pod whose CNI ADD fails this often is marked Failed
// with the error (a real kubelet retries forever; the lab says why).
const maxWireAttempts = 3

const nodeKeyPrefix = "node:"

// RunKubelet watches the Pods bound to the lab's hosts and wires them:
// a new Pod gets a network namespace and CNI ADD (Wirer.Wire), then its
// status (Running, podIP, podIPs, hostIP); a Pod being deleted (graceful
// deletion sets its deletionTimestamp, and the API keeps the object for
// its kubelet) gets CNI DEL (Wirer.Unwire), then the final delete with
// grace 0; a Pod removed at once (force) or while the kubelet was down is
// unwired when seen gone. Nodes of the lab's hosts deleted or created
// again go to Wirer.NodeChanged. It returns when ctx ends.
func RunKubelet(ctx context.Context, o KubeletOptions) error {
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	factory := informers.NewSharedInformerFactory(o.Client, 10*time.Minute)
	pods := factory.Core().V1().Pods()
	nodes := factory.Core().V1().Nodes()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	podKey := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(k)
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: podKey, UpdateFunc: func(_, obj any) { podKey(obj) }, DeleteFunc: podKey,
	}); err != nil {
		return err
	}
	nodeKey := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			if _, ok := o.Nodes[k]; ok {
				queue.Add(nodeKeyPrefix + k)
			}
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: nodeKey, DeleteFunc: nodeKey,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("lab kubelet: %v cache not synced: %w", typ, ctx.Err())
		}
	}
	k := &kubelet{o: o, pods: pods.Lister(), nodes: nodes.Lister(), queue: queue, nodeState: map[string]bool{}}
	// Pods deleted while no kubelet ran: unwire them.
	wired, err := o.Wirer.Wired()
	if err != nil {
		return err
	}
	for _, p := range wired {
		queue.Add(p.Key())
	}
	o.Log.Info("lab kubelet running", "nodes", len(o.Nodes), "pods_wired", len(wired))
	if o.Ready != nil {
		o.Ready()
	}
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Go(func() {
			for k.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
	return nil
}

type kubelet struct {
	o         KubeletOptions
	pods      corelisters.PodLister
	nodes     corelisters.NodeLister
	queue     workqueue.TypedRateLimitingInterface[string]
	mu        sync.Mutex
	nodeState map[string]bool // node → exists, as last told to the Wirer
}

func (k *kubelet) next(ctx context.Context) bool {
	key, quit := k.queue.Get()
	if quit {
		return false
	}
	defer k.queue.Done(key)
	var err error
	if node, ok := strings.CutPrefix(key, nodeKeyPrefix); ok {
		err = k.syncNode(ctx, node)
	} else {
		err = k.syncPod(ctx, key)
	}
	switch {
	case err == nil:
		k.queue.Forget(key)
	case ctx.Err() != nil:
	default:
		k.o.Log.Warn("sync", "key", key, "err", err, "attempt", k.queue.NumRequeues(key)+1)
		k.queue.AddRateLimited(key)
	}
	return true
}

func (k *kubelet) syncNode(ctx context.Context, name string) error {
	_, err := k.nodes.Get(name)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	k.mu.Lock()
	was, known := k.nodeState[name]
	k.mu.Unlock()
	if known && was == exists {
		return nil
	}
	k.o.Log.Info("node", "node", name, "exists", exists)
	if exists {
		// As a kubelet does: the Node's addresses, labels and Ready.
		if err := EnsureNode(ctx, k.o.Client, k.o.Nodes[name]); err != nil {
			return err
		}
	}
	if err := k.o.Wirer.NodeChanged(ctx, name, exists); err != nil {
		return err
	}
	k.mu.Lock()
	k.nodeState[name] = exists
	k.mu.Unlock()
	if exists {
		// Pods bound to it while it was gone wait for it.
		pods, err := k.pods.List(labels.Everything())
		if err != nil {
			return err
		}
		for _, p := range pods {
			if p.Spec.NodeName == name {
				k.queue.Add(p.Namespace + "/" + p.Name)
			}
		}
	}
	return nil
}

func (k *kubelet) syncPod(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := k.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return k.unwireGone(ctx, ns, name, "")
	}
	if err != nil {
		return err
	}
	node, ours := k.o.Nodes[pod.Spec.NodeName]
	if !ours {
		// Not bound to a lab host (or not bound yet: no scheduler runs);
		// an earlier pod of that name on a lab host is gone.
		return k.unwireGone(ctx, ns, name, "")
	}
	ref := PodRef{Namespace: ns, Name: name, UID: string(pod.UID), Node: pod.Spec.NodeName, Annotations: pod.Annotations}
	// A pod of this name with another UID was deleted and created again
	// while we looked away.
	if err := k.unwireGone(ctx, ns, name, ref.UID); err != nil {
		return err
	}
	if pod.DeletionTimestamp != nil {
		if err := k.o.Wirer.Unwire(ctx, ref); err != nil {
			return err
		}
		zero := int64(0)
		uid := pod.UID
		err := k.o.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
		switch {
		case err == nil:
			k.o.Log.Info("pod deleted", "pod", key, "node", ref.Node)
		case !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
			return fmt.Errorf("delete pod %s: %w", key, err)
		}
		return nil
	}
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return nil
	}
	if _, err := k.nodes.Get(ref.Node); apierrors.IsNotFound(err) {
		// Its Node is gone (and its agent with it): the pod waits,
		// Pending, until the Node is back (syncNode queues it again).
		return nil
	}
	addrs, err := k.o.Wirer.Wire(ctx, ref)
	if err != nil {
		if k.queue.NumRequeues(key)+1 < maxWireAttempts {
			return err
		}
		k.o.Log.Error("pod failed", "pod", key, "err", err)
		return k.setFailed(ctx, pod, err)
	}
	return k.setRunning(ctx, pod, node.IP, addrs)
}

// unwireGone unwires a wired pod of that name whose UID is not keep.
func (k *kubelet) unwireGone(ctx context.Context, ns, name, keep string) error {
	wired, err := k.o.Wirer.Wired()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range wired {
		if p.Namespace == ns && p.Name == name && (keep == "" || p.UID != keep) {
			k.o.Log.Info("pod gone: unwiring", "pod", p.Key(), "uid", p.UID, "node", p.Node)
			errs = append(errs, k.o.Wirer.Unwire(ctx, p))
		}
	}
	return errors.Join(errs...)
}

func (k *kubelet) setRunning(ctx context.Context, pod *corev1.Pod, hostIP netip.Addr, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return fmt.Errorf("pod %s/%s: wired without an address", pod.Namespace, pod.Name)
	}
	if pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP == addrs[0].String() {
		return nil
	}
	pod = pod.DeepCopy()
	now := metav1.Now()
	s := &pod.Status
	s.Phase = corev1.PodRunning
	s.Message, s.Reason = "", ""
	s.HostIP = hostIP.String()
	s.HostIPs = []corev1.HostIP{{IP: hostIP.String()}}
	s.PodIP = addrs[0].String()
	s.PodIPs = nil
	for _, a := range addrs {
		s.PodIPs = append(s.PodIPs, corev1.PodIP{IP: a.String()})
	}
	if s.StartTime == nil {
		s.StartTime = &now
	}
	s.Conditions = nil
	for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		s.Conditions = append(s.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	s.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		started := true
		s.ContainerStatuses = append(s.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	if _, err := k.o.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod %s/%s status: %w", pod.Namespace, pod.Name, err)
	}
	k.o.Log.Info("pod running", "pod", pod.Namespace+"/"+pod.Name, "node", pod.Spec.NodeName, "ip", s.PodIP)
	return nil
}

func (k *kubelet) setFailed(ctx context.Context, pod *corev1.Pod, cause error) error {
	pod = pod.DeepCopy()
	pod.Status.Phase = corev1.PodFailed
	pod.Status.Reason = "TerraneLabWireFailed"
	pod.Status.Message = cause.Error()
	if _, err := k.o.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod %s/%s status: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}
