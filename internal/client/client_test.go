package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/pki"
	"github.com/terrane-net/terrane/internal/server"
)

func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func apiError(t *testing.T, err error, status int, want string) *client.APIError {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T), want an *APIError", err, err)
	}
	if ae.Status != status || !strings.Contains(ae.Message, want) {
		t.Fatalf("status %d %q, want %d containing %q", ae.Status, ae.Message, status, want)
	}
	return ae
}

func TestClientEndToEnd(t *testing.T) {
	srv := clienttest.Start(t)
	ctx := context.Background()
	admin := newClient(t, client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, CertFile: srv.PKI.Admin.Cert, KeyFile: srv.PKI.Admin.Key})

	if h, err := admin.Health(ctx); err != nil || h.Status != "ok" {
		t.Fatalf("health: %v %v", h, err)
	}
	_, err := admin.Topology(ctx)
	if !errors.Is(err, client.ErrNoTopology) {
		t.Fatalf("topology before any: %v, want ErrNoTopology", err)
	}
	if !strings.HasPrefix(server.ErrNoTopology.Error(), "no topology applied yet") {
		t.Fatalf("the server's message changed: %q; update client.noTopologyPrefix", server.ErrNoTopology)
	}

	dry, err := admin.ApplyTopology(ctx, api.TopologyRequest{Topology: clienttest.Topology, DryRun: true})
	if err != nil || !dry.DryRun || dry.Revision != 0 || len(dry.Diff) == 0 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	res, err := admin.ApplyTopology(ctx, api.TopologyRequest{Topology: clienttest.Topology, Budgets: ipam.Budgets{VPC: 50}})
	if err != nil || res.Revision == 0 {
		t.Fatalf("apply: %+v %v", res, err)
	}
	topo, err := admin.Topology(ctx)
	if err != nil || topo.Revision != res.Revision || topo.Topology != clienttest.Topology || topo.Mode != "elastic" || topo.Budgets.VPC != 50 {
		t.Fatalf("topology: %+v %v", topo, err)
	}
	// A stale revision is refused.
	_, err = admin.ApplyTopology(ctx, api.TopologyRequest{Topology: clienttest.Topology, Replaces: topo.Revision - 1})
	apiError(t, err, 409, "get it again")

	h, err := admin.RegisterHost(ctx, "n1", api.HostRequest{IP: netip.MustParseAddr("192.0.2.1"), Labels: map[string]string{"rack": "1"}})
	if err != nil || h.Host.Groups["pods"] != "rack-1" || len(h.Changes) == 0 {
		t.Fatalf("register: %+v %v", h, err)
	}
	if _, err := admin.RegisterHost(ctx, "n2", api.HostRequest{Labels: map[string]string{"rack": "2"}}); err != nil {
		t.Fatal(err)
	}
	hosts, err := admin.Hosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[0].Name != "n1" || hosts[0].IP != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("hosts: %+v %v", hosts, err)
	}

	claim, err := admin.ClaimBlock(ctx, "n2", "pods")
	if err != nil || !claim.Block.IsValid() {
		t.Fatalf("claim: %+v %v", claim, err)
	}
	blocks, err := admin.Blocks(ctx, "pods")
	if err != nil || len(blocks["pods"]) != 1 || blocks["pods"][0].Prefix != claim.Block || blocks["pods"][0].Host != "n2" {
		t.Fatalf("blocks: %+v %v", blocks, err)
	}
	if _, ok := blocks["vms"]; ok {
		t.Fatalf("blocks of network pods lists vms: %v", blocks)
	}
	if _, err := admin.ReleaseBlock(ctx, "n2", "pods", claim.Block); err != nil {
		t.Fatal(err)
	}

	ep, err := admin.AllocateEndpoint(ctx, api.EndpointRequest{ID: "port.1", Host: "n1", Network: "vms", Namespace: "openstack"})
	if err != nil || !ep.Created || !netip.MustParsePrefix("10.1.0.0/16").Contains(ep.Endpoint.Addr) {
		t.Fatalf("allocate: %+v %v", ep, err)
	}
	again, err := admin.AllocateEndpoint(ctx, api.EndpointRequest{ID: "port.1", Host: "n1", Network: "vms", Namespace: "openstack"})
	if err != nil || again.Created || again.Endpoint.Addr != ep.Endpoint.Addr {
		t.Fatalf("allocate again: %+v %v", again, err)
	}
	eps, err := admin.Endpoints(ctx)
	if err != nil || len(eps) != 1 || eps[0].ID != "port.1" {
		t.Fatalf("endpoints: %+v %v", eps, err)
	}
	for _, get := range []func(context.Context) (*api.Report, error){admin.Plan, admin.Utilisation} {
		rep, err := get(ctx)
		if err != nil || len(rep.Networks) != 2 || rep.Networks[1].Allocated != 1 {
			t.Fatalf("report: %+v %v", rep, err)
		}
	}
	if ch, err := admin.ReleaseEndpoint(ctx, "port.1"); err != nil || len(ch) == 0 {
		t.Fatalf("release endpoint: %v %v", ch, err)
	}
	if rep, err := admin.Check(ctx); err != nil || !rep.Clean {
		t.Fatalf("check: %+v %v", rep, err)
	}
	if _, err := admin.RemoveHost(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if m, err := admin.Metrics(ctx); err != nil || !strings.Contains(m, "terrane_store_commits_total") {
		t.Fatalf("metrics: %.200q %v", m, err)
	}

	// Removing rack-1 with n1 in it is refused with the conflicts.
	if _, err := admin.ClaimBlock(ctx, "n1", "pods"); err != nil {
		t.Fatal(err)
	}
	removed := strings.Replace(clienttest.Topology, `      - {name: rack-1, assignment: {matchLabels: {rack: "1"}}}
`, "", 1)
	_, err = admin.ApplyTopology(ctx, api.TopologyRequest{Topology: removed})
	if ae := apiError(t, err, 409, "conflicts"); len(ae.Conflicts) == 0 || ae.Conflicts[0].Detail == "" {
		t.Fatalf("conflicts: %+v", ae.Conflicts)
	}
}

func TestClientAuthorisation(t *testing.T) {
	srv := clienttest.Start(t)
	ctx := context.Background()
	admin := newClient(t, client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, Token: clienttest.AdminToken})
	if _, err := admin.ApplyTopology(ctx, api.TopologyRequest{Topology: clienttest.Topology}); err != nil {
		t.Fatal(err)
	}
	node, err := pki.Issue(srv.PKIDir, pki.RoleNode, "n2")
	if err != nil {
		t.Fatal(err)
	}
	n2 := newClient(t, client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, CertFile: node.Cert, KeyFile: node.Key})
	if _, err := n2.RegisterHost(ctx, "n2", api.HostRequest{Labels: map[string]string{"rack": "2"}}); err != nil {
		t.Fatalf("a node registers itself: %v", err)
	}
	if _, err := n2.ClaimBlock(ctx, "n2", "pods"); err != nil {
		t.Fatalf("a node claims for itself: %v", err)
	}
	_, err = n2.RegisterHost(ctx, "n3", api.HostRequest{Labels: map[string]string{"rack": "2"}})
	apiError(t, err, 403, "may act only on host n2")
	_, err = n2.ApplyTopology(ctx, api.TopologyRequest{Topology: clienttest.Topology})
	apiError(t, err, 403, "admin")

	anon := newClient(t, client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert})
	_, err = anon.Hosts(ctx)
	apiError(t, err, 401, "bearer token or a client certificate")
	wrong := newClient(t, client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, Token: "not-a-token-0123456789"})
	_, err = wrong.Hosts(ctx)
	apiError(t, err, 401, "")

	// Without the CA the server's certificate is not trusted.
	untrusting := newClient(t, client.Config{Server: srv.URL, Token: clienttest.AdminToken})
	if _, err := untrusting.Hosts(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("no CA: %v", err)
	}
	skip := newClient(t, client.Config{Server: srv.URL, Token: clienttest.AdminToken, Insecure: true})
	if _, err := skip.Hosts(ctx); err != nil {
		t.Fatalf("insecure: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  client.Config
		want string
	}{
		{"no scheme", client.Config{Server: "127.0.0.1:7443"}, "want a URL"},
		{"ftp", client.Config{Server: "ftp://x"}, "want a URL"},
		{"cert without key", client.Config{Server: "https://x", CertFile: "a.crt"}, "both"},
		{"missing CA", client.Config{Server: "https://x", CAFile: "/nonexistent/ca.crt"}, "read CA"},
		{"bad list entry", client.Config{Server: "https://a:1,ftp://b"}, `entry 2 "ftp://b": want a URL`},
		{"relative socket in a list", client.Config{Server: "unix://run/a.sock,https://a:1"}, `entry 1 "unix://run/a.sock": want a URL`},
		{"empty list entry", client.Config{Server: "https://a:1,,https://b:1"}, "entry 2 is empty"},
		{"listed twice", client.Config{Server: "https://a:1,https://a:1"}, `entry 2 "https://a:1" is listed twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := client.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestErrorBodies: answers that are not the API's JSON still give an
// *APIError with the status and some text; names are escaped as one path
// segment.
func TestErrorBodies(t *testing.T) {
	var paths []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.EscapedPath())
		switch r.URL.Path {
		case "/v1/hosts":
			http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
		case "/v1/endpoints":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error": "endpoint a/b: not found"}`))
		}
	}))
	defer hs.Close()
	c := newClient(t, client.Config{Server: hs.URL + "/"})
	ctx := context.Background()
	_, err := c.Hosts(ctx)
	apiError(t, err, 502, "bad gateway")
	_, err = c.Endpoints(ctx)
	apiError(t, err, 503, "Service Unavailable")
	_, err = c.ReleaseEndpoint(ctx, "a/b")
	apiError(t, err, 404, "endpoint a/b: not found")
	if want := "/v1/endpoints/a%2Fb"; paths[len(paths)-1] != want {
		t.Fatalf("path %s, want %s", paths[len(paths)-1], want)
	}
	if errors.Is(err, client.ErrNoTopology) {
		t.Fatal("a 404 is ErrNoTopology")
	}
}

// TestUnreachable: what counts as a server out of reach — no answer, or a
// proxy's 502/503/504 — and what is an answer.
func TestUnreachable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "unix", Err: syscall.ECONNREFUSED}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("claim a block of pods: %w", refused), true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{&client.APIError{Status: 503}, true},
		{&client.APIError{Status: 502}, true},
		{&client.APIError{Status: 504}, true},
		{fmt.Errorf("register host n1: %w", &client.APIError{Status: 409}), false},
		{&client.APIError{Status: 500}, false},
		{&client.APIError{Status: 403}, false},
	} {
		if got := client.Unreachable(c.err); got != c.want {
			t.Errorf("Unreachable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
