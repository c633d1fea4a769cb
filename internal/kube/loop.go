package kube

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// newRecorder records Events as terrane-server through cs; stop ends it.
func newRecorder(ctx context.Context, cs kubernetes.Interface) (rec record.EventRecorder, stop func()) {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "terrane-server"}), b.Shutdown
}

// worker is a controller's loop: one informer, a rate-limited queue of
// object names, one worker (the state serialises writes anyway, and one
// object's changes stay in order).
type worker struct {
	name    string
	log     *slog.Logger
	factory informers.SharedInformerFactory
	inf     cache.SharedIndexInformer
	// also are more informers of factory the worker waits for before its
	// first reconcile (listers the reconcile reads).
	also []cache.SharedIndexInformer
	// key names what an event of inf queues (nil: the object's own
	// namespace/name); ok false queues nothing.
	key func(obj any) (name string, ok bool)
	// seed lists names to reconcile once the cache has synced (objects gone
	// while no controller ran).
	seed func(ctx context.Context) []string
	// reconcile handles one name; after > 0 asks to be called again then.
	reconcile func(ctx context.Context, name string) (after time.Duration, err error)
}

// run watches until ctx ends.
func (w worker) run(ctx context.Context) {
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: w.name})
	defer queue.ShutDown()
	enqueue := func(obj any) {
		if w.key != nil {
			if key, ok := w.key(obj); ok {
				queue.Add(key)
			}
			return
		}
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		w.log.Error("watch", "controller", w.name, "err", err)
		return
	}
	w.factory.Start(ctx.Done())
	defer w.factory.Shutdown()
	synced := []cache.InformerSynced{w.inf.HasSynced}
	for _, inf := range w.also {
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	if w.seed != nil {
		for _, name := range w.seed(ctx) {
			queue.Add(name)
		}
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		name, quit := queue.Get()
		if quit {
			return
		}
		after, err := w.reconcile(ctx, name)
		switch {
		case err != nil && ctx.Err() == nil:
			w.log.Warn("reconcile", "controller", w.name, "object", name, "err", err)
			queue.AddRateLimited(name)
		case after > 0:
			queue.Forget(name)
			queue.AddAfter(name, after)
		default:
			queue.Forget(name)
		}
		queue.Done(name)
	}
}
