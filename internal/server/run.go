package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/terrane-net/terrane/internal/cloud/vpc"
	"github.com/terrane-net/terrane/internal/store"
)

// Config is what `terrane server` runs with.
type Config struct {
	Listen string
	// Listener, if set, is served instead of opening Listen (an embedder
	// that owns the socket, e.g. a test that drops every connection at
	// once as a killed process would).
	Listener net.Listener
	Store    store.Store
	// TLS: the server's certificate and key, and the CA client certificates
	// must chain to (empty: no client certificates).
	CertFile, KeyFile, ClientCAFile string
	// CertPEM, KeyPEM and ClientCAPEM are the same in memory (a CA kept
	// in a Kubernetes Secret, --kube-pki-secret); each replaces its file.
	CertPEM, KeyPEM, ClientCAPEM []byte
	// TokensFile holds bearer tokens (see ParseTokens).
	TokensFile string
	// Insecure serves plain HTTP with every caller an admin.
	Insecure bool
	Log      *slog.Logger
	// Ready, if set, receives the listening address once serving.
	Ready func(addr string)
	// VPC, if set, is run while this server holds the VPC reconciler
	// lease (--vpc-config).
	VPC *vpc.Reconciler
	// Authenticators are tried after the client certificates and the token
	// file (e.g. Kubernetes TokenReview, --kube-token-review).
	Authenticators []Authenticator
	// Controllers run beside the API on its state until the server stops,
	// and have returned before the store is closed (e.g. the Kubernetes
	// Node controller, --kube-nodes).
	Controllers []Controller
	// Failures, if set, hears of claims and allocations refused for want of
	// room or routes (e.g. Kubernetes Events on the host's Node).
	Failures AllocationFailures
}

// Controller drives the state from outside the API, through the same
// operations (State.RegisterHost, State.RemoveHost, State.Do). It returns
// when ctx ends.
type Controller func(ctx context.Context, state *State)

// Run serves the control API until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Log
	var auth Authenticator
	var tlsCfg *tls.Config
	switch {
	case cfg.Insecure:
		if err := loopbackOnly(cfg.Listen); err != nil {
			return err
		}
		log.Warn("SERVING PLAIN HTTP WITHOUT AUTHENTICATION (--insecure): anyone who can reach " + cfg.Listen + " is an admin")
		auth = insecureAuth{}
	case (cfg.CertFile == "" || cfg.KeyFile == "") && (len(cfg.CertPEM) == 0 || len(cfg.KeyPEM) == 0):
		return errors.New("the server needs a certificate and key (--tls-cert, --tls-key; create them with `terrane ctl certs init`), or --insecure for a throwaway test")
	default:
		cert, err := serverCertificate(cfg)
		if err != nil {
			return err
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		var auths AnyAuth
		if cfg.ClientCAFile != "" || len(cfg.ClientCAPEM) > 0 {
			pem, from := cfg.ClientCAPEM, "the client CA in memory"
			if cfg.ClientCAFile != "" {
				if pem, err = os.ReadFile(cfg.ClientCAFile); err != nil {
					return fmt.Errorf("read client CA: %w", err)
				}
				from = cfg.ClientCAFile
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("client CA %s holds no PEM certificate", from)
			}
			tlsCfg.ClientCAs = pool
			tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
			auths = append(auths, CertAuth{})
		}
		if cfg.TokensFile != "" {
			if err := secretFile("--tokens", cfg.TokensFile); err != nil {
				return err
			}
			data, err := os.ReadFile(cfg.TokensFile)
			if err != nil {
				return fmt.Errorf("read tokens: %w", err)
			}
			ta, err := ParseTokens(data)
			if err != nil {
				return fmt.Errorf("%s: %w", cfg.TokensFile, err)
			}
			auths = append(auths, ta)
		}
		auths = append(auths, cfg.Authenticators...)
		if len(auths) == 0 {
			return errors.New("no way to authenticate callers: give --client-ca (mTLS), --tokens and/or --kube-token-review")
		}
		auth = auths
	}
	state, err := NewState(ctx, cfg.Store, log)
	if err != nil {
		return err
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = Listen(cfg.Listen); err != nil {
			return err
		}
	}
	handler := NewAPI(state, auth, log)
	handler.vpc = cfg.VPC
	handler.SetAllocationFailures(cfg.Failures)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	srv.RegisterOnShutdown(handler.StopStreams)
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	go state.Follow(followCtx)
	if cfg.VPC != nil {
		vpcDone := make(chan struct{})
		go func() { defer close(vpcDone); runVPC(followCtx, state, cfg.VPC, log) }()
		defer func() { stopFollow(); <-vpcDone }() // the lease is released before the store closes
	}
	for _, c := range cfg.Controllers {
		done := make(chan struct{})
		go func() { defer close(done); c(followCtx, state) }()
		defer func() { stopFollow(); <-done }()
	}
	errc := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("serving the control API", "addr", ln.Addr().String(), "tls", tlsCfg != nil)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

// serverCertificate loads the server's certificate from its files, or
// takes it from memory.
func serverCertificate(cfg Config) (tls.Certificate, error) {
	if len(cfg.CertPEM) > 0 && cfg.CertFile == "" {
		cert, err := tls.X509KeyPair(cfg.CertPEM, cfg.KeyPEM)
		if err != nil {
			return cert, fmt.Errorf("server certificate in memory: %w", err)
		}
		return cert, nil
	}
	if err := secretFile("--tls-key", cfg.KeyFile); err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return cert, fmt.Errorf("load server certificate: %w", err)
	}
	return cert, nil
}

// loopbackOnly refuses an --insecure listen address others can reach: with
// --insecure every caller is an admin. A unix socket (only root may open
// it), 127.0.0.0/8, ::1 and localhost are fine; an unspecified host
// (":7443", 0.0.0.0, [::]), any other address and any other host name are
// not (a name is not resolved: what it resolves to may change).
func loopbackOnly(listen string) error {
	if strings.HasPrefix(listen, UnixScheme) {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", listen, err)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("--insecure makes every caller an admin, so it serves only on loopback; --listen %q is reachable from other machines: use --listen 127.0.0.1:PORT or unix:///PATH.sock, or drop --insecure and serve TLS", listen)
}

// secretFile refuses a key or token file that others may read: the server
// would run, and anyone on the machine could act as it or as an admin.
func secretFile(flag, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	if m := fi.Mode().Perm(); m&0o007 != 0 {
		return fmt.Errorf("%s %s has mode %04o: other users may read it; run chmod 600 %s", flag, path, m, path)
	}
	return nil
}

// CheckDataDir refuses a data directory other users may write: they could
// replace the store or the built-in CA in it.
func CheckDataDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o002 != 0 {
		return fmt.Errorf("--data-dir %s has mode %04o: other users may replace the store or the CA in it; run chmod 700 %s", dir, m, dir)
	}
	return nil
}

// UnixScheme starts a listen address or server URL that names a unix socket:
// unix:///run/terrane/server.sock.
const UnixScheme = "unix://"

// Listen opens the API's listener: a TCP host:port, or unix:///path for a
// unix socket that only its owner (root) may open. A socket file left by a
// crashed server is replaced; any other file at the path is an error.
func Listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, UnixScheme)
	if !ok {
		return net.Listen("tcp", addr)
	}
	if path == "" || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("--listen %q: want unix:///absolute/path.sock", addr)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--listen %q: %s exists and is not a socket; remove it or choose another path", addr, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	return ln, err
}
