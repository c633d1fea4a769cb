// Package client is a typed Go client for Terrane's control API (/v1/ over
// HTTPS, served by internal/server): one method per operation, request and
// answer bodies as Go types, and server refusals as *APIError carrying the
// server's message, status and conflicts. It owns the connection set-up —
// the CA to trust, a client certificate for mTLS, a bearer token — and,
// of state, only which server answered last.
//
// # Several servers
//
// Config.Server may list the servers of one control plane (several
// `terrane server` processes on one store), as etcd's clients take a list
// of endpoints. Each call goes to the server that last answered. When that
// server gives no answer — Unreachable: refused, reset, timed out, or a
// 502/503/504 — the call is sent to the next server, each at most once per
// call; when none answers, the error is an *UnreachableError naming each
// server's failure. Any other answer (2xx, 4xx, a 500 with the API's
// error) is returned as it is: the server was reached. A caller's context
// that is cancelled or expired ends the call at once, on no other server.
// Long polls (Snapshot, SnapshotOf, Policy with after > 0) fail over the
// same way, with the same after, which every server of one store
// understands alike.
//
// A call is sent to a second server only when the first gave no answer.
// That includes an answer lost after the first server acted (the
// connection dropped mid-call, a timeout, a server's own 503 when its
// store did not confirm a write in time): the call then runs twice. Which
// calls are safe to run twice:
//
//   - every read (GET), every PUT (RegisterHost, Heartbeat, ReportBGP,
//     SetNamespaceNetwork, ApplyPolicy, label changes: each sets a value)
//     and ReportAddresses (a full report replaces the last; a delta
//     repeated on the generation it was based on is refused with a 409 on
//     field "base", and the agent then sends a full report);
//   - AllocateEndpoint, idempotent by ID: a repeat with the same ID and
//     host (and network and address, if given) answers the endpoint the
//     first call made, with Created false, from any server of the store —
//     a server that has not seen the first write yet conflicts on the
//     endpoint's record, reloads and answers the same;
//   - ReleaseEndpoint (a repeat releases nothing and answers no changes),
//     ReleaseBlock, RemoveHost and DeletePolicyObject (a repeat answers
//     404; the agent takes a 404 for a block already given back) and
//     Repair (a repeat finds less to release);
//   - ApplyTopology without Replaces (the same topology again writes
//     nothing); with Replaces, a repeat is refused with a 409 on field
//     "replaces" although the first applied: read the topology again;
//   - ClaimBlock is not idempotent: a repeat claims one block more, which
//     the host then owns. The agent adopts every block the server lists
//     as its own at its next snapshot and gives back empty blocks it does
//     not need (after its surplus hold); the audit (`terrane ctl check`)
//     finds nothing wrong with an empty block of a live host.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
)

// DefaultTimeout bounds one request when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// maxResponse bounds what the client reads of an answer.
const maxResponse = 64 << 20

// Config says how to reach and authenticate to the server.
type Config struct {
	// Server is the server's base URL, e.g. https://127.0.0.1:7443, or
	// unix:///run/terrane/server.sock; http:// works only with a server
	// started with --insecure. Several servers of one control plane (one
	// store) are given as a comma-separated list: the client fails over
	// between them (see the package documentation).
	Server string
	// CAFile is the CA the server's certificate must chain to (the ca.crt
	// of `terrane ctl certs init`); empty trusts the system roots.
	CAFile string
	// CertFile and KeyFile are a client certificate for mTLS; give both or
	// neither.
	CertFile, KeyFile string
	// Token is a bearer token.
	Token string
	// TokenFile holds a bearer token that another process rotates (a
	// projected Kubernetes ServiceAccount token): read again every
	// TokenFileRefresh and after a 401. Not with Token.
	TokenFile string
	// Insecure skips verifying the server's certificate (tests only).
	Insecure bool
	// Timeout bounds each request to one server (default DefaultTimeout).
	Timeout time.Duration
}

// Client calls the servers of one control plane. It is safe for
// concurrent use.
type Client struct {
	servers []*target
	// last is the index in servers of the server that last answered: each
	// call is sent there first.
	last    atomic.Int32
	timeout time.Duration
	token   string
	tokFile *tokenFile // nil without Config.TokenFile
}

// target is one server of Config.Server, with a transport of its own (a
// unix socket needs its own dialer).
type target struct {
	name string   // as configured: https://host:port or unix:///path.sock
	base *url.URL // what requests are made to (https://localhost for a socket)
	http *http.Client
	poll *http.Client // no time limit of its own: for long polls
}

// New checks cfg and loads its certificates.
func New(cfg Config) (*Client, error) {
	names, err := SplitServers(cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", cfg.Server, err)
	}
	if cfg.Token != "" && cfg.TokenFile != "" {
		return nil, errors.New("give a token or a token file, not both")
	}
	var tokFile *tokenFile
	if cfg.TokenFile != "" {
		if tokFile, err = newTokenFile(cfg.TokenFile); err != nil {
			return nil, err
		}
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Insecure}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	if cfg.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	c := &Client{timeout: timeout, token: cfg.Token, tokFile: tokFile}
	for _, name := range names {
		c.servers = append(c.servers, newTarget(name, tlsCfg, timeout))
	}
	return c, nil
}

// SplitServers checks a Config.Server value, a server URL or a
// comma-separated list of them, and returns its entries. Its error names
// the entry at fault and the fix; New adds the value.
func SplitServers(list string) ([]string, error) {
	const want = "want a URL such as https://127.0.0.1:7443 or unix:///run/terrane/server.sock"
	entries := strings.Split(list, ",")
	if len(entries) == 1 {
		if checkServer(list) != nil {
			return nil, errors.New(want)
		}
		return entries, nil
	}
	seen := map[string]bool{}
	for i, e := range entries {
		e = strings.TrimSpace(e)
		entries[i] = e
		switch {
		case e == "":
			return nil, fmt.Errorf("entry %d is empty: separate the servers with single commas, e.g. https://10.0.0.1:7443,https://10.0.0.2:7443", i+1)
		case checkServer(e) != nil:
			return nil, fmt.Errorf("entry %d %q: %s; separate several servers with commas", i+1, e, want)
		case seen[e]:
			return nil, fmt.Errorf("entry %d %q is listed twice: give each server once", i+1, e)
		}
		seen[e] = true
	}
	return entries, nil
}

// checkServer checks one server: https:// or http:// with a host, or
// unix:// with an absolute path.
func checkServer(s string) error {
	if socket, ok := strings.CutPrefix(s, "unix://"); ok {
		if !strings.HasPrefix(socket, "/") {
			return errors.New("want unix:///absolute/path.sock")
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("not a URL")
	}
	return nil
}

// newTarget makes the transport for one checked server.
func newTarget(name string, tlsCfg *tls.Config, timeout time.Duration) *target {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg.Clone()
	tr.Proxy = nil // the control plane is reached directly
	base := name
	if socket, ok := strings.CutPrefix(name, "unix://"); ok {
		// HTTPS over a unix socket: the built-in CA's server certificate
		// is valid for localhost.
		base = "https://localhost"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}
	}
	// HTTP/1.1: HTTP/2 hides why a TLS 1.3 server refused the client
	// certificate ("client conn could not be established"), and requests
	// here are small and few.
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	u, _ := url.Parse(base) // checked by checkServer
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &target{name: name, base: u, http: &http.Client{Transport: tr, Timeout: timeout}, poll: &http.Client{Transport: tr}}
}

// Server is the server the client calls first: the one that last
// answered (the first listed until one has), as configured
// (https://host:port or unix:///path.sock).
func (c *Client) Server() string { return c.servers[c.last.Load()].name }

// Servers lists the servers the client calls, in the configured order.
func (c *Client) Servers() []string {
	out := make([]string, len(c.servers))
	for i, t := range c.servers {
		out[i] = t.name
	}
	return out
}

// CloseIdleConnections closes connections kept for reuse.
func (c *Client) CloseIdleConnections() {
	for _, t := range c.servers {
		t.http.CloseIdleConnections()
	}
}

// ErrNoTopology: the server has no topology yet; apply one first.
var ErrNoTopology = errors.New("no topology applied yet")

// noTopologyPrefix starts the server's message for ErrNoTopology
// (server.ErrNoTopology); tests hold the two together.
const noTopologyPrefix = "no topology applied yet"

// APIError is the server's refusal of a request.
type APIError struct {
	Method, Path string
	// Status is the HTTP status code.
	Status int
	// Message is the server's explanation.
	Message string
	// Field names the request field at fault, when the server knows it.
	Field   string
	Details []string
	// Conflicts are why a topology change was refused: the live state it
	// would orphan.
	Conflicts []ipam.Finding
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %s (HTTP %d)", e.Method, e.Path, e.Message, e.Status)
}

// Unwrap lets callers test errors.Is(err, ErrNoTopology).
func (e *APIError) Unwrap() error {
	if e.Status == http.StatusConflict && strings.HasPrefix(e.Message, noTopologyPrefix) {
		return ErrNoTopology
	}
	return nil
}

// do sends body (JSON, if not nil) and decodes a 2xx answer into out (if
// not nil). It returns the status.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) (int, error) {
	return c.send(ctx, 0, method, path, query, body, out)
}

// send is do with failover (failover.go); poll > 0 makes it a long poll
// that the server may hold for poll.
func (c *Client) send(ctx context.Context, poll time.Duration, method, path string, query url.Values, body, out any) (int, error) {
	u := path // path segments are escaped by the caller
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		payload = b
	}
	return c.failover(ctx, method, path, func(t *target) (int, error) {
		hc, actx := t.http, ctx
		if poll > 0 {
			// The poll's own client has no time limit: the caller's
			// context bounds it, or wait plus the timeout for each server.
			hc = t.poll
			if _, ok := ctx.Deadline(); !ok {
				var cancel context.CancelFunc
				actx, cancel = context.WithTimeout(ctx, poll+c.timeout)
				defer cancel()
			}
		}
		return c.sendTo(actx, t, hc, method, path, u, payload, out)
	})
}

// sendTo sends one request to t over hc.
func (c *Client) sendTo(ctx context.Context, t *target, hc *http.Client, method, path, pathQuery string, payload []byte, out any) (int, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.base.String()+pathQuery, rd)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	token := c.token
	if c.tokFile != nil {
		if token, err = c.tokFile.token(); err != nil {
			return 0, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err // a *url.Error naming the method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && c.tokFile != nil {
		c.tokFile.refused() // rotated since we read it?
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &APIError{Method: method, Path: path, Status: resp.StatusCode}
		var eb api.Error
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			ae.Message, ae.Field, ae.Details, ae.Conflicts = eb.Error, eb.Field, eb.Details, eb.Conflicts
		} else {
			// Not the API's JSON: a proxy, or not a Terrane server.
			ae.Message = strings.TrimSpace(string(data))
			if len(ae.Message) > 200 {
				ae.Message = ae.Message[:200] + "…"
			}
			if ae.Message == "" {
				ae.Message = http.StatusText(resp.StatusCode)
			}
		}
		return resp.StatusCode, ae
	}
	if raw, ok := out.(writerTo); ok {
		_, err := raw.w.Write(data)
		return resp.StatusCode, err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Unreachable reports whether err says the server could not be asked: no
// answer at all (refused, reset, timed out), or an answer from something in
// front of it that could not reach it (502, 503, 504). A server that
// answered with any other status was reached; a call the caller cancelled
// says nothing of the server.
func Unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ue *UnreachableError
	if errors.As(err, &ue) {
		return true
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return true
}
