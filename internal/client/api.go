package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/plan"
)

// The bodies below mirror internal/server's JSON.

// Health is the server's liveness answer.
type Health struct {
	Status   string `json:"status"`
	Revision int64  `json:"revision"`
}

// Topology is the applied topology.
type Topology struct {
	// Topology is the file's text as it was applied.
	Topology string       `json:"topology"`
	Mode     string       `json:"mode"`
	Budgets  ipam.Budgets `json:"budgets"`
	// Revision names this topology: pass it as TopologyRequest.Replaces.
	Revision int64 `json:"revision"`
}

// TopologyRequest applies (or, with DryRun, only diffs) a topology.
type TopologyRequest struct {
	// Topology is the file's text: Terrane YAML/JSON or Romana JSON.
	Topology string `json:"topology"`
	// Mode is elastic (default) or static.
	Mode    string       `json:"mode,omitempty"`
	Budgets ipam.Budgets `json:"budgets"`
	DryRun  bool         `json:"dry_run,omitempty"`
	// Replaces is the revision of the topology the caller read (0: none,
	// or do not check); the server refuses the apply if another topology
	// was applied since.
	Replaces int64 `json:"replaces,omitempty"`
}

// TopologyResult answers an apply.
type TopologyResult struct {
	DryRun bool `json:"dry_run"`
	// Revision is the new topology's (0 for a dry run).
	Revision int64 `json:"revision"`
	Replaces int64 `json:"replaces"`
	// Diff lists the records that change: "+ added", "~ changed", "- removed".
	Diff   []string `json:"diff"`
	Writes int      `json:"writes"`
}

// Report is the plan, or utilisation, of the applied topology per network.
type Report struct {
	Mode     string               `json:"mode"`
	Networks []plan.NetworkReport `json:"networks"`
}

// CheckReport is the server's consistency report.
type CheckReport struct {
	Clean    bool           `json:"clean"`
	Findings []ipam.Finding `json:"findings"`
}

// HostRequest registers a host.
type HostRequest struct {
	IP     netip.Addr        `json:"ip,omitzero"`
	Labels map[string]string `json:"labels,omitempty"`
}

// HostResult answers a registration.
type HostResult struct {
	Host    ipam.HostInfo `json:"host"`
	Changes []ipam.Change `json:"changes"`
}

// BlockClaim answers a block claim.
type BlockClaim struct {
	Block   netip.Prefix  `json:"block"`
	Changes []ipam.Change `json:"changes"`
}

// EndpointRequest asks for an endpoint address.
type EndpointRequest struct {
	// ID is the endpoint's stable name (e.g. the VM port ID); asking again
	// with the same ID returns the same address.
	ID   string `json:"id"`
	Host string `json:"host"`
	// Network, Namespace and Addr are optional: the server picks the
	// namespace's default network and the next free address.
	Network   string     `json:"network,omitempty"`
	Namespace string     `json:"namespace,omitempty"`
	Addr      netip.Addr `json:"addr,omitzero"`
}

// EndpointResult answers an allocation.
type EndpointResult struct {
	Endpoint ipam.Endpoint `json:"endpoint"`
	Changes  []ipam.Change `json:"changes"`
	// Created is false when the endpoint already had this address.
	Created bool `json:"created"`
}

// Health asks whether the server is up (no authentication needed).
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h Health
	_, err := c.do(ctx, http.MethodGet, "/healthz", nil, nil, &h)
	return ret(&h, err)
}

// Metrics returns the server's Prometheus metrics text.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	var sb strings.Builder
	_, err := c.do(ctx, http.MethodGet, "/metrics", nil, nil, writerTo{&sb})
	return sb.String(), err
}

// Topology returns the applied topology; errors.Is(err, ErrNoTopology)
// before one is applied.
func (c *Client) Topology(ctx context.Context) (*Topology, error) {
	var t Topology
	_, err := c.do(ctx, http.MethodGet, "/v1/topology", nil, nil, &t)
	return ret(&t, err)
}

// ApplyTopology validates a topology and applies it, or with req.DryRun
// only reports what would change. A change that would orphan live blocks
// is refused with an *APIError listing the conflicts.
func (c *Client) ApplyTopology(ctx context.Context, req TopologyRequest) (*TopologyResult, error) {
	var r TopologyResult
	_, err := c.do(ctx, http.MethodPost, "/v1/topology", nil, req, &r)
	return ret(&r, err)
}

// Plan describes the applied topology: group prefixes, blocks, routes.
func (c *Client) Plan(ctx context.Context) (*Report, error) {
	var r Report
	_, err := c.do(ctx, http.MethodGet, "/v1/plan", nil, nil, &r)
	return ret(&r, err)
}

// Utilisation reports addresses used per network and group.
func (c *Client) Utilisation(ctx context.Context) (*Report, error) {
	var r Report
	_, err := c.do(ctx, http.MethodGet, "/v1/utilisation", nil, nil, &r)
	return ret(&r, err)
}

// Check runs the server's consistency check (admin only).
func (c *Client) Check(ctx context.Context) (*CheckReport, error) {
	var r CheckReport
	_, err := c.do(ctx, http.MethodGet, "/v1/check", nil, nil, &r)
	return ret(&r, err)
}

// Hosts lists the registered hosts by name.
func (c *Client) Hosts(ctx context.Context) ([]ipam.HostInfo, error) {
	var r struct {
		Hosts []ipam.HostInfo `json:"hosts"`
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/hosts", nil, nil, &r)
	return r.Hosts, err
}

// RegisterHost registers (or updates) a host; a node identity may register
// only itself.
func (c *Client) RegisterHost(ctx context.Context, name string, req HostRequest) (*HostResult, error) {
	var r HostResult
	_, err := c.do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(name), nil, req, &r)
	return ret(&r, err)
}

// RemoveHost removes a host (admin only).
func (c *Client) RemoveHost(ctx context.Context, name string) ([]ipam.Change, error) {
	return c.changes(ctx, http.MethodDelete, "/v1/hosts/"+url.PathEscape(name))
}

// Blocks lists the claimed blocks per network, of one network if network
// is not empty.
func (c *Client) Blocks(ctx context.Context, network string) (map[string][]ipam.BlockInfo, error) {
	var q url.Values
	if network != "" {
		q = url.Values{"network": {network}}
	}
	var r struct {
		Blocks map[string][]ipam.BlockInfo `json:"blocks"`
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/blocks", q, nil, &r)
	return r.Blocks, err
}

// ClaimBlock claims a block on network for host.
func (c *Client) ClaimBlock(ctx context.Context, host, network string) (*BlockClaim, error) {
	var r BlockClaim
	body := struct {
		Network string `json:"network"`
	}{network}
	_, err := c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(host)+"/blocks", nil, body, &r)
	return ret(&r, err)
}

// ReleaseBlock releases host's block on network.
func (c *Client) ReleaseBlock(ctx context.Context, host, network string, block netip.Prefix) ([]ipam.Change, error) {
	if !block.IsValid() {
		return nil, fmt.Errorf("release block: %v is not a prefix", block)
	}
	path := fmt.Sprintf("/v1/hosts/%s/blocks/%s/%s/%s", url.PathEscape(host), url.PathEscape(network),
		url.PathEscape(block.Addr().String()), strconv.Itoa(block.Bits()))
	return c.changes(ctx, http.MethodDelete, path)
}

// Endpoints lists the allocated endpoints.
func (c *Client) Endpoints(ctx context.Context) ([]ipam.Endpoint, error) {
	var r struct {
		Endpoints []ipam.Endpoint `json:"endpoints"`
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/endpoints", nil, nil, &r)
	return r.Endpoints, err
}

// AllocateEndpoint gives an endpoint (a VM port) an address on its host.
// It is idempotent by ID.
func (c *Client) AllocateEndpoint(ctx context.Context, req EndpointRequest) (*EndpointResult, error) {
	var r EndpointResult
	status, err := c.do(ctx, http.MethodPost, "/v1/endpoints", nil, req, &r)
	r.Created = status == http.StatusCreated
	return ret(&r, err)
}

// ReleaseEndpoint releases an endpoint's address.
func (c *Client) ReleaseEndpoint(ctx context.Context, id string) ([]ipam.Change, error) {
	return c.changes(ctx, http.MethodDelete, "/v1/endpoints/"+url.PathEscape(id))
}

func (c *Client) changes(ctx context.Context, method, path string) ([]ipam.Change, error) {
	var r struct {
		Changes []ipam.Change `json:"changes"`
	}
	_, err := c.do(ctx, method, path, nil, nil, &r)
	return r.Changes, err
}

// ret returns v only without an error.
func ret[T any](v *T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

// writerTo receives a raw (non-JSON) answer.
type writerTo struct{ w io.Writer }

// Snapshot is the cluster state an agent routes from, at one revision.
type Snapshot = api.Snapshot

// Snapshot reads the state. With after > 0 it is a long poll: the server
// answers once its revision is past after, or after wait (0: 30 s) with the
// unchanged state. ctx bounds the call; wait plus the client's timeout is
// allowed when ctx has no deadline.
func (c *Client) Snapshot(ctx context.Context, after int64, wait time.Duration) (*Snapshot, error) {
	return c.SnapshotOf(ctx, "", after, wait)
}

// SnapshotOf is Snapshot with host's VM ports (Snapshot.Ports), for the
// host's agent.
func (c *Client) SnapshotOf(ctx context.Context, host string, after int64, wait time.Duration) (*Snapshot, error) {
	q := url.Values{}
	if host != "" {
		q.Set("host", host)
	}
	hc := c.http
	if after > 0 {
		if wait <= 0 {
			wait = 30 * time.Second
		}
		q.Set("after", strconv.FormatInt(after, 10))
		q.Set("wait", wait.String())
		hc = c.poll
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, wait+c.timeout)
			defer cancel()
		}
	}
	var s Snapshot
	_, err := c.send(ctx, hc, http.MethodGet, "/v1/snapshot", q, nil, &s)
	if err != nil {
		return nil, err
	}
	return &s, nil
}
