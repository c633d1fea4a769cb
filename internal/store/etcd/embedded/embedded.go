// Package embedded runs etcd members inside this process, on loopback: the
// throwaway single-member etcd that `terrane bench store` starts when it is
// given no endpoints (Start), and the member configuration that etcdtest's
// test clusters are built from (Member).
package embedded

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// Member is one embedded etcd member's identity and settings.
type Member struct {
	Name string
	// Dir is the member's data directory.
	Dir string
	// LogPath is the file the member logs to; "" means stderr.
	LogPath string
	// Client and Peer are the URLs the member serves clients and peers on
	// (listened on and advertised alike).
	Client, Peer url.URL
	// InitialCluster is etcd's --initial-cluster: name=peerURL,... of every
	// member.
	InitialCluster string
	// Token is etcd's --initial-cluster-token.
	Token string
	// ClientTLS, when it has a CertFile, makes the member serve clients
	// over HTTPS with it. Peers always talk plain HTTP.
	ClientTLS transport.TLSInfo
	// NoFsync skips fsync: a crash of the machine may lose writes. For
	// throwaway test data only.
	NoFsync bool
	// CompactEvery, when not 0, makes the member compact its history
	// periodically, keeping about that much (etcd's periodic
	// auto-compaction): a long run's revisions otherwise fill the backend
	// quota and every write fails with "mvcc: database space exceeded".
	CompactEvery time.Duration
}

// Config is the member's embed configuration. Logs go to LogPath at level
// warn.
func (m *Member) Config() *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	cfg.ListenClientUrls = []url.URL{m.Client}
	cfg.AdvertiseClientUrls = []url.URL{m.Client}
	cfg.ListenPeerUrls = []url.URL{m.Peer}
	cfg.AdvertisePeerUrls = []url.URL{m.Peer}
	cfg.InitialCluster = m.InitialCluster
	cfg.InitialClusterToken = m.Token
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.ClientTLSInfo = m.ClientTLS
	cfg.LogLevel = "warn"
	if m.LogPath != "" {
		cfg.LogOutputs = []string{m.LogPath}
	} else {
		cfg.LogOutputs = []string{"stderr"}
	}
	cfg.UnsafeNoFsync = m.NoFsync
	cfg.EnableGRPCGateway = false
	if m.CompactEvery > 0 {
		cfg.AutoCompactionMode = "periodic"
		cfg.AutoCompactionRetention = m.CompactEvery.String()
	}
	return cfg
}

// WaitReady waits until e serves, it fails, timeout passes or ctx ends.
func WaitReady(ctx context.Context, e *embed.Etcd, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return err
	case <-t.C:
		return fmt.Errorf("not ready within %s", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago and is not in used (which it is added to). Ports come from below
// Linux's ephemeral range (32768+), so outgoing connections cannot take them
// while a member is stopped.
func FreeAddr(used map[string]bool) string {
	for {
		port := 20000 + rand.IntN(12000)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if used[addr] {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		used[addr] = true
		l.Close()
		return addr
	}
}

// Options configure Start.
type Options struct {
	// Dir is where a fresh data directory is made (and removed by stop);
	// "" means the system's temporary directory.
	Dir string
	// NoFsync skips fsync (see Member.NoFsync).
	NoFsync bool
	// ReadyTimeout bounds the start; 0 means 60 s.
	ReadyTimeout time.Duration
}

// Start starts a single-member etcd on loopback with its data in a fresh
// directory and returns its client endpoints, the data directory and a
// function that stops the member and removes the directory. The member logs
// warnings to etcd.log in the directory; a failed start quotes its end.
func Start(ctx context.Context, opts Options) (endpoints []string, dir string, stop func(), err error) {
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	if err := ctx.Err(); err != nil {
		return nil, "", nil, fmt.Errorf("embedded etcd: %w", err)
	}
	dir, err = os.MkdirTemp(opts.Dir, "terrane-etcd-")
	if err != nil {
		return nil, "", nil, fmt.Errorf("embedded etcd: %w", err)
	}
	var errs []error
	// A port picked free can be taken before etcd binds it: try again with
	// fresh ports and a fresh data directory.
	for attempt := range 3 {
		used := map[string]bool{}
		m := &Member{
			Name:    "bench",
			Dir:     filepath.Join(dir, "member-"+strconv.Itoa(attempt)),
			LogPath: filepath.Join(dir, "etcd.log"),
			Client:  url.URL{Scheme: "http", Host: FreeAddr(used)},
			Peer:    url.URL{Scheme: "http", Host: FreeAddr(used)},
			Token:   fmt.Sprintf("terrane-%d", rand.Int64()),
			NoFsync: opts.NoFsync,
		}
		m.InitialCluster = m.Name + "=" + m.Peer.String()
		e, err := embed.StartEtcd(m.Config())
		if err == nil {
			if err = WaitReady(ctx, e, opts.ReadyTimeout); err == nil {
				stop := func() {
					e.Close()
					os.RemoveAll(dir)
				}
				return []string{m.Client.String()}, dir, stop, nil
			}
			e.Close()
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	err = fmt.Errorf("embedded etcd in %s: %w%s", dir, errors.Join(errs...), logTail(filepath.Join(dir, "etcd.log")))
	os.RemoveAll(dir)
	return nil, "", nil, err
}

// logTail is the end of a log file, for an error message.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return "\netcd log (last lines):\n" + strings.Join(lines, "\n")
}
