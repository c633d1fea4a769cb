package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/terrane-net/terrane/internal/store/etcd/embedded"
)

// newLabEtcdMemberCommand is the hidden `terrane lab etcd-member`: one
// member of a real etcd cluster, run by `terrane bench chaos` inside the
// member's own network namespace (the embedded etcd, so no etcd binary is
// needed). It serves until SIGTERM or Ctrl-C; a member killed -9 and
// started again with the same flags rejoins from its data directory.
func newLabEtcdMemberCommand() *cobra.Command {
	var (
		m            embedded.Member
		client, peer string
		readyTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:    "etcd-member",
		Short:  "Run one member of an etcd cluster (started by bench chaos)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var errs []error
			for _, c := range []struct{ flag, val string }{{"--name", m.Name}, {"--data-dir", m.Dir}, {"--listen-client", client}, {"--listen-peer", peer}, {"--initial-cluster", m.InitialCluster}} {
				if c.val == "" {
					errs = append(errs, fmt.Errorf("%s is required", c.flag))
				}
			}
			cu, err := url.Parse(client)
			if err != nil || cu.Scheme != "http" || cu.Host == "" {
				errs = append(errs, fmt.Errorf("--listen-client %q: want http://IP:PORT", client))
			}
			pu, err := url.Parse(peer)
			if err != nil || pu.Scheme != "http" || pu.Host == "" {
				errs = append(errs, fmt.Errorf("--listen-peer %q: want http://IP:PORT", peer))
			}
			if err := errors.Join(errs...); err != nil {
				return &exitError{code: 2, err: err}
			}
			m.Client, m.Peer = *cu, *pu
			ctx, stop := labContext(cmd)
			defer stop()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("member", m.Name)
			e, err := embed.StartEtcd(m.Config())
			if err != nil {
				return fmt.Errorf("etcd member %s: %w", m.Name, err)
			}
			defer e.Close()
			if err := embedded.WaitReady(ctx, e, readyTimeout); err != nil {
				return fmt.Errorf("etcd member %s: %w", m.Name, err)
			}
			log.Info("serving", "client", client, "peer", peer)
			select {
			case <-ctx.Done():
				log.Info("stopping")
				return nil
			case err := <-e.Err():
				return fmt.Errorf("etcd member %s: %w", m.Name, err)
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&m.Name, "name", "", "the member's name")
	f.StringVar(&m.Dir, "data-dir", "", "the member's data directory (kept across restarts)")
	f.StringVar(&m.LogPath, "log", "", "etcd's own log file (default stderr)")
	f.StringVar(&client, "listen-client", "", "client URL, listened on and advertised: http://IP:PORT")
	f.StringVar(&peer, "listen-peer", "", "peer URL, listened on and advertised: http://IP:PORT")
	f.StringVar(&m.InitialCluster, "initial-cluster", "", "name=peerURL,... of every member")
	f.StringVar(&m.Token, "initial-cluster-token", "terrane-chaos", "the cluster's token")
	f.DurationVar(&m.CompactEvery, "compact-every", time.Minute, "compact the history periodically, keeping about this much (0: never)")
	f.DurationVar(&readyTimeout, "ready-timeout", 5*time.Minute, "how long the member may take to join (a restarted member waits for a quorum)")
	return cmd
}
