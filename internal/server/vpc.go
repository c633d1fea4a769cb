package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/cloud/vpc"
	"github.com/terrane-net/terrane/internal/ipam"
)

// vpcLeaseTTL bounds how long the VPC reconciler is without an active
// server after the active one dies (a clean shutdown hands over at once).
const vpcLeaseTTL = 15 * time.Second

// vpcSource is the reconciler's view of the server's state.
type vpcSource struct {
	state *State
	cfg   *vpc.Config
	now   func() time.Time
}

// Snapshot implements vpc.Source: the allocator's state at its revision,
// with each host healthy when its heartbeat is recent.
func (v vpcSource) Snapshot(ctx context.Context) (vpc.Snapshot, error) {
	var snap vpc.Snapshot
	err := v.state.View(ctx, func(al *ipam.Allocator, _ *topologyRecord) error {
		snap = vpc.SnapshotFrom(al, v.cfg.InstanceLabel)
		snap.Revision = v.state.rev
		return nil
	})
	if err != nil {
		return snap, err
	}
	beats, err := v.state.Heartbeats(ctx)
	if err != nil {
		return snap, err
	}
	now := v.now()
	snap.Healthy = map[string]bool{}
	for host, at := range beats {
		if now.Sub(at) < v.cfg.HeartbeatTimeout {
			snap.Healthy[host] = true
		}
	}
	return snap, nil
}

// WaitChange implements vpc.Source.
func (v vpcSource) WaitChange(ctx context.Context, after int64, max time.Duration) {
	if after == 0 { // an empty store: nothing to watch from yet
		t := time.NewTimer(max)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		return
	}
	v.state.waitPast(ctx, after, max)
}

// runVPC runs the reconciler while this server holds the VPC lease.
func runVPC(ctx context.Context, state *State, rec *vpc.Reconciler, log *slog.Logger) {
	holder := leaseHolderName()
	lease := NewLease(state, "vpc-reconciler", holder, vpcLeaseTTL, log)
	src := vpcSource{state: state, cfg: rec.Config(), now: time.Now}
	log.Info("vpc reconciler configured; waiting for the lease", "holder", holder, "tables", len(rec.Config().Tables))
	lease.Run(ctx, rec.SetActive, func(ctx context.Context) { rec.Run(ctx, src) })
}

// leaseHolderName names this process among the servers: host name, pid
// and a random suffix (a restarted server is a new holder).
func leaseHolderName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// getVPC answers GET /v1/vpc.
func (a *API) getVPC(w http.ResponseWriter, _ *http.Request, _ Identity) error {
	if a.vpc == nil {
		writeJSON(w, http.StatusOK, api.VPCStatus{Tables: []api.VPCTableStatus{}, Calls: map[string]int64{}})
		return nil
	}
	writeJSON(w, http.StatusOK, a.vpc.Status())
	return nil
}
