package kube

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/server"
)

// Event reasons for allocations refused on a Node's host.
const (
	ReasonNetworkFull = "TerraneNetworkFull"
	ReasonRouteBudget = "TerraneRouteBudget"
)

// failureEventEvery is how often, at most, one host's refusals in one
// network for one reason become an Event: an agent retrying its claim
// ahead every few seconds must not flood the Node's events.
const failureEventEvery = time.Minute

// NodeEvents records an Event on a host's Node when the allocator refuses
// the host a block or an address because the network is full or a route
// budget would be exceeded (server.Config.Failures). Every server records
// the refusals it serves; no leadership is needed.
type NodeEvents struct {
	rec  record.EventRecorder
	stop func()

	mu   sync.Mutex
	last map[string]time.Time // host/network/reason → last Event
}

var _ server.AllocationFailures = (*NodeEvents)(nil)

// NewNodeEvents records through cs until ctx ends.
func NewNodeEvents(ctx context.Context, cs kubernetes.Interface) *NodeEvents {
	rec, stop := newRecorder(ctx, cs)
	return &NodeEvents{rec: rec, stop: stop, last: map[string]time.Time{}}
}

// AllocationFailed implements server.AllocationFailures.
func (e *NodeEvents) AllocationFailed(host, network string, err error) {
	reason := ReasonNetworkFull
	if errors.Is(err, ipam.ErrRouteBudget) {
		reason = ReasonRouteBudget
	}
	key := host + "/" + network + "/" + reason
	now := time.Now()
	e.mu.Lock()
	if t, ok := e.last[key]; ok && now.Sub(t) < failureEventEvery {
		e.mu.Unlock()
		return
	}
	e.last[key] = now
	e.mu.Unlock()
	// A Node is cluster-scoped: its UID is not needed for the Event to be
	// listed with it (kubectl describe node matches by kind and name).
	node := &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: host}
	what := "network " + network
	if network == "" {
		what = "every network it may use"
	}
	e.rec.Event(node, corev1.EventTypeWarning, reason, fmt.Sprintf("Terrane cannot give this node more addresses in %s: %v", what, err))
}

// Close stops recording.
func (e *NodeEvents) Close() { e.stop() }
