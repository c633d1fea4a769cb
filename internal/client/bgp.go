package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/terrane-net/terrane/internal/api"
)

// ReportBGP records what host's BGP speaker does (PUT
// /v1/hosts/{host}/bgp). A node identity may report only its own host.
func (c *Client) ReportBGP(ctx context.Context, host string, st api.BGPStatus) error {
	_, err := c.do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(host)+"/bgp", nil, st, nil)
	return err
}

// BGP returns every bgp host's last reported status (GET /v1/bgp).
func (c *Client) BGP(ctx context.Context) (*api.BGPReport, error) {
	var r api.BGPReport
	_, err := c.do(ctx, http.MethodGet, "/v1/bgp", nil, nil, &r)
	return ret(&r, err)
}
