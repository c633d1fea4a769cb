package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/terrane-net/terrane/internal/kube"
	"github.com/terrane-net/terrane/internal/server"
)

// kubeServerFlags connect the server to the cluster it serves: agents'
// ServiceAccount tokens (--kube-token-review), Nodes as hosts (--kube-nodes)
// and namespaces' default networks (--kube-namespaces). All use --kubeconfig
// (or the in-cluster configuration).
type kubeServerFlags struct {
	tokenReview    bool
	serviceAccount string
	audience       string
	nodes          bool
	namespaces     bool
	nodeGrace      time.Duration
	leaseNamespace string
	leaseName      string
	// pods: orphaned pod addresses (kubepods.go).
	pods kubePodFlags
}

func (k *kubeServerFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&k.tokenReview, "kube-token-review", false, "authenticate agents by their projected ServiceAccount tokens (Kubernetes TokenReview): a token of --agent-service-account for --token-audience, bound to a pod, is the node identity of the pod's node")
	f.StringVar(&k.serviceAccount, "agent-service-account", "terrane-system/terrane-agent", "NAMESPACE/NAME of the agents' ServiceAccount (--kube-token-review): tokens of any other are refused")
	f.StringVar(&k.audience, "token-audience", kube.DefaultAudience, "audience agents' tokens must be issued for (--kube-token-review; the projected volume's audience)")
	f.BoolVar(&k.nodes, "kube-nodes", false, "keep one host per Kubernetes Node (labels, InternalIP), removed a grace period after its Node is deleted; one server at a time (a Lease). Claims and allocations refused for want of room or routes become Events on the Node")
	f.BoolVar(&k.namespaces, "kube-namespaces", false, "keep each namespace's default network equal to its annotation "+kube.NetworkAnnotation+" (the annotations are then the truth: `terrane ctl namespaces set` is overwritten); one server at a time (the same Lease)")
	f.DurationVar(&k.nodeGrace, "kube-node-grace", kube.DefaultNodeGrace, "with --kube-nodes: how long a deleted Node's host is kept (and longer while its agent reports addresses in use)")
	f.StringVar(&k.leaseNamespace, "kube-lease-namespace", "", `with --kube-nodes: namespace of the leader-election Lease ("": --kube-namespace)`)
	f.StringVar(&k.leaseName, "kube-lease-name", kube.DefaultLeaseName, "with --kube-nodes: name of the leader-election Lease")
	k.pods.register(f)
}

// apply adds the authenticator and the Node controller to cfg.
func (k *kubeServerFlags) apply(cfg *server.Config, kubeconfig, namespace string) error {
	if err := k.pods.check(); err != nil {
		return err
	}
	if !k.tokenReview && !k.nodes && !k.namespaces && !k.pods.enabled {
		return nil
	}
	if k.tokenReview && cfg.Insecure {
		return errors.New("--kube-token-review: with --insecure every caller is an admin already; serve TLS to authenticate agents")
	}
	cs, err := kube.NewClient(kubeconfig)
	if err != nil {
		return fmt.Errorf("--kube-token-review/--kube-nodes/--kube-namespaces: %w", err)
	}
	if k.tokenReview {
		tr, err := kube.NewTokenReview(kube.TokenReviewOptions{Client: cs, Audience: k.audience, ServiceAccount: k.serviceAccount, Log: cfg.Log.With("component", "token-review")})
		if err != nil {
			return fmt.Errorf("--agent-service-account: %w", err)
		}
		cfg.Authenticators = append(cfg.Authenticators, tr)
	}
	if k.nodes {
		// Refusals for want of room or routes become Events on the host's
		// Node, from whichever server serves them.
		cfg.Failures = kube.NewNodeEvents(context.Background(), cs)
	}
	if k.nodes || k.namespaces || k.pods.enabled {
		if k.nodeGrace < 0 {
			return fmt.Errorf("--kube-node-grace %s: want 0 or more", k.nodeGrace)
		}
		ns := k.leaseNamespace
		if ns == "" {
			ns = namespace
		}
		hostname, _ := os.Hostname()
		lo := kube.LeaderOptions{Client: cs, Namespace: ns, Name: k.leaseName, Identity: fmt.Sprintf("%s-%d", hostname, os.Getpid()), Log: cfg.Log.With("component", "kube-leader")}
		nodes, namespaces := k.nodes, k.namespaces
		cfg.Controllers = append(cfg.Controllers, func(ctx context.Context, state *server.State) {
			kube.RunLeader(ctx, lo, func(ctx context.Context) {
				var wg sync.WaitGroup
				if nodes {
					wg.Go(func() {
						kube.NewNodeController(kube.NodeControllerOptions{Client: cs, Grace: k.nodeGrace, Log: cfg.Log.With("component", "node-controller")}).Run(ctx, state)
					})
				}
				if namespaces {
					wg.Go(func() {
						kube.NewNamespaceController(kube.NamespaceControllerOptions{Client: cs, Log: cfg.Log.With("component", "namespace-controller")}).Run(ctx, state)
					})
				}
				k.pods.start(ctx, &wg, cs, state, cfg.Log)
				wg.Wait()
			})
		})
	}
	return nil
}
