package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/etcd"
)

// etcdFlags are the etcd client options.
type etcdFlags struct {
	endpoints         []string
	caFile, cert, key string
	prefix            string
}

func (e *etcdFlags) register(f *pflag.FlagSet) {
	f.StringSliceVar(&e.endpoints, "etcd-endpoints", nil, "etcd endpoints, e.g. https://10.0.0.1:2379,https://10.0.0.2:2379")
	f.StringVar(&e.caFile, "etcd-ca", "", "CA of the etcd servers (PEM)")
	f.StringVar(&e.cert, "etcd-cert", "", "client certificate for etcd (PEM)")
	f.StringVar(&e.key, "etcd-key", "", "client key for etcd (PEM)")
	f.StringVar(&e.prefix, "etcd-prefix", etcd.DefaultPrefix, "key prefix for Terrane's records in etcd")
}

func (e *etcdFlags) open(ctx context.Context) (store.Store, error) {
	if len(e.endpoints) == 0 {
		return nil, errors.New("--store etcd needs --etcd-endpoints")
	}
	cfg := etcd.Config{Endpoints: e.endpoints, Prefix: e.prefix}
	if e.caFile != "" || e.cert != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.caFile != "" {
			pem, err := os.ReadFile(e.caFile)
			if err != nil {
				return nil, fmt.Errorf("--etcd-ca: %w", err)
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--etcd-ca %s holds no PEM certificate", e.caFile)
			}
		}
		if e.cert != "" || e.key != "" {
			c, err := tls.LoadX509KeyPair(e.cert, e.key)
			if err != nil {
				return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
			}
			t.Certificates = []tls.Certificate{c}
		}
		cfg.TLS = t
	}
	return etcd.New(ctx, cfg)
}
