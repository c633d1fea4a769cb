package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/terrane-net/terrane/internal/agent"
	"github.com/terrane-net/terrane/internal/dataplane/nft"
	"github.com/terrane-net/terrane/internal/kube"
)

// policySyncTimeout bounds the wait for the policy source's first full
// read before the agent starts anyway (and reports not ready until it has
// one).
const policySyncTimeout = 2 * time.Minute

// openPolicy is the agent's policy source and table for --policy: none, or
// kubernetes (informers on the API of --kubeconfig, in-cluster when empty,
// enforced in the nftables table inet terrane). The table stays when the
// agent exits: policy is still enforced while it restarts, and the next
// agent replaces it whole.
func openPolicy(ctx context.Context, mode, kubeconfig string, log *slog.Logger) (agent.PolicySource, agent.PolicyTable, func(), error) {
	switch mode {
	case "", "none":
		if kubeconfig != "" {
			return nil, nil, nil, fmt.Errorf("--kubeconfig is for --policy kubernetes")
		}
		return nil, nil, func() {}, nil
	case "kubernetes":
	default:
		return nil, nil, nil, fmt.Errorf("--policy %q: use none or kubernetes", mode)
	}
	src, err := kube.NewPolicySourceFor(kubeconfig, log)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--policy kubernetes: %w", err)
	}
	tbl, err := nft.Open(-1)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--policy kubernetes: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, policySyncTimeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx) }()
	select {
	case err := <-errc:
		if err != nil {
			tbl.Close()
			return nil, nil, nil, fmt.Errorf("--policy kubernetes: %w", err)
		}
		log.Info("policy source synced: enforcing NetworkPolicy in nftables table inet " + nft.TableName)
	case <-sctx.Done():
		log.Warn("policy source not synced yet; the agent is not ready until it is")
	}
	return src, tbl, func() { tbl.Close() }, nil
}
