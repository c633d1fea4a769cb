package agent

import (
	"context"
	"time"

	"github.com/terrane-net/terrane/internal/client"
)

// heartbeatLoop tells the server the host is alive, at once and then every
// Heartbeat: the VPC reconciler fails aggregates over to hosts that are.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	every := a.cfg.Heartbeat
	if every == 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		_, err := a.cfg.Server.Heartbeat(ctx, a.cfg.Host)
		if ctx.Err() == nil {
			a.contact(err)
		}
		if err != nil && ctx.Err() == nil && !client.Unreachable(err) {
			a.log.Warn("heartbeat", "err", err) // an unreachable server is logged once, by contact
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
