package client

import (
	"net/http"
	"net/http/httputil"
)

// Proxy forwards every request it serves to the server, authenticated as
// the client: over its connection (the client certificate, the CA it
// trusts) and with its bearer token, as `kubectl proxy` does. Whatever
// credentials the request carried are dropped. Answers are passed on as
// they come (server-sent events are not buffered). `terrane ctl ui`
// serves it on a local listener. With several servers, a request goes to
// the one that last answered, and one without a body (the page's reads)
// to the next when it gives no answer at all.
func (c *Client) Proxy() http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The server is chosen per attempt, in proxyTransport.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
			token := c.token
			if c.tokFile != nil {
				// An unreadable file sends no token: the server's 401 says so.
				token, _ = c.tokFile.token()
			}
			if token != "" {
				pr.Out.Header.Set("Authorization", "Bearer "+token)
			}
		},
		Transport:     proxyTransport{c},
		FlushInterval: -1,
	}
}

// proxyTransport sends a proxied request to the client's servers.
type proxyTransport struct{ c *Client }

func (p proxyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		// A body is read once: the server that last answered, only.
		return p.c.servers[p.c.last.Load()].roundTrip(req)
	}
	var resp *http.Response
	_, err := p.c.failover(req.Context(), req.Method, req.URL.Path, func(t *target) (int, error) {
		r, err := t.roundTrip(req)
		if err != nil {
			return 0, err
		}
		resp = r
		return r.StatusCode, nil // any answer, a 502 too, is passed on
	})
	return resp, err
}

// roundTrip sends req, whose URL is a path, to t.
func (t *target) roundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	u := *req.URL
	u.Scheme, u.Host = t.base.Scheme, t.base.Host
	u.Path = t.base.Path + req.URL.Path
	if req.URL.RawPath != "" {
		u.RawPath = t.base.EscapedPath() + req.URL.RawPath
	}
	out.URL, out.Host = &u, t.base.Host
	return t.poll.Transport.RoundTrip(out)
}
