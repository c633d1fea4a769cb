package kube

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// DefaultLeaseName is the Lease the servers elect the Node controller's
// leader with.
const DefaultLeaseName = "terrane-node-controller"

// LeaderOptions configure RunLeader. Zero durations take client-go's
// usual values: 15 s lease, 10 s renew deadline, 2 s retry.
type LeaderOptions struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
	// Identity names this server in the Lease (host name and PID).
	Identity                                  string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Log                                       *slog.Logger
}

// RunLeader runs run while this server holds the Lease, and campaigns
// again after losing it, until ctx ends. run's context ends when the lease
// is lost; RunLeader waits for run to return before it campaigns again or
// returns, so two runs of one server never overlap. On return the Lease is
// released, so another server takes over without waiting for it to expire.
func RunLeader(ctx context.Context, o LeaderOptions, run func(ctx context.Context)) {
	if o.LeaseDuration == 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     o.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	for ctx.Err() == nil {
		acquired := make(chan context.Context, 1)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   o.LeaseDuration,
			RenewDeadline:   o.RenewDeadline,
			RetryPeriod:     o.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            o.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				// Run here, not in client-go's goroutine, so that we
				// know when it has returned.
				OnStartedLeading: func(lctx context.Context) { acquired <- lctx },
				OnStoppedLeading: func() {},
				OnNewLeader: func(id string) {
					if id != o.Identity {
						o.Log.Info("another server leads", "leader", id)
					}
				},
			},
		})
		if err != nil {
			o.Log.Error("leader election", "err", err)
			return
		}
		elected := make(chan struct{})
		go func() { defer close(elected); le.Run(ctx) }()
		select {
		case lctx := <-acquired:
			o.Log.Info("leading: this server runs the controller", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
			run(lctx) // until the lease is lost or ctx ends
		case <-elected:
		}
		<-elected
		if ctx.Err() == nil {
			o.Log.Warn("lost the lease; campaigning again", "lease", o.Namespace+"/"+o.Name)
		}
	}
}
