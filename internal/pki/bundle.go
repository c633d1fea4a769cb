package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Bundle is a CA and an admin client certificate held in memory as PEM,
// for a store of secrets other than a directory (a Kubernetes Secret):
// several servers that share one Bundle trust the same clients and each
// issue themselves a server certificate from it (ServerCert).
type Bundle struct {
	CACert, CAKey       []byte
	AdminCert, AdminKey []byte
}

// NewBundle creates a CA (ten years) and an admin certificate signed by it
// (validity, default DefaultValidity).
func NewBundle(validity time.Duration) (Bundle, error) {
	if validity < 0 {
		return Bundle{}, fmt.Errorf("validity %s: must not be negative", validity)
	}
	if validity == 0 {
		validity = DefaultValidity
	}
	now := time.Now()
	ca, caDER, err := newAuthority(now, max(caValidity, validity))
	if err != nil {
		return Bundle{}, fmt.Errorf("create CA: %w", err)
	}
	caKey, err := pemKey(ca.key)
	if err != nil {
		return Bundle{}, err
	}
	tmpl, err := clientTemplate(RoleAdmin, AdminName, now, validity)
	if err != nil {
		return Bundle{}, err
	}
	adminCert, adminKey, err := ca.sign(tmpl)
	if err != nil {
		return Bundle{}, fmt.Errorf("admin certificate: %w", err)
	}
	return Bundle{CACert: pemCert(caDER), CAKey: caKey, AdminCert: adminCert, AdminKey: adminKey}, nil
}

// Check verifies that the CA certificate and key belong together and that
// the admin certificate chains to the CA; the error says which part is
// wrong.
func (b Bundle) Check() error {
	ca, err := parseAuthority(b.CACert, b.CAKey, "the CA certificate", "the CA key")
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(b.AdminCert)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return errors.New("the admin certificate holds no PEM certificate")
	}
	admin, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("the admin certificate: %w", err)
	}
	if err := admin.CheckSignatureFrom(ca.cert); err != nil {
		return fmt.Errorf("the admin certificate is not signed by the CA: %w", err)
	}
	if len(b.AdminKey) == 0 {
		return errors.New("the admin key is missing")
	}
	return nil
}

// ServerCert issues a server certificate for hosts (DNS names and IP
// addresses; the first is its common name) from the bundle's CA, valid
// for validity (default DefaultValidity, never past the CA).
func (b Bundle) ServerCert(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("server certificate: no host names or addresses")
	}
	if validity <= 0 {
		validity = DefaultValidity
	}
	ca, err := parseAuthority(b.CACert, b.CAKey, "the CA certificate", "the CA key")
	if err != nil {
		return nil, nil, err
	}
	dns, ips, err := splitHosts(hosts)
	if err != nil {
		return nil, nil, err
	}
	return ca.signServer(hosts[0], dns, ips, time.Now(), validity)
}
