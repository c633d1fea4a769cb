// Package client is a typed Go client for Terrane's control API (/v1/ over
// HTTPS, served by internal/server): one method per operation, request and
// answer bodies as Go types, and server refusals as *APIError carrying the
// server's message, status and conflicts. It owns the connection set-up —
// the CA to trust, a client certificate for mTLS, a bearer token — and no
// state.
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
	// Server is the base URL, e.g. https://127.0.0.1:7443. http:// works
	// only with a server started with --insecure.
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
	// Timeout bounds each request (default DefaultTimeout).
	Timeout time.Duration
}

// Client calls one Terrane server. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	http    *http.Client
	poll    *http.Client // no time limit of its own: for long polls
	timeout time.Duration
	token   string
	tokFile *tokenFile // nil without Config.TokenFile
}

// New checks cfg and loads its certificates.
func New(cfg Config) (*Client, error) {
	socket, unix := strings.CutPrefix(cfg.Server, "unix://")
	server := cfg.Server
	if unix {
		// HTTPS over a unix socket: the built-in CA's server certificate
		// is valid for localhost.
		if !strings.HasPrefix(socket, "/") {
			return nil, fmt.Errorf("server %q: want unix:///absolute/path.sock", cfg.Server)
		}
		server = "https://localhost"
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("server %q: want a URL such as https://127.0.0.1:7443 or unix:///run/terrane/server.sock", cfg.Server)
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
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.Proxy = nil // the control plane is reached directly
	if unix {
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
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{base: u, http: &http.Client{Transport: tr, Timeout: timeout}, poll: &http.Client{Transport: tr}, timeout: timeout, token: cfg.Token, tokFile: tokFile}, nil
}

// Server is the base URL the client calls.
func (c *Client) Server() string { return c.base.String() }

// CloseIdleConnections closes connections kept for reuse.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

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
	return c.send(ctx, c.http, method, path, query, body, out)
}

// send is do on hc: the long poll uses a client whose time limit is the
// caller's context.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, query url.Values, body, out any) (int, error) {
	u := c.base.String() + path // path segments are escaped by the caller
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
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
