package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/pki"
)

// Run refuses a configuration that would expose the server: --insecure
// reachable from other machines, secrets other users may read. It refuses
// before serving, naming the flag and the fix.
func TestRunRefusesExposure(t *testing.T) {
	dir := t.TempDir()
	l, err := pki.Init(filepath.Join(dir, "pki"), pki.InitOptions{ServerHosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(adminToken+" admin ops\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	openKey := filepath.Join(dir, "open.key")
	key, err := os.ReadFile(l.Server.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(openKey, key, 0o604); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokens, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := os.Chmod(openKey, 0o604); err != nil {
		t.Fatal(err)
	}
	tlsCfg := func(c Config) Config {
		c.CertFile, c.KeyFile, c.ClientCAFile = l.Server.Cert, l.Server.Key, l.CA.Cert
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"insecure on all IPv4 addresses", Config{Listen: "0.0.0.0:0", Insecure: true}, []string{"--insecure", "--listen \"0.0.0.0:0\"", "127.0.0.1"}},
		{"insecure on all IPv6 addresses", Config{Listen: "[::]:0", Insecure: true}, []string{"--insecure", "[::]:0"}},
		{"insecure on every address", Config{Listen: ":0", Insecure: true}, []string{"--insecure"}},
		{"insecure on a public address", Config{Listen: "192.0.2.1:7443", Insecure: true}, []string{"--insecure"}},
		{"insecure on a host name", Config{Listen: "server.example:7443", Insecure: true}, []string{"--insecure"}},
		{"world-readable tokens", tlsCfg(Config{Listen: "127.0.0.1:0", TokensFile: tokens}), []string{"--tokens " + tokens, "0644", "chmod 600 " + tokens}},
		{"world-readable TLS key", Config{Listen: "127.0.0.1:0", CertFile: l.Server.Cert, KeyFile: openKey, ClientCAFile: l.CA.Cert}, []string{"--tls-key " + openKey, "0604", "chmod 600 " + openKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Store = openBolt(t, t.TempDir())
			tc.cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			served := false
			tc.cfg.Ready = func(string) { served = true; cancel() }
			err := Run(ctx, tc.cfg)
			if served || err == nil {
				t.Fatalf("Run served (err %v); want a refusal", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// --insecure on loopback or a unix socket is allowed.
func TestLoopbackOnly(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:7443", "127.1.2.3:0", "[::1]:7443", "localhost:7443", "LOCALHOST:1", "[::ffff:127.0.0.1]:1", "unix:///run/terrane/server.sock"} {
		if err := loopbackOnly(listen); err != nil {
			t.Errorf("loopbackOnly(%q) = %v", listen, err)
		}
	}
	for _, listen := range []string{"0.0.0.0:7443", "[::]:7443", ":7443", "10.0.0.1:7443", "[2001:db8::1]:7443", "localhost.example:7443", "nohost"} {
		if err := loopbackOnly(listen); err == nil {
			t.Errorf("loopbackOnly(%q) accepted", listen)
		}
	}
}

func TestCheckDataDir(t *testing.T) {
	dir := t.TempDir()
	if err := CheckDataDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	err := CheckDataDir(dir)
	if err == nil || !strings.Contains(err.Error(), "0777") || !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Fatalf("CheckDataDir(0777) = %v; want a refusal naming the mode and the fix", err)
	}
}
