package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/cloud/aws"
	"github.com/terrane-net/terrane/internal/cloud/vpc"
	"github.com/terrane-net/terrane/internal/pki"
	"github.com/terrane-net/terrane/internal/server"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/bolt"
)

func newServerCommand() *cobra.Command {
	var (
		cfg     server.Config
		dataDir string
		backend string
		etcd    etcdFlags
		kube    kubeFlags
		kubeSrv kubeServerFlags
		kubeIns kubeInstallFlags
		vpcFile string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control API over the embedded store or etcd",
		Long: `server keeps the cluster's allocation state — topology, group prefixes, hosts,
blocks, VM endpoints — in a store, one record per thing, every write a
compare-and-swap, and serves the control API under /v1/ over TLS.

With no flags it uses the embedded store in --data-dir and, on first start,
creates a CA, a server certificate and an admin certificate in DATA-DIR/pki
(zero set-up, one machine); it logs the 'terrane ctl' flags to use them. For a real cluster run several servers against etcd:
--store etcd --etcd-endpoints https://10.0.0.1:2379,...
or keep the state in the Kubernetes API as StoreRecord custom resources
(CRD in deploy/kubernetes/crds/): --store kubernetes [--kubeconfig FILE]
[--kube-namespace terrane-system].

Callers authenticate with client certificates issued by 'terrane ctl certs'
(--client-ca) and/or bearer tokens (--tokens FILE: "TOKEN ROLE NAME" per line,
ROLE admin or node) and, in a cluster, agents by their projected
ServiceAccount tokens (--kube-token-review: the API server's TokenReview
names the node the agent's pod runs on). An admin may do everything; a node
identity may register only itself and claim or release only its own blocks.

--kube-nodes keeps one host per Kubernetes Node (its labels and InternalIP),
removing a deleted Node's host after --kube-node-grace once its agent reports
no address in use; with several servers one leads (a Lease). Installed in a
cluster (deploy/kubernetes/terrane.yaml, docs/kubernetes.md), the server keeps
its CA in a Secret (--kube-pki-secret) and applies the topology of a ConfigMap
(--kube-topology-configmap). --insecure serves plain
HTTP where everyone is an admin: for a throwaway test on loopback only.`,
		Example: `  # a throwaway server on loopback
  terrane server --insecure --data-dir /tmp/terrane

  # production, embedded store, certificates from 'terrane ctl certs init'
  terrane server --listen 0.0.0.0:7443 --tls-cert pki/server.crt --tls-key pki/server.key \
      --client-ca pki/ca.crt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			st, err := openStore(ctx, backend, dataDir, etcd, kube)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			defer st.Close()
			cfg.Store, cfg.Log = st, log
			if err := kubeSrv.apply(&cfg, kube.kubeconfig, kube.namespace); err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := kubeIns.apply(ctx, &cfg, kube.kubeconfig, kube.namespace, kubeSrv.leaseNamespace); err != nil {
				return &exitError{code: 2, err: err}
			}
			if vpcFile != "" {
				if cfg.VPC, err = loadVPC(ctx, vpcFile, log); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			if !cfg.Insecure && cfg.CertFile == "" && cfg.KeyFile == "" && cfg.ClientCAFile == "" && cfg.TokensFile == "" && len(cfg.CertPEM) == 0 {
				if err := zeroSetupPKI(&cfg, dataDir, log); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			return server.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7443", "address to serve the API on: host:port, or unix:///path.sock (a unix socket only root can open)")
	f.StringVar(&dataDir, "data-dir", defaultDataDir, "directory of the embedded store (and, without TLS flags, of the built-in CA in pki/)")
	f.StringVar(&backend, "store", "bolt", "state store: bolt (embedded), etcd or kubernetes (custom resources)")
	f.StringVar(&cfg.CertFile, "tls-cert", "", "server certificate (PEM)")
	f.StringVar(&cfg.KeyFile, "tls-key", "", "server private key (PEM)")
	f.StringVar(&cfg.ClientCAFile, "client-ca", "", "CA that client certificates must chain to (enables mTLS)")
	f.StringVar(&cfg.TokensFile, "tokens", "", "bearer token file: TOKEN ROLE NAME per line")
	f.BoolVar(&cfg.Insecure, "insecure", false, "serve plain HTTP with no authentication (tests only)")
	f.StringVar(&vpcFile, "vpc-config", "", "keep cloud VPC route tables for the vpc groups (YAML: provider, region, routeTables; see docs/vpc.md)")
	etcd.register(f)
	kube.register(f)
	kubeSrv.register(f)
	kubeIns.register(f)
	return cmd
}

// loadVPC reads --vpc-config and builds the reconciler over EC2.
func loadVPC(ctx context.Context, file string, log *slog.Logger) (*vpc.Reconciler, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--vpc-config: %w", err)
	}
	c, err := vpc.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("--vpc-config %s: %w", file, err)
	}
	cloud, err := aws.New(ctx, aws.Options{Region: c.Region, Endpoint: c.Endpoint})
	if err != nil {
		return nil, fmt.Errorf("--vpc-config %s: %w", file, err)
	}
	return vpc.New(c, cloud, log.With("component", "vpc")), nil
}

// zeroSetupPKI gives a server started without TLS flags a CA, a server
// certificate and an admin certificate in DATA-DIR/pki, created on first
// start: mTLS with no set-up, like the embedded store.
func zeroSetupPKI(cfg *server.Config, dataDir string, log *slog.Logger) error {
	if _, err := os.Stat(dataDir); err == nil {
		if err := server.CheckDataDir(dataDir); err != nil {
			return err
		}
	}
	dir := filepath.Join(dataDir, "pki")
	l := pki.Layout{CA: pki.PairIn(dir, pki.CAName), Server: pki.PairIn(dir, pki.ServerName), Admin: pki.PairIn(dir, pki.AdminName)}
	if _, err := os.Stat(l.CA.Cert); errors.Is(err, fs.ErrNotExist) {
		host := ""
		if !strings.HasPrefix(cfg.Listen, server.UnixScheme) {
			h, _, err := net.SplitHostPort(cfg.Listen)
			if err != nil {
				return fmt.Errorf("--listen %q: %w", cfg.Listen, err)
			}
			host = h
		}
		hosts := []string{"localhost", "127.0.0.1", "::1"}
		if host != "" && !slices.Contains(hosts, host) && host != "0.0.0.0" && host != "::" {
			hosts = append(hosts, host)
		}
		if l, err = pki.Init(dir, pki.InitOptions{ServerHosts: hosts}); err != nil {
			return fmt.Errorf("create the built-in CA in %s: %w", dir, err)
		}
		log.Info("created a CA, a server and an admin certificate", "dir", dir)
	}
	cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile = l.Server.Cert, l.Server.Key, l.CA.Cert
	log.Info("mTLS with the built-in CA; as admin: terrane ctl --ca " + l.CA.Cert + " --cert " + l.Admin.Cert + " --key " + l.Admin.Key + " ...")
	return nil
}

func openStore(ctx context.Context, backend, dataDir string, etcd etcdFlags, kube kubeFlags) (store.Store, error) {
	switch backend {
	case "bolt":
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("--data-dir: %w", err)
		}
		if err := server.CheckDataDir(dataDir); err != nil {
			return nil, err
		}
		return bolt.Open(filepath.Join(dataDir, "terrane.db"), bolt.Options{})
	case "etcd":
		return etcd.open(ctx)
	case "kubernetes":
		return kube.open(ctx)
	}
	return nil, fmt.Errorf("--store %q: use bolt, etcd or kubernetes", backend)
}
