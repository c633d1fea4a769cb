package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
	"github.com/terrane-net/terrane/internal/dataplane/fake"
	"github.com/terrane-net/terrane/internal/store/bolt"
)

// noInterfaceHost holds no interface with the agent's --ip.
type noInterfaceHost struct{ fakeHost }

func (*noInterfaceHost) InterfaceOf(a netip.Addr) (string, error) {
	return "", errors.New("no interface holds " + a.String())
}

// runAgent runs an agent with cfg's gaps filled by fakes and returns what
// Run returned, failing the test if Run does not return within 5 s.
func runAgent(t *testing.T, cfg Config) error {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "agent.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dp, _ := fake.New(fake.Options{Table: 250})
	cfg.Dataplane, cfg.State, cfg.Table, cfg.RulePriority = dp, st, 250, 100
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.HostOps == nil {
		cfg.HostOps = &fakeHost{sysctls: map[string]string{}}
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		cancel()
		<-done
		t.Fatalf("Run did not return: status %+v", a.Status(context.Background()))
		return nil
	}
}

// An agent that cannot start for a reason retrying cannot fix — an --ip no
// interface holds, credentials the server refuses, a host its identity may
// not act as — ends Run at once with the cause, instead of answering "not
// ready: starting" forever.
func TestAgentStartFailsFast(t *testing.T) {
	srv := clienttest.Start(t)
	admin, err := client.New(client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, Token: clienttest.AdminToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ApplyTopology(context.Background(), api.TopologyRequest{Topology: flatTopology}); err != nil {
		t.Fatal(err)
	}
	wrongToken, err := client.New(client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, Token: "not-a-token-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	n1, err := client.New(client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, Token: clienttest.NodeToken})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"rack": "1"}
	ip := netip.MustParseAddr("192.168.10.11")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no interface holds --ip", Config{Host: "n1", IP: ip, Labels: labels, Server: admin, HostOps: &noInterfaceHost{}}, "--ip 192.168.10.11: no interface holds 192.168.10.11"},
		{"unknown credentials", Config{Host: "n1", IP: ip, Labels: labels, Server: wrongToken}, "HTTP 401"},
		{"another host's identity", Config{Host: "n2", IP: ip, Labels: labels, Server: n1}, "may act only on host n1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runAgent(t, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestAgentRefusesBadHostName(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "agent.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = New(context.Background(), Config{Host: "a/b", Server: &client.Client{}, Dataplane: &fake.Dataplane{}, HostOps: &fakeHost{}, State: st})
	if err == nil || !strings.Contains(err.Error(), "--host") {
		t.Fatalf("New(host a/b) = %v; want a refusal naming --host", err)
	}
}
