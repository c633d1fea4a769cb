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
)

// Health asks whether the server is up (no authentication needed).
func (c *Client) Health(ctx context.Context) (*api.Health, error) {
	var h api.Health
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
func (c *Client) Topology(ctx context.Context) (*api.Topology, error) {
	var t api.Topology
	_, err := c.do(ctx, http.MethodGet, "/v1/topology", nil, nil, &t)
	return ret(&t, err)
}

// ApplyTopology validates a topology and applies it, or with req.DryRun
// only reports what would change. A change that would orphan live blocks
// is refused with an *APIError listing the conflicts.
func (c *Client) ApplyTopology(ctx context.Context, req api.TopologyRequest) (*api.TopologyResult, error) {
	var r api.TopologyResult
	_, err := c.do(ctx, http.MethodPost, "/v1/topology", nil, req, &r)
	return ret(&r, err)
}

// Plan describes the applied topology: group prefixes, blocks, routes.
func (c *Client) Plan(ctx context.Context) (*api.Report, error) {
	var r api.Report
	_, err := c.do(ctx, http.MethodGet, "/v1/plan", nil, nil, &r)
	return ret(&r, err)
}

// Utilisation reports addresses used per network and group.
func (c *Client) Utilisation(ctx context.Context) (*api.Report, error) {
	var r api.Report
	_, err := c.do(ctx, http.MethodGet, "/v1/utilisation", nil, nil, &r)
	return ret(&r, err)
}

// Check runs the server's consistency check (admin only).
func (c *Client) Check(ctx context.Context) (*api.CheckReport, error) {
	var r api.CheckReport
	_, err := c.do(ctx, http.MethodGet, "/v1/check", nil, nil, &r)
	return ret(&r, err)
}

// Releases reads the orphaned pod addresses host's agent is to release (a
// node identity: its own only).
func (c *Client) Releases(ctx context.Context, host string) (*api.HostReleases, error) {
	var r api.HostReleases
	_, err := c.do(ctx, http.MethodGet, "/v1/hosts/"+url.PathEscape(host)+"/releases", nil, nil, &r)
	return ret(&r, err)
}

// Hosts lists the registered hosts by name.
func (c *Client) Hosts(ctx context.Context) ([]ipam.HostInfo, error) {
	var r api.HostList
	_, err := c.do(ctx, http.MethodGet, "/v1/hosts", nil, nil, &r)
	return r.Hosts, err
}

// RegisterHost registers (or updates) a host; a node identity may register
// only itself.
func (c *Client) RegisterHost(ctx context.Context, name string, req api.HostRequest) (*api.HostResult, error) {
	var r api.HostResult
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
	var r api.BlockList
	_, err := c.do(ctx, http.MethodGet, "/v1/blocks", q, nil, &r)
	return r.Blocks, err
}

// ClaimBlock claims a block on network for host.
func (c *Client) ClaimBlock(ctx context.Context, host, network string) (*api.BlockClaim, error) {
	var r api.BlockClaim
	_, err := c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(host)+"/blocks", nil, api.BlockRequest{Network: network}, &r)
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
	var r api.EndpointList
	_, err := c.do(ctx, http.MethodGet, "/v1/endpoints", nil, nil, &r)
	return r.Endpoints, err
}

// AllocateEndpoint gives an endpoint (a VM port) an address on its host.
// It is idempotent by ID.
func (c *Client) AllocateEndpoint(ctx context.Context, req api.EndpointRequest) (*api.EndpointResult, error) {
	var r api.EndpointResult
	status, err := c.do(ctx, http.MethodPost, "/v1/endpoints", nil, req, &r)
	r.Created = r.Created || status == http.StatusCreated // servers before "created" was sent
	return ret(&r, err)
}

// ReleaseEndpoint releases an endpoint's address.
func (c *Client) ReleaseEndpoint(ctx context.Context, id string) ([]ipam.Change, error) {
	return c.changes(ctx, http.MethodDelete, "/v1/endpoints/"+url.PathEscape(id))
}

func (c *Client) changes(ctx context.Context, method, path string) ([]ipam.Change, error) {
	var r api.Changes
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

// Snapshot reads the state. With after > 0 it is a long poll: the server
// answers once its revision is past after, or after wait (0: 30 s) with the
// unchanged state. ctx bounds the call; wait plus the client's timeout is
// allowed when ctx has no deadline.
func (c *Client) Snapshot(ctx context.Context, after int64, wait time.Duration) (*api.Snapshot, error) {
	return c.SnapshotOf(ctx, "", after, wait)
}

// SnapshotOf is Snapshot with host's VM ports (Snapshot.Ports) and its
// agent's release requests (Snapshot.Releases), for the host's agent.
func (c *Client) SnapshotOf(ctx context.Context, host string, after int64, wait time.Duration) (*api.Snapshot, error) {
	q := url.Values{}
	if host != "" {
		q.Set("host", host)
	}
	var s api.Snapshot
	if err := c.longPoll(ctx, "/v1/snapshot", q, after, wait, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// longPoll GETs path; with after > 0 it is a long poll (after, wait) on
// the client's long-poll transport.
func (c *Client) longPoll(ctx context.Context, path string, q url.Values, after int64, wait time.Duration, out any) error {
	var poll time.Duration
	if after > 0 {
		if wait <= 0 {
			wait = 30 * time.Second
		}
		q.Set("after", strconv.FormatInt(after, 10))
		q.Set("wait", wait.String())
		poll = wait
	}
	_, err := c.send(ctx, poll, http.MethodGet, path, q, nil, out)
	return err
}

// Namespaces lists each namespace's own default network.
func (c *Client) Namespaces(ctx context.Context) (map[string]string, error) {
	var r api.NamespaceList
	_, err := c.do(ctx, http.MethodGet, "/v1/namespaces", nil, nil, &r)
	return r.Namespaces, err
}

// SetNamespaceNetwork makes network namespace's default; "" clears it.
func (c *Client) SetNamespaceNetwork(ctx context.Context, namespace, network string) ([]ipam.Change, error) {
	if network == "" {
		return c.changes(ctx, http.MethodDelete, "/v1/namespaces/"+url.PathEscape(namespace))
	}
	var r api.Changes
	_, err := c.do(ctx, http.MethodPut, "/v1/namespaces/"+url.PathEscape(namespace), nil, api.NamespaceRequest{Network: network}, &r)
	return r.Changes, err
}
