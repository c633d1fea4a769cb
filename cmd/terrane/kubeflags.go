package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/kubernetes"
)

// kubeFlags are the Kubernetes store's options.
type kubeFlags struct {
	kubeconfig  string
	namespace   string
	installCRDs bool
}

func (k *kubeFlags) register(f *pflag.FlagSet) {
	f.StringVar(&k.kubeconfig, "kubeconfig", "", `kubeconfig for --store kubernetes, --kube-token-review and --kube-nodes ("": the in-cluster service account)`)
	f.StringVar(&k.namespace, "kube-namespace", kubernetes.DefaultNamespace, "namespace holding the store's StoreRecord objects (--store kubernetes); it must exist")
	f.BoolVar(&k.installCRDs, "kube-install-crds", false, "create or update the StoreRecord CRD before opening the store (needs the right to write CRDs)")
}

func (k *kubeFlags) open(ctx context.Context) (store.Store, error) {
	cfg := kubernetes.Config{Kubeconfig: k.kubeconfig, Namespace: k.namespace}
	if k.installCRDs {
		if err := kubernetes.InstallCRDs(ctx, cfg); err != nil {
			return nil, fmt.Errorf("--kube-install-crds: %w", err)
		}
	}
	return kubernetes.New(ctx, cfg)
}
