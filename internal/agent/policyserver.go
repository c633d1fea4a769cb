package agent

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/policy"
)

// ServerPolicySource is the Terrane server as the policy source (terrane
// agent --policy server), for clusters without a Kubernetes API and for VM
// ports: it follows GET /v1/policy with long polls.
type ServerPolicySource struct {
	c   *client.Client
	log *slog.Logger

	mu      sync.Mutex
	state   *api.PolicyState // nil until the first answer
	synced  chan struct{}    // closed at the first answer
	changed chan struct{}
	// fetch serialises the direct reads WaitPod makes.
	fetch sync.Mutex
}

// NewServerPolicySource follows the server's policy through c.
func NewServerPolicySource(c *client.Client, log *slog.Logger) *ServerPolicySource {
	return &ServerPolicySource{c: c, log: log, synced: make(chan struct{}), changed: make(chan struct{}, 1)}
}

// Run starts following the server, until ctx ends, and returns once the
// source has the server's policy (ctx's error if it ends first). While the
// server cannot be reached it retries every second, and the agent
// enforces what the server said last.
func (s *ServerPolicySource) Run(ctx context.Context) error {
	go s.follow(ctx)
	select {
	case <-s.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *ServerPolicySource) follow(ctx context.Context) {
	var after int64
	failing := false
	for ctx.Err() == nil {
		ps, err := s.c.Policy(ctx, after, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				s.log.Warn("policy source: the server did not answer; enforcing what it said last", "err", err)
			}
			failing = true
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		failing = false
		s.take(ps)
		after = ps.Revision
	}
}

// take keeps ps when it is newer than what the source has, and tells the
// agent.
func (s *ServerPolicySource) take(ps *api.PolicyState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != nil && ps.Revision <= s.state.Revision {
		return
	}
	first := s.state == nil
	s.state = ps
	if first {
		close(s.synced)
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Cluster implements PolicySource: the last answer (the pod list copied,
// so the caller may set its own pods' addresses).
func (s *ServerPolicySource) Cluster() (*policy.Cluster, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil {
		return &policy.Cluster{}, nil
	}
	c := s.state.Cluster
	c.Pods = slices.Clone(c.Pods)
	return &c, nil
}

// Changed implements PolicySource.
func (s *ServerPolicySource) Changed() <-chan struct{} { return s.changed }

// WaitPod implements PolicySource. A pod need not be known to the server
// before its ADD: its workload record (labels, ports) is read directly from
// the server when the source lacks it, so a record written just before
// the ADD is in its first rule set; a pod with none has no labels.
func (s *ServerPolicySource) WaitPod(ctx context.Context, namespace, name string) (policy.Pod, error) {
	select {
	case <-s.synced:
	case <-ctx.Done():
		return policy.Pod{}, ctx.Err()
	}
	if p, ok := s.pod(namespace, name); ok {
		return p, nil
	}
	s.fetch.Lock()
	defer s.fetch.Unlock()
	if p, ok := s.pod(namespace, name); ok {
		return p, nil
	}
	ps, err := s.c.Policy(ctx, 0, 0)
	if err != nil {
		return policy.Pod{}, err
	}
	s.take(ps)
	if p, ok := s.pod(namespace, name); ok {
		return p, nil
	}
	return policy.Pod{Namespace: namespace, Name: name}, nil
}

func (s *ServerPolicySource) pod(namespace, name string) (policy.Pod, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.state.Cluster.Pods {
		if p.Namespace == namespace && p.Name == name {
			return p, true
		}
	}
	return policy.Pod{}, false
}
