package agent

import (
	"context"
	"time"

	"github.com/terrane-net/terrane/internal/cniapi"
)

// replayQueue does the releases the plugin queued while the agent was down
// (cniapi.WriteQueued), then removes them. A release queued before its
// attachment was (re)created is stale: the runtime added the same
// container again after the DEL, so the live endpoint is kept. File times
// come from the kernel's coarse clock, a few milliseconds behind; a second
// of slack keeps a release from being taken for stale. (Replays at start
// happen before the agent answers any ADD, so there the question does not
// arise.)
func (a *Agent) replayQueue(ctx context.Context) {
	if a.cfg.QueueDir == "" {
		return
	}
	queued, err := cniapi.ReadQueued(a.cfg.QueueDir)
	if err != nil {
		a.log.Warn("reading the release queue", "dir", a.cfg.QueueDir, "err", err)
	}
	for _, q := range queued {
		a.mu.Lock()
		e := a.eps[q.ID()]
		a.mu.Unlock()
		if e != nil && !e.Since.After(q.Queued.Add(queueSlack)) {
			if err := a.cfg.HostOps.DeleteLink(e.HostVeth); err != nil {
				a.log.Warn("deleting the veth of a queued release", "attachment", q.ID(), "err", err)
			}
			if err := a.release(ctx, e); err != nil {
				a.log.Warn("replaying a queued release", "attachment", q.ID(), "err", err)
				continue
			}
			a.log.Info("replayed a release queued while the agent was down", "attachment", q.ID(), "addr", e.Addr)
		}
		if err := cniapi.RemoveQueued(a.cfg.QueueDir, q); err != nil {
			a.log.Warn("removing a queued release", "err", err)
		}
	}
}

const queueSlack = time.Second
