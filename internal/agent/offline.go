package agent

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/terrane-net/terrane/internal/client"
)

// offlineState is what the agent knows of the server's reachability. a.mu
// guards it.
//
// With every server down the agent keeps serving ADDs and DELs from the
// blocks it owns: an ADD writes only the node-local state, a DEL frees the
// address locally, and the report loop carries both to the server once it
// answers again. What the agent cannot do without a server is claim a
// block, so an ADD that finds the host's blocks full fails at once with
// errServerUnreachableFull instead of waiting for a claim that cannot
// succeed.
type offlineState struct {
	// since is when the server was first seen unreachable (zero: it
	// answered last time it was asked).
	since time.Time
}

// unreachable reports whether err says the server could not be asked: no
// answer at all (refused, reset, timed out), or an answer from something in
// front of it that could not reach it (502, 503, 504). A server that
// answered with any other status was reached.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return true
}

// contact notes the outcome of a call to the server: an unreachable server
// marks the agent offline (logged once), any answer marks it online again
// (logged once) and starts the claims ahead skipped meanwhile; the report
// loop, retrying all along, carries the addresses handed out.
func (a *Agent) contact(err error) {
	if err != nil && !unreachable(err) {
		err = nil // the server answered
	}
	a.mu.Lock()
	back := err == nil && !a.off.since.IsZero()
	bg := a.runCtx
	defer func() {
		a.mu.Unlock()
		if back && bg != nil {
			// The claims skipped while offline, now: the room kept
			// ahead is what the next outage is ridden out on.
			for _, n := range a.networks() {
				a.ensureFreeAsync(bg, n)
			}
		}
	}()
	switch {
	case err != nil && a.off.since.IsZero():
		a.off.since = time.Now()
		free := map[string]uint64{}
		for n, p := range a.pools {
			free[n] = p.Free()
		}
		a.log.Warn("the server is unreachable: pods keep starting from this host's blocks, reported once it answers", "free", free, "err", err)
	case err == nil && !a.off.since.IsZero():
		a.log.Info("the server answers again: reporting the addresses handed out and claiming ahead", "offline", time.Since(a.off.since).Round(time.Second).String())
		a.off.since = time.Time{}
	}
}

// offline reports whether the server was unreachable the last time it was
// asked. a.mu is held.
func (a *Agent) offlineLocked() bool { return !a.off.since.IsZero() }
