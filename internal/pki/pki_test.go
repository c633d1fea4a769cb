package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// verify checks that the certificate in p chains to the CA for usage, and
// that its key is the certificate's.
func verify(t *testing.T, ca string, p Pair, usage x509.ExtKeyUsage, dnsName string) *x509.Certificate {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, ca))
	c := readCert(t, p.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: dnsName}); err != nil {
		t.Fatalf("%s does not verify: %v", p.Cert, err)
	}
	if _, err := tls.LoadX509KeyPair(p.Cert, p.Key); err != nil {
		t.Fatalf("%s and %s are not a pair: %v", p.Cert, p.Key, err)
	}
	return c
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	l, err := Init(dir, InitOptions{ServerHosts: []string{"terrane.example", "10.0.0.1", "::1"}, Validity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, l.CA.Cert)
	if !ca.IsCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA: IsCA %v MaxPathLen %d", ca.IsCA, ca.MaxPathLen)
	}
	if ca.NotAfter.Before(time.Now().Add(9 * 365 * 24 * time.Hour)) {
		t.Errorf("CA expires %s: should outlive what it issues", ca.NotAfter)
	}

	srv := verify(t, l.CA.Cert, l.Server, x509.ExtKeyUsageServerAuth, "terrane.example")
	if !slices.Equal(srv.DNSNames, []string{"terrane.example"}) {
		t.Errorf("server DNS SANs %v", srv.DNSNames)
	}
	var ips []string
	for _, ip := range srv.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"10.0.0.1", "::1"}) {
		t.Errorf("server IP SANs %v", ips)
	}
	if err := srv.VerifyHostname("10.0.0.1"); err != nil {
		t.Error(err)
	}
	if err := srv.VerifyHostname("other.example"); err == nil {
		t.Error("server certificate valid for a host it does not list")
	}
	if got := time.Until(srv.NotAfter); got > 49*time.Hour || got < 47*time.Hour {
		t.Errorf("server certificate validity %s, want 48h", got)
	}
	// The server certificate is no client identity.
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server certificate verifies for client auth")
	}

	admin := verify(t, l.CA.Cert, l.Admin, x509.ExtKeyUsageClientAuth, "")
	if admin.Subject.CommonName != "admin" || !slices.Equal(admin.Subject.Organization, []string{RoleAdmin}) {
		t.Errorf("admin subject %v", admin.Subject)
	}

	for _, p := range []Pair{l.CA, l.Server, l.Admin} {
		if m := mode(t, p.Key); m != 0o600 {
			t.Errorf("%s mode %o, want 600", p.Key, m)
		}
		if m := mode(t, p.Cert); m != 0o644 {
			t.Errorf("%s mode %o, want 644", p.Cert, m)
		}
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("directory mode %o, want 700", m)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestInitDefaultsToLoopback(t *testing.T) {
	l, err := Init(t.TempDir(), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := readCert(t, l.Server.Cert)
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := srv.VerifyHostname(h); err != nil {
			t.Errorf("default server certificate: %v", err)
		}
	}
}

func TestInitRefusesToReplaceCA(t *testing.T) {
	dir := t.TempDir()
	l, err := Init(dir, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(l.CA.Key)
	_, err = Init(dir, InitOptions{})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "force") {
		t.Fatalf("second Init: %v, want ErrExists naming force", err)
	}
	if after, _ := os.ReadFile(l.CA.Key); string(after) != string(before) {
		t.Fatal("a refused Init changed the CA key")
	}
	if _, err := Init(dir, InitOptions{Force: true}); err != nil {
		t.Fatalf("forced Init: %v", err)
	}
	if after, _ := os.ReadFile(l.CA.Key); string(after) == string(before) {
		t.Fatal("forced Init kept the old CA key")
	}
	// Certificates from the new CA chain to it.
	verify(t, l.CA.Cert, l.Admin, x509.ExtKeyUsageClientAuth, "")
}

func TestInitBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts InitOptions
		want string
	}{
		{"bad host", InitOptions{ServerHosts: []string{"not a host"}}, "neither an IP address nor a DNS name"},
		{"negative validity", InitOptions{Validity: -time.Hour}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			_, err := Init(dir, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Fatal("bad input created the directory")
			}
		})
	}
}

func TestIssue(t *testing.T) {
	dir := t.TempDir()
	l, err := Init(dir, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ role, name string }{
		{RoleNode, "n1"},
		{RoleNode, "rack-1.host-07"},
		{RoleAdmin, "ops"},
	} {
		t.Run(tc.role+" "+tc.name, func(t *testing.T) {
			p, err := Issue(dir, tc.role, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if p != PairIn(dir, tc.name) {
				t.Fatalf("wrote %v", p)
			}
			c := verify(t, l.CA.Cert, p, x509.ExtKeyUsageClientAuth, "")
			if c.Subject.CommonName != tc.name || !slices.Equal(c.Subject.Organization, []string{tc.role}) {
				t.Errorf("subject %v, want CN %s O %s", c.Subject, tc.name, tc.role)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool(t, l.CA.Cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
				t.Error("a client certificate verifies as a server")
			}
			if m := mode(t, p.Key); m != 0o600 {
				t.Errorf("key mode %o, want 600", m)
			}
			if _, err := Issue(dir, tc.role, tc.name); !errors.Is(err, ErrExists) {
				t.Errorf("second Issue: %v, want ErrExists", err)
			}
		})
	}
}

func pool(t *testing.T, ca string) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(readCert(t, ca))
	return p
}

func TestIssueBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := Issue(dir, RoleNode, "n1"); err == nil || !strings.Contains(err.Error(), "certs init") {
		t.Fatalf("Issue without a CA: %v, want a hint to run certs init", err)
	}
	if _, err := Init(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ role, name, want string }{
		{"root", "n1", "use admin or node"},
		{RoleNode, "", "name"},
		{RoleNode, "../etc/passwd", "name"},
		{RoleNode, ".hidden", "name"},
		{RoleNode, "ca", "choose another name"},
		{RoleAdmin, "server", "choose another name"},
		{RoleAdmin, "admin", "already exists"},
	} {
		t.Run(tc.role+" "+tc.name, func(t *testing.T) {
			if _, err := Issue(dir, tc.role, tc.name); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// A key that is not the CA's is refused.
	other := t.TempDir()
	if _, err := Init(other, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(other, "ca.key"))
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Issue(dir, RoleNode, "n9"); err == nil || !strings.Contains(err.Error(), "is not the key of") {
		t.Fatalf("mismatched CA key: %v", err)
	}
}

// TestMutualTLS: a server with the server certificate and a client with an
// issued node certificate complete a handshake that verifies both ways.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	l, err := Init(dir, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node, err := Issue(dir, RoleNode, "n1")
	if err != nil {
		t.Fatal(err)
	}
	srvPair, _ := tls.LoadX509KeyPair(l.Server.Cert, l.Server.Key)
	cliPair, _ := tls.LoadX509KeyPair(node.Cert, node.Key)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srvPair},
		ClientCAs:    pool(t, l.CA.Cert),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		st := tc.ConnectionState()
		peer <- st.VerifiedChains[0][0].Subject.CommonName + "/" + st.VerifiedChains[0][0].Subject.Organization[0]
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c, err := tls.Dial("tcp", net.JoinHostPort("localhost", port), &tls.Config{RootCAs: pool(t, l.CA.Cert), Certificates: []tls.Certificate{cliPair}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-peer; got != "n1/node" {
		t.Fatalf("server saw %q, want n1/node", got)
	}
}
