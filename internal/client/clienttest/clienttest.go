// Package clienttest runs a real Terrane control API server in-process —
// embedded store in a temporary directory, certificates from the built-in CA,
// bearer tokens — for tests of the client and of `terrane ctl`.
package clienttest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/terrane-net/terrane/internal/pki"
	"github.com/terrane-net/terrane/internal/server"
	"github.com/terrane-net/terrane/internal/store"
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

	ln   *dropListener
	stop func()
}

// Start runs a server over TLS that accepts client certificates from its
// CA and the tokens above; it stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return Cluster(t, 1, false)[0]
}

// StartUnix is Start serving on a unix socket: URL is unix:///….sock.
func StartUnix(t testing.TB) *Server {
	t.Helper()
	return Cluster(t, 1, true)[0]
}

// Cluster runs n servers over one store, with one CA and one tokens file:
// an HA control plane, where what is written through one server is read
// through any. With unix each serves on a unix socket of its own. They
// stop when the test ends, or each when Kill is called.
func Cluster(t testing.TB, n int, unix bool) []*Server {
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
	// Registered first, so it runs last: after every server has stopped.
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	var sockDir string
	if unix {
		// Socket paths are limited to 108 bytes: t.TempDir can be longer.
		if sockDir, err = os.MkdirTemp("", "terrane-api-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(sockDir) })
	}
	out := make([]*Server, n)
	for i := range out {
		listen := "127.0.0.1:0"
		if unix {
			listen = server.UnixScheme + filepath.Join(sockDir, fmt.Sprintf("server%d.sock", i))
		}
		srv := &Server{PKIDir: pkiDir, PKI: l, TokensFile: tokens}
		srv.start(t, st, listen)
		out[i] = srv
	}
	return out
}

// Kill stops the server as a killed process would stop: its listener is
// closed (a unix socket's file removed) and every connection open to it
// dropped at once, long polls included. Later calls do nothing.
func (s *Server) Kill() { s.stop() }

func (s *Server) start(t testing.TB, st store.Store, listen string) {
	t.Helper()
	ln, err := server.Listen(listen)
	if err != nil {
		t.Fatal(err)
	}
	s.ln = &dropListener{Listener: ln, conns: map[net.Conn]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Config{
			Listener:     s.ln,
			Store:        st,
			CertFile:     s.PKI.Server.Cert,
			KeyFile:      s.PKI.Server.Key,
			ClientCAFile: s.PKI.CA.Cert,
			TokensFile:   s.TokensFile,
			Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:        func(addr string) { ready <- addr },
		})
	}()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			s.ln.drop() // the connections now; the listener as Run stops
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server %s: %v", s.URL, err)
			}
		})
	}
	t.Cleanup(s.stop)
	select {
	case addr := <-ready:
		s.URL = "https://" + addr
		if strings.HasPrefix(listen, server.UnixScheme) {
			s.URL = listen
		}
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("server did not start: %v", err)
	}
}

// dropListener keeps the connections it accepted, to drop them all.
type dropListener struct {
	net.Listener
	mu       sync.Mutex
	dropped  bool
	conns    map[net.Conn]bool
	accepted int
}

// Accepted counts the connections the server has accepted.
func (s *Server) Accepted() int {
	s.ln.mu.Lock()
	defer s.ln.mu.Unlock()
	return s.ln.accepted
}

func (l *dropListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accepted++
	if l.dropped {
		c.Close() // a connection that came too late: dropped too
		return &trackedConn{Conn: c, l: l}, nil
	}
	l.conns[c] = true
	return &trackedConn{Conn: c, l: l}, nil
}

// drop closes every connection accepted, and those accepted from now on.
func (l *dropListener) drop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropped = true
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
}

// trackedConn leaves its listener's set when closed.
type trackedConn struct {
	net.Conn
	l *dropListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c.Conn)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
