package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
)

// TestBundle: a bundle's server certificates verify against its CA for
// each host they were issued for and for no other, and its admin
// certificate is a client certificate of the admin role.
func TestBundle(t *testing.T) {
	b, err := NewBundle(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := b.ServerCert([]string{"terrane-server.terrane-system.svc", "10.96.0.10", "localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.CACert)
	for _, host := range []string{"terrane-server.terrane-system.svc", "10.96.0.10", "localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.96.0.11"}); err == nil {
		t.Error("the certificate verifies for an address it was not issued for")
	}
	if !leaf.IPAddresses[0].Equal(net.ParseIP("10.96.0.10")) {
		t.Errorf("IP SANs %v", leaf.IPAddresses)
	}
	admin, err := tls.X509KeyPair(b.AdminCert, b.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	ac, _ := x509.ParseCertificate(admin.Certificate[0])
	if ac.Subject.Organization[0] != RoleAdmin {
		t.Errorf("admin certificate organization %v", ac.Subject.Organization)
	}

	// Another bundle's CA does not go with this one's admin certificate.
	other, err := NewBundle(0)
	if err != nil {
		t.Fatal(err)
	}
	mixed := b
	mixed.CACert, mixed.CAKey = other.CACert, other.CAKey
	if err := mixed.Check(); err == nil || !strings.Contains(err.Error(), "not signed by the CA") {
		t.Errorf("Check of a bundle with another CA: %v", err)
	}
	mixed = b
	mixed.CAKey = other.CAKey
	if err := mixed.Check(); err == nil || !strings.Contains(err.Error(), "is not the key of") {
		t.Errorf("Check of a bundle with another CA key: %v", err)
	}
	if _, _, err := b.ServerCert([]string{"not a name!"}, 0); err == nil {
		t.Error("ServerCert took a bad host name")
	}
}
