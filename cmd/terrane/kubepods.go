package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/terrane-net/terrane/internal/kube"
	"github.com/terrane-net/terrane/internal/server"
)

// kubePodFlags turn on the release of pod addresses whose Pod no longer
// exists (--kube-pods): a controller beside the Node controller, under the
// same Lease.
type kubePodFlags struct {
	enabled bool
	grace   time.Duration
	// settle and interval are for tests (hidden flags).
	settle, interval time.Duration
}

func (k *kubePodFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&k.enabled, "kube-pods", false, "release pod addresses whose Pod no longer exists (deleted, re-created with another UID, or bound to another node) when the runtime never sent the CNI DEL: marked first (`terrane ctl check` shows them), released by the node's agent after --kube-pod-orphan-grace if a fresh read of the Pod confirms it; one server at a time (the same Lease as --kube-nodes)")
	f.DurationVar(&k.grace, "kube-pod-orphan-grace", kube.DefaultPodOrphanGrace, "with --kube-pods: how long an address stays marked orphaned before its release is requested")
	f.DurationVar(&k.settle, "kube-pod-orphan-settle", 0, "with --kube-pods: how long an address must look orphaned (and have been handed out) before it is marked (0: 15s)")
	f.DurationVar(&k.interval, "kube-pod-orphan-interval", 0, "with --kube-pods: how often every host's report is compared with the Pods again (0: 30s)")
	_ = f.MarkHidden("kube-pod-orphan-settle")
	_ = f.MarkHidden("kube-pod-orphan-interval")
}

// check refuses durations that cannot work.
func (k *kubePodFlags) check() error {
	switch {
	case !k.enabled:
		return nil
	case k.grace <= 0:
		return fmt.Errorf("--kube-pod-orphan-grace %s: want more than 0 (e.g. 2m)", k.grace)
	case k.settle < 0:
		return fmt.Errorf("--kube-pod-orphan-settle %s: want 0 or more", k.settle)
	case k.interval < 0:
		return fmt.Errorf("--kube-pod-orphan-interval %s: want 0 or more", k.interval)
	case k.settle > k.grace:
		return fmt.Errorf("--kube-pod-orphan-grace %s: want at least the settle time %s", k.grace, k.settle)
	}
	return nil
}

// start runs the Pod controller in wg while the Lease is held (ctx).
func (k *kubePodFlags) start(ctx context.Context, wg *sync.WaitGroup, cs kubernetes.Interface, state *server.State, log *slog.Logger) {
	if !k.enabled {
		return
	}
	wg.Go(func() {
		kube.NewPodController(kube.PodControllerOptions{Client: cs, Grace: k.grace, Settle: k.settle, Interval: k.interval, Log: log.With("component", "pod-controller")}).Run(ctx, state)
	})
}
