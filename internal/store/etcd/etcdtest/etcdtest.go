// Package etcdtest runs real etcd servers inside a test process: embedded
// etcd members on loopback ports with their data in t.TempDir(), which tests
// can stop and restart one at a time to prove behaviour across failures.
package etcdtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/terrane-net/terrane/internal/store/etcd/embedded"
)

// readyTimeout bounds how long a cluster or a restarted member may take to
// serve; -race on two cores is slow, so it is generous.
const readyTimeout = 60 * time.Second

// Cluster is a running embedded etcd cluster. Its methods fail the test on
// error; it is stopped when the test ends.
type Cluster struct {
	t       testing.TB
	opts    Options
	mu      sync.Mutex
	members []*member
}

type member struct {
	embedded.Member
	etcd       *embed.Etcd // nil while stopped
	restarting bool
}

// Options change how members serve clients; the zero value is plain HTTP.
type Options struct {
	// ClientTLS, when it has a CertFile, makes members serve clients over
	// HTTPS with it (ClientCertAuth and TrustedCAFile to demand client
	// certificates). Peers still talk plain HTTP.
	ClientTLS transport.TLSInfo
}

// Start starts a single-member cluster.
func Start(t testing.TB) *Cluster { return StartCluster(t, 1) }

// StartCluster starts an n-member cluster on 127.0.0.1 and waits until every
// member serves.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartClusterWith(t, n, Options{})
}

// StartClusterWith is StartCluster with options.
func StartClusterWith(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("etcdtest: cluster of %d members", n)
	}
	c := &Cluster{t: t, opts: opts}
	t.Cleanup(func() {
		c.close()
		if t.Failed() {
			c.dumpLogs()
		}
	})
	var err error
	// A port picked free can be taken before etcd binds it; try again
	// with fresh ports.
	for attempt := 0; attempt < 3; attempt++ {
		if err = c.start(t.TempDir(), n); err == nil {
			return c
		}
		c.close()
	}
	t.Fatalf("etcdtest: start %d-member cluster: %v", n, err)
	return nil
}

func (c *Cluster) start(dir string, n int) error {
	token := fmt.Sprintf("terrane-test-%d", rand.Int64())
	scheme := "http"
	if c.opts.ClientTLS.CertFile != "" {
		scheme = "https"
	}
	var initial []string
	c.members = nil
	used := map[string]bool{}
	for i := range n {
		m := &member{Member: embedded.Member{
			Name: "m" + strconv.Itoa(i),
			Dir:  filepath.Join(dir, "m"+strconv.Itoa(i)),
			// Logs go to a file per member, shown only when the test
			// fails.
			LogPath: filepath.Join(dir, "m"+strconv.Itoa(i)+".log"),
			Client:  url.URL{Scheme: scheme, Host: embedded.FreeAddr(used)},
			Peer:    url.URL{Scheme: "http", Host: embedded.FreeAddr(used)},
			Token:   token,
			// Test data is thrown away; fsync only slows the suite. Stop
			// and Restart are clean shutdowns, which lose nothing without
			// it.
			NoFsync:   true,
			ClientTLS: c.opts.ClientTLS,
		}}
		initial = append(initial, m.Name+"="+m.Peer.String())
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.InitialCluster = strings.Join(initial, ",")
		e, err := embed.StartEtcd(m.Config())
		if err != nil {
			return fmt.Errorf("member %s: %w", m.Name, err)
		}
		m.etcd = e
	}
	for _, m := range c.members {
		if err := waitReady(m.etcd); err != nil {
			return fmt.Errorf("member %s: %w", m.Name, err)
		}
	}
	return nil
}

func waitReady(e *embed.Etcd) error {
	return embedded.WaitReady(context.Background(), e, readyTimeout)
}

// Endpoints are the client URLs of every member, running or not.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.Client.String())
	}
	return eps
}

// Endpoint is member i's client URL: a client given only this one talks to
// member i alone.
func (c *Cluster) Endpoint(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.member(i).Client.String()
}

// Size is the number of members.
func (c *Cluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.members)
}

// Leader is the index of the running member that leads, or -1 while none
// does (an election is in progress).
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.etcd != nil && m.etcd.Server.Leader() == m.etcd.Server.MemberID() {
			return i
		}
	}
	return -1
}

func (c *Cluster) member(i int) *member {
	if i < 0 || i >= len(c.members) {
		c.t.Fatalf("etcdtest: no member %d in a %d-member cluster", i, len(c.members))
	}
	return c.members[i]
}

// Stop shuts member i down cleanly (a leader first hands over leadership);
// its data stays for Restart.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	c.take(i, "stop").Close()
}

// Kill stops member i abruptly: its raft loop halts at once, with no
// leadership hand-over, as when the process dies. Its data stays for
// Restart. (It runs in this process, so unlike SIGKILL it cannot lose
// writes the kernel had not yet flushed.)
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	e := c.take(i, "kill")
	e.Server.HardStop()
	e.Close()
}

// take marks member i stopped and returns its server.
func (c *Cluster) take(i int, what string) *embed.Etcd {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.member(i)
	e := m.etcd
	if e == nil {
		c.t.Fatalf("etcdtest: %s member %d: not running", what, i)
	}
	m.etcd = nil
	return e
}

// Restart starts stopped member i again on the same ports and data and waits
// until it serves (it has rejoined the cluster).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.member(i)
	if m.etcd != nil || m.restarting {
		c.mu.Unlock()
		c.t.Fatalf("etcdtest: restart member %d: already running", i)
	}
	m.restarting = true
	c.mu.Unlock()

	var (
		e   *embed.Etcd
		err error
	)
	// The ports were just released; give the kernel a moment if the
	// first bind fails.
	for attempt := 0; attempt < 20; attempt++ {
		if e, err = embed.StartEtcd(m.Config()); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err == nil {
		if err = waitReady(e); err != nil {
			e.Close()
		}
	}
	c.mu.Lock()
	m.restarting = false
	if err == nil {
		m.etcd = e
	}
	c.mu.Unlock()
	if err != nil {
		c.t.Fatalf("etcdtest: restart member %d: %v", i, err)
	}
}

// close stops every running member. Raft loops halt first, all at once, so
// no member waits to hand leadership to a peer that is going away too.
func (c *Cluster) close() {
	c.mu.Lock()
	var running []*embed.Etcd
	for _, m := range c.members {
		if m.etcd != nil {
			running = append(running, m.etcd)
			m.etcd = nil
		}
	}
	c.mu.Unlock()
	parallel(running, func(e *embed.Etcd) { e.Server.HardStop() })
	parallel(running, (*embed.Etcd).Close)
}

// dumpLogs shows the end of every member's log.
func (c *Cluster) dumpLogs() {
	const tail = 30
	for _, m := range c.members {
		data, err := os.ReadFile(m.LogPath)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > tail {
			lines = lines[len(lines)-tail:]
		}
		c.t.Logf("etcd member %s, last %d log lines:\n%s", m.Name, len(lines), strings.Join(lines, "\n"))
	}
}

func parallel(es []*embed.Etcd, fn func(*embed.Etcd)) {
	var wg sync.WaitGroup
	for _, e := range es {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(e)
		}()
	}
	wg.Wait()
}
