package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/terrane-net/terrane/internal/api"
)

// Heartbeat tells the server host's agent is alive (PUT
// /v1/hosts/{host}/heartbeat). A node identity may beat only for itself.
// Call it every few seconds: the server stores at most one beat per 15 s,
// and a host is unhealthy — no VPC aggregate targets it — once its last
// stored beat is older than the VPC config's heartbeatTimeout (60 s).
func (c *Client) Heartbeat(ctx context.Context, host string) (*api.HeartbeatResult, error) {
	var r api.HeartbeatResult
	_, err := c.do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(host)+"/heartbeat", nil, nil, &r)
	return ret(&r, err)
}

// VPC reads the VPC route reconciler's status (GET /v1/vpc).
func (c *Client) VPC(ctx context.Context) (*api.VPCStatus, error) {
	var s api.VPCStatus
	_, err := c.do(ctx, http.MethodGet, "/v1/vpc", nil, nil, &s)
	return ret(&s, err)
}
