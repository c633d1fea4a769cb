// Package pki is Terrane's small built-in certificate authority: one ECDSA
// P-256 CA in a directory, a server certificate for the control API, and
// client certificates whose subject names the caller — common name the
// identity (for a node: its host name), first organization its role (admin
// or node), as server.CertAuth reads them. It owns the files in that
// directory and nothing else; there is no revocation, so keep validity short
// and the CA key offline where you can.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/terrane-net/terrane/internal/api"
)

// The roles a client certificate can carry (server.RoleAdmin, server.RoleNode).
const (
	RoleAdmin = "admin"
	RoleNode  = "node"
)

// File names inside the directory.
const (
	CAName     = "ca"
	ServerName = "server"
	AdminName  = "admin"
)

const (
	// DefaultValidity is how long server and client certificates last
	// when no validity is given.
	DefaultValidity = 365 * 24 * time.Hour
	// caValidity outlives the certificates the CA issues.
	caValidity = 10 * 365 * 24 * time.Hour
	// clockSkew backdates certificates so a slightly slow clock accepts them.
	clockSkew = 5 * time.Minute
)

// ErrExists: Init would overwrite a CA, or Issue a certificate, that is
// already there.
var ErrExists = errors.New("already exists")

// Pair names a certificate file and its key file.
type Pair struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// Layout is what Init writes.
type Layout struct {
	CA     Pair `json:"ca"`
	Server Pair `json:"server"`
	Admin  Pair `json:"admin"`
}

// InitOptions configure Init.
type InitOptions struct {
	// ServerHosts are the DNS names and IP addresses clients reach the
	// server at; they become the server certificate's SANs. Empty means
	// localhost, 127.0.0.1 and ::1.
	ServerHosts []string
	// Validity of the server and admin certificates (default
	// DefaultValidity). The CA lasts ten years, or longer if this is.
	Validity time.Duration
	// Force replaces an existing CA. Every certificate the old CA issued
	// stops being accepted by a server that trusts the new one.
	Force bool
}

// PairIn names the files of the certificate called name in dir.
func PairIn(dir, name string) Pair {
	return Pair{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
}

// Init creates a CA in dir (created 0700 if missing) with a server
// certificate and an admin client certificate. It refuses to replace an
// existing CA unless opts.Force is set.
func Init(dir string, opts InitOptions) (Layout, error) {
	l := Layout{CA: PairIn(dir, CAName), Server: PairIn(dir, ServerName), Admin: PairIn(dir, AdminName)}
	if opts.Validity < 0 {
		return l, fmt.Errorf("validity %s: must not be negative", opts.Validity)
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultValidity
	}
	hosts := opts.ServerHosts
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	dns, ips, err := splitHosts(hosts)
	if err != nil {
		return l, err
	}
	if !opts.Force {
		for _, f := range []string{l.CA.Cert, l.CA.Key} {
			if _, err := os.Stat(f); err == nil {
				return l, fmt.Errorf("init CA: %s %w; every certificate it issued would stop working: pass force to replace it", f, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return l, fmt.Errorf("init CA: %w", err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return l, fmt.Errorf("init CA: %w", err)
	}
	now := time.Now()
	ca, caDER, err := newAuthority(now, max(caValidity, opts.Validity))
	if err != nil {
		return l, fmt.Errorf("init CA: %w", err)
	}
	caKey := ca.key

	srvCert, srvKey, err := ca.signServer(hosts[0], dns, ips, now, opts.Validity)
	if err != nil {
		return l, fmt.Errorf("server certificate: %w", err)
	}
	adminTmpl, err := clientTemplate(RoleAdmin, AdminName, now, opts.Validity)
	if err != nil {
		return l, err
	}
	adminCert, adminKey, err := ca.sign(adminTmpl)
	if err != nil {
		return l, fmt.Errorf("admin certificate: %w", err)
	}
	// The CA last: an interrupted Init leaves no CA behind, so it can rerun.
	for _, w := range []struct {
		pair      Pair
		cert, key []byte
	}{
		{l.Server, srvCert, srvKey},
		{l.Admin, adminCert, adminKey},
		{l.CA, pemCert(caDER), nil},
	} {
		if err := writePair(w.pair, w.cert, w.key); err != nil {
			return l, err
		}
	}
	caKeyPEM, err := pemKey(caKey)
	if err != nil {
		return l, err
	}
	if err := writeFile(l.CA.Key, caKeyPEM, 0o600); err != nil {
		return l, err
	}
	return l, nil
}

// Issue signs a client certificate for name with role (admin or node) using
// the CA in dir and writes <name>.crt and <name>.key there. For a node, name
// is its host name: the only host it may act on. It refuses to overwrite an
// existing certificate (remove it to re-issue) and the CA's own files.
func Issue(dir, role, name string) (Pair, error) {
	p := PairIn(dir, name)
	if role != RoleAdmin && role != RoleNode {
		return p, fmt.Errorf("issue certificate: role %q: use %s or %s", role, RoleAdmin, RoleNode)
	}
	// The API's name rule: a node's name is its host name.
	if err := api.ValidateName("name", name); err != nil {
		return p, fmt.Errorf("issue certificate: %w (a node's name is its host name)", err)
	}
	if name == CAName || name == ServerName {
		return p, fmt.Errorf("issue certificate: name %q is the %s's own certificate; choose another name", name, name)
	}
	ca, err := loadAuthority(dir)
	if err != nil {
		return p, err
	}
	for _, f := range []string{p.Cert, p.Key} {
		if _, err := os.Stat(f); err == nil {
			return p, fmt.Errorf("issue certificate: %s %w; remove it first to re-issue", f, ErrExists)
		}
	}
	tmpl, err := clientTemplate(role, name, time.Now(), DefaultValidity)
	if err != nil {
		return p, err
	}
	cert, key, err := ca.sign(tmpl)
	if err != nil {
		return p, fmt.Errorf("issue certificate for %s: %w", name, err)
	}
	return p, writePair(p, cert, key)
}

// newAuthority creates a self-signed CA valid for validity from now.
func newAuthority(now time.Time, validity time.Duration) (*authority, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	caTmpl, err := template(pkix.Name{CommonName: "terrane CA", Organization: []string{"terrane"}}, now, validity)
	if err != nil {
		return nil, nil, err
	}
	caTmpl.IsCA = true
	caTmpl.BasicConstraintsValid = true
	caTmpl.MaxPathLenZero = true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, err
	}
	return &authority{cert: caCert, key: caKey}, caDER, nil
}

type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func loadAuthority(dir string) (*authority, error) {
	p := PairIn(dir, CAName)
	certPEM, err := os.ReadFile(p.Cert)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no CA in %s: create one with `terrane ctl certs init --dir %s`", dir, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	keyPEM, err := os.ReadFile(p.Key)
	if err != nil {
		return nil, fmt.Errorf("load CA key: %w", err)
	}
	return parseAuthority(certPEM, keyPEM, p.Cert, p.Key)
}

// parseAuthority reads a CA certificate and its key; certName and keyName
// say where they came from in errors.
func parseAuthority(certPEM, keyPEM []byte, certName, keyName string) (*authority, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("load CA: %s holds no PEM certificate", certName)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", certName, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("load CA key: %s holds no PEM key", keyName)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load CA key %s: %w", keyName, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load CA: %s is not the key of %s", keyName, certName)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load CA: %s is not a CA certificate", certName)
	}
	return &authority{cert: cert, key: key}, nil
}

// signServer issues a server certificate for the DNS names and IPs.
func (a *authority) signServer(cn string, dns []string, ips []net.IP, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	tmpl, err := template(pkix.Name{CommonName: cn, Organization: []string{"terrane server"}}, now, validity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.DNSNames, tmpl.IPAddresses = dns, ips
	return a.sign(tmpl)
}

// sign issues a certificate for a fresh key; it returns both as PEM.
func (a *authority) sign(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	if tmpl.NotAfter.After(a.cert.NotAfter) {
		tmpl.NotAfter = a.cert.NotAfter // a chain is only as valid as its CA
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	keyPEM, err = pemKey(key)
	return pemCert(der), keyPEM, err
}

func template(subject pkix.Name, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}, nil
}

func clientTemplate(role, name string, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	t, err := template(pkix.Name{CommonName: name, Organization: []string{role}}, now, validity)
	if err != nil {
		return nil, err
	}
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return t, nil
}

// splitHosts sorts server hosts into DNS names and IP addresses.
func splitHosts(hosts []string) (dns []string, ips []net.IP, err error) {
	for _, h := range hosts {
		if a, perr := netip.ParseAddr(h); perr == nil {
			ips = append(ips, a.Unmap().AsSlice())
			continue
		}
		if api.ValidateName("host", h) != nil {
			return nil, nil, fmt.Errorf("server host %q is neither an IP address nor a DNS name", h)
		}
		dns = append(dns, h)
	}
	return dns, ips, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writePair writes a certificate (0644) and, if given, its key (0600).
func writePair(p Pair, cert, key []byte) error {
	if key != nil {
		if err := writeFile(p.Key, key, 0o600); err != nil {
			return err
		}
	}
	return writeFile(p.Cert, cert, 0o644)
}

// writeFile replaces path atomically, so a reader never sees half a key and
// an existing file's looser mode is not inherited.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
