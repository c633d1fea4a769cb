package agent

import "context"

// replayQueue releases what the plugin queued while the agent was down.
func (a *Agent) replayQueue(ctx context.Context) {
	_ = ctx // wired to cniapi's queue helpers once they land
}
