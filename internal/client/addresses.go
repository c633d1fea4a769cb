package client

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/terrane-net/terrane/internal/api"
)

// ReportAddresses sends host's address report (PUT
// /v1/hosts/{host}/addresses). A delta on a generation the server does not
// hold is refused with a 409 whose field is "base": send a full report.
func (c *Client) ReportAddresses(ctx context.Context, host string, rep api.AddressReport) (*api.AddressReportResult, error) {
	var r api.AddressReportResult
	_, err := c.do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(host)+"/addresses", nil, rep, &r)
	return ret(&r, err)
}

// Explain asks why an address is allocated (GET /v1/addresses/{addr}).
func (c *Client) Explain(ctx context.Context, addr netip.Addr) (*api.Explanation, error) {
	var r api.Explanation
	_, err := c.do(ctx, http.MethodGet, "/v1/addresses/"+addr.String(), nil, nil, &r)
	return ret(&r, err)
}

// Repair releases what the server's check proves leaked, or with dryRun
// lists it (POST /v1/check/repair).
func (c *Client) Repair(ctx context.Context, dryRun bool) (*api.RepairResult, error) {
	var r api.RepairResult
	_, err := c.do(ctx, http.MethodPost, "/v1/check/repair", nil, api.RepairRequest{DryRun: dryRun}, &r)
	return ret(&r, err)
}
