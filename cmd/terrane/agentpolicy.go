package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/terrane-net/terrane/internal/agent"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/dataplane/nft"
	"github.com/terrane-net/terrane/internal/kube"
)

// policySyncTimeout bounds the wait for the policy source's first full
// read before the agent starts anyway (and reports not ready until it has
// one).
const policySyncTimeout = 2 * time.Minute

// policySource is what openPolicy runs: a source whose Run returns once it
// has synced (and keeps following until ctx ends).
type policySource interface {
	agent.PolicySource
	Run(ctx context.Context) error
}

// openPolicy is the agent's policy source and table for --policy: none,
// kubernetes (informers on the API of --kubeconfig, in-cluster when empty)
// or server (the Terrane server's policy records, through c), enforced in
// the nftables table inet terrane. The table stays when the agent exits:
// policy is still enforced while it restarts, and the next agent replaces
// it whole.
func openPolicy(ctx context.Context, mode, kubeconfig string, c *client.Client, log *slog.Logger) (agent.PolicySource, agent.PolicyTable, func(), error) {
	var src policySource
	switch mode {
	case "", "none":
		if kubeconfig != "" {
			return nil, nil, nil, fmt.Errorf("--kubeconfig is for --policy kubernetes")
		}
		return nil, nil, func() {}, nil
	case "kubernetes":
		ks, err := kube.NewPolicySourceFor(kubeconfig, log)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--policy kubernetes: %w", err)
		}
		src = ks
	case "server":
		if kubeconfig != "" {
			return nil, nil, nil, fmt.Errorf("--kubeconfig is for --policy kubernetes")
		}
		src = agent.NewServerPolicySource(c, log)
	default:
		return nil, nil, nil, fmt.Errorf("--policy %q: use none, kubernetes or server", mode)
	}
	tbl, err := nft.Open(-1)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--policy %s: %w", mode, err)
	}
	sctx, cancel := context.WithTimeout(ctx, policySyncTimeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx) }()
	select {
	case err := <-errc:
		if err != nil {
			tbl.Close()
			return nil, nil, nil, fmt.Errorf("--policy %s: %w", mode, err)
		}
		log.Info("policy source synced: enforcing network policy in nftables table inet "+nft.TableName, "source", mode)
	case <-sctx.Done():
		log.Warn("policy source not synced yet; the agent is not ready until it is", "source", mode)
	}
	return src, tbl, func() { tbl.Close() }, nil
}
