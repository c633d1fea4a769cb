// Package clienttest runs a real Terrane control API server in-process —
// embedded store in a temporary directory, certificates from the built-in CA,
// bearer tokens — for tests of the client and of `terrane ctl`.
package clienttest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/pki"
	"github.com/terrane-net/terrane/internal/server"
	"github.com/terrane-net/terrane/internal/store/bolt"
)

// Tokens the server accepts: AdminToken is the admin "ops", NodeToken the
// node "n1".
const (
	AdminToken = "admin-token-0123456789abcdef"
	NodeToken  = "node1-token-0123456789abcdef"
)

// Topology has two networks, pods (default) and vms (namespace
// openstack), and two racks: hosts with label rack=1 or rack=2.
const Topology = `networks:
  - {name: pods, cidr: 10.0.0.0/16, blockSize: 28, default: true}
  - {name: vms, cidr: 10.1.0.0/16, blockSize: 28, namespaces: [openstack]}
topologies:
  - networks: [pods, vms]
    groups:
      - {name: rack-1, assignment: {matchLabels: {rack: "1"}}}
      - {name: rack-2, assignment: {matchLabels: {rack: "2"}}}
`

// Server is a running server.
type Server struct {
	// URL is the API's base URL.
	URL string
	// PKIDir holds the CA (pki.Init's files); issue more certificates
	// there with pki.Issue.
	PKIDir string
	PKI    pki.Layout
	// TokensFile is the server's token file.
	TokensFile string
}

// Start runs a server over TLS that accepts client certificates from its
// CA and the tokens above; it stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, "127.0.0.1:0")
}

// StartUnix is Start serving on a unix socket: URL is unix:///….sock.
func StartUnix(t testing.TB) *Server {
	t.Helper()
	// Socket paths are limited to 108 bytes: t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "terrane-api-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return start(t, server.UnixScheme+filepath.Join(dir, "server.sock"))
}

func start(t testing.TB, listen string) *Server {
	t.Helper()
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	l, err := pki.Init(pkiDir, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(AdminToken+" admin ops\n"+NodeToken+" node n1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(dir, "terrane.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Config{
			Listen:       listen,
			Store:        st,
			CertFile:     l.Server.Cert,
			KeyFile:      l.Server.Key,
			ClientCAFile: l.CA.Cert,
			TokensFile:   tokens,
			Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:        func(addr string) { ready <- addr },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	select {
	case addr := <-ready:
		url := "https://" + addr
		if strings.HasPrefix(listen, server.UnixScheme) {
			url = listen
		}
		return &Server{URL: url, PKIDir: pkiDir, PKI: l, TokensFile: tokens}
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("server did not start: %v", err)
		return nil
	}
}
