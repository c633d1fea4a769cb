package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/terrane-net/terrane/internal/kube"
	"github.com/terrane-net/terrane/internal/server"
)

// kubeInstallFlags are what a server installed by
// deploy/kubernetes/terrane.yaml needs besides the store and the
// controllers: its TLS from a CA it keeps in a Secret (--kube-pki-secret)
// and the topology from a ConfigMap (--kube-topology-configmap).
type kubeInstallFlags struct {
	pkiSecret     string
	caConfigMap   string
	pkiService    string
	pkiHosts      []string
	topology      string
	topologyLease string
}

func (k *kubeInstallFlags) register(f *pflag.FlagSet) {
	f.StringVar(&k.pkiSecret, "kube-pki-secret", "", "serve TLS from a CA kept in this Secret of --kube-namespace, created by the first server that finds it absent (with an admin certificate: admin.crt, admin.key); every server issues itself a server certificate from it at start. Replaces --tls-cert, --tls-key and --client-ca")
	f.StringVar(&k.caConfigMap, "kube-ca-configmap", kube.DefaultCAConfigMap, `with --kube-pki-secret: the ConfigMap of --kube-namespace the CA certificate is published in (key ca.crt) for agents to mount ("-": none)`)
	f.StringVar(&k.pkiService, "kube-pki-service", kube.DefaultService, `with --kube-pki-secret: the server's Service in --kube-namespace, whose DNS names and cluster IPs the server certificate holds ("": none)`)
	f.StringSliceVar(&k.pkiHosts, "kube-pki-hosts", nil, "with --kube-pki-secret: more DNS names and IP addresses for the server certificate (the pod's IP, which with hostNetwork is the node's)")
	f.StringVar(&k.topology, "kube-topology-configmap", "", "NAMESPACE/NAME of a ConfigMap whose key topology.yaml is applied as the topology (as `terrane ctl topology apply`; optional keys mode and route-budget) at start and whenever it changes; refusals become Events on it. The ConfigMap is then the truth; one server at a time (a Lease)")
	f.StringVar(&k.topologyLease, "kube-topology-lease-name", kube.DefaultTopologyLeaseName, "with --kube-topology-configmap: name of the leader-election Lease (namespace: --kube-lease-namespace)")
}

// apply gives cfg its TLS from the PKI Secret and adds the topology
// controller.
func (k *kubeInstallFlags) apply(ctx context.Context, cfg *server.Config, kubeconfig, namespace, leaseNamespace string) error {
	if k.pkiSecret == "" && k.topology == "" {
		return nil
	}
	if k.pkiSecret != "" && (cfg.Insecure || cfg.CertFile != "" || cfg.KeyFile != "" || cfg.ClientCAFile != "") {
		return errors.New("--kube-pki-secret gives the server its certificate and client CA: drop --insecure, --tls-cert, --tls-key and --client-ca")
	}
	var topoNS, topoName string
	if k.topology != "" {
		ns, name, ok := strings.Cut(k.topology, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("--kube-topology-configmap %q: want NAMESPACE/NAME, e.g. terrane-system/terrane-topology", k.topology)
		}
		topoNS, topoName = ns, name
	}
	cs, err := kube.NewClient(kubeconfig)
	if err != nil {
		return fmt.Errorf("--kube-pki-secret/--kube-topology-configmap: %w", err)
	}
	if k.pkiSecret != "" {
		tl, err := kube.BootstrapPKI(ctx, kube.PKIOptions{Client: cs, Namespace: namespace, Secret: k.pkiSecret,
			CAConfigMap: k.caConfigMap, Service: k.pkiService, Hosts: k.pkiHosts, Log: cfg.Log.With("component", "pki")})
		if err != nil {
			return fmt.Errorf("--kube-pki-secret: %w", err)
		}
		cfg.CertPEM, cfg.KeyPEM, cfg.ClientCAPEM = tl.CertPEM, tl.KeyPEM, tl.CAPEM
		cfg.Log.Info("mTLS with the CA of a Secret; admin certificate: kubectl -n "+namespace+" get secret "+k.pkiSecret+" -o jsonpath='{.data.admin\\.crt}' (and admin.key, ca.crt; see docs/kubernetes.md)",
			"secret", namespace+"/"+k.pkiSecret, "created", tl.Created, "hosts", strings.Join(tl.Hosts, ","))
	}
	if k.topology != "" {
		if leaseNamespace == "" {
			leaseNamespace = namespace
		}
		hostname, _ := os.Hostname()
		lo := kube.LeaderOptions{Client: cs, Namespace: leaseNamespace, Name: k.topologyLease, Identity: fmt.Sprintf("%s-%d", hostname, os.Getpid()), Log: cfg.Log.With("component", "kube-leader")}
		tc := kube.TopologyControllerOptions{Client: cs, Namespace: topoNS, Name: topoName, Log: cfg.Log.With("component", "topology-controller")}
		cfg.Controllers = append(cfg.Controllers, func(ctx context.Context, state *server.State) {
			kube.RunLeader(ctx, lo, func(ctx context.Context) { kube.NewTopologyController(tc).Run(ctx, state) })
		})
	}
	return nil
}
