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
// serves it on a local listener.
func (c *Client) Proxy() http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(c.base)
			pr.Out.Host = c.base.Host
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
		Transport:     c.poll.Transport,
		FlushInterval: -1,
	}
}
