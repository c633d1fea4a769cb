package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/api"
)

// Policy reads the policy compiler's input as the server holds it. With
// after > 0 it is a long poll, like Snapshot: the server answers once its
// state or an address report is past after, or after wait.
func (c *Client) Policy(ctx context.Context, after int64, wait time.Duration) (*api.PolicyState, error) {
	var ps api.PolicyState
	if err := c.longPoll(ctx, "/v1/policy", url.Values{}, after, wait, &ps); err != nil {
		return nil, err
	}
	return &ps, nil
}

// ApplyPolicy creates or replaces policy objects, all or none.
func (c *Client) ApplyPolicy(ctx context.Context, req api.PolicyApply) (*api.PolicyResult, error) {
	var r api.PolicyResult
	return ret(&r, second(c.do(ctx, http.MethodPost, "/v1/policy", nil, req, &r)))
}

// DeletePolicyObject deletes a policy object: kind networkpolicies
// (ref NAMESPACE/NAME), clusternetworkpolicies (NAME), namespaces (NAME:
// its labels) or workloads (NAMESPACE/NAME).
func (c *Client) DeletePolicyObject(ctx context.Context, kind, ref string) (*api.PolicyResult, error) {
	var r api.PolicyResult
	return ret(&r, second(c.do(ctx, http.MethodDelete, "/v1/policy/"+url.PathEscape(kind)+"/"+escapeRef(ref), nil, nil, &r)))
}

// LabelNamespace changes a namespace's labels.
func (c *Client) LabelNamespace(ctx context.Context, namespace string, ch api.LabelChange) (*api.PolicyResult, error) {
	var r api.PolicyResult
	return ret(&r, second(c.do(ctx, http.MethodPatch, "/v1/policy/namespaces/"+url.PathEscape(namespace)+"/labels", nil, ch, &r)))
}

// LabelWorkload changes a workload's (pod's or VM port's) labels, making
// its record when it has none.
func (c *Client) LabelWorkload(ctx context.Context, namespace, name string, ch api.LabelChange) (*api.PolicyResult, error) {
	var r api.PolicyResult
	return ret(&r, second(c.do(ctx, http.MethodPatch, "/v1/policy/workloads/"+url.PathEscape(namespace)+"/"+url.PathEscape(name)+"/labels", nil, ch, &r)))
}

func second(_ int, err error) error { return err }

// escapeRef escapes each part of NAMESPACE/NAME.
func escapeRef(ref string) string {
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		return url.PathEscape(ns) + "/" + url.PathEscape(name)
	}
	return url.PathEscape(ref)
}
