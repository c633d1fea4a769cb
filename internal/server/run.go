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
	"os"
	"time"

	"github.com/terrane-net/terrane/internal/store"
)

// Config is what `terrane server` runs with.
type Config struct {
	Listen string
	Store  store.Store
	// TLS: the server's certificate and key, and the CA client certificates
	// must chain to (empty: no client certificates).
	CertFile, KeyFile, ClientCAFile string
	// TokensFile holds bearer tokens (see ParseTokens).
	TokensFile string
	// Insecure serves plain HTTP with every caller an admin.
	Insecure bool
	Log      *slog.Logger
	// Ready, if set, receives the listening address once serving.
	Ready func(addr string)
}

// Run serves the control API until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Log
	state, err := NewState(ctx, cfg.Store, log)
	if err != nil {
		return err
	}
	var auth Authenticator
	var tlsCfg *tls.Config
	switch {
	case cfg.Insecure:
		log.Warn("SERVING PLAIN HTTP WITHOUT AUTHENTICATION (--insecure): anyone who can reach " + cfg.Listen + " is an admin")
		auth = insecureAuth{}
	case cfg.CertFile == "" || cfg.KeyFile == "":
		return errors.New("the server needs a certificate and key (--tls-cert, --tls-key; create them with `terrane ctl certs init`), or --insecure for a throwaway test")
	default:
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return fmt.Errorf("load server certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		var auths AnyAuth
		if cfg.ClientCAFile != "" {
			pem, err := os.ReadFile(cfg.ClientCAFile)
			if err != nil {
				return fmt.Errorf("read client CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("client CA %s holds no PEM certificate", cfg.ClientCAFile)
			}
			tlsCfg.ClientCAs = pool
			tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
			auths = append(auths, CertAuth{})
		}
		if cfg.TokensFile != "" {
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
		if len(auths) == 0 {
			return errors.New("no way to authenticate callers: give --client-ca (mTLS) and/or --tokens")
		}
		auth = auths
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: NewAPI(state, auth, log), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	go state.Follow(followCtx)
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
