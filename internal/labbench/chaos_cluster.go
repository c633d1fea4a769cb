package labbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/lab"
	"github.com/terrane-net/terrane/internal/pki"
)

// The chaos lab's network: one bridge in the hub namespace (where the
// servers run) and one namespace per etcd member, joined to the bridge by a
// veth whose hub end is the member's "link" (set down to partition it).
const (
	chaosSubnet     = "10.77.0."
	chaosHubAddr    = chaosSubnet + "1/24"
	chaosClientPort = 2379
	chaosPeerPort   = 2380
)

func chaosMemberIP(i int) string { return chaosSubnet + strconv.Itoa(11+i) }

// chaosProc is one daemon of the chaos lab: an etcd member or a server.
// It can be killed (-9) and started again with the same arguments.
type chaosProc struct {
	role, netns, log string
	argv             []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *chaosProc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.netns}, p.argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.role, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// running reports whether the process was started and has not exited.
func (p *chaosProc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends sig and waits (up to wait) until the process exits; then it
// sends SIGKILL and waits for good.
func (p *chaosProc) kill(sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	_ = cmd.Process.Kill()
	<-done
}

// chaosLab is the etcd cluster and the servers of `bench chaos`.
type chaosLab struct {
	o       ChaosOptions
	n       lab.Names
	hub     string
	members []*chaosProc
	servers []*chaosProc
	sockets []string
	pki     pki.Layout
	etcd    *clientv3.Client
	hubNS   ns.NetNS
	// pods are the hosts, agents and pods of a run with hosts; admin
	// reaches the servers as the admin, failing over between them.
	pods  *chaosPods
	admin *retrier
}

func (c *chaosLab) memberNetns(i int) string { return c.n.Node("etcd" + strconv.Itoa(i)) }
func memberLink(i int) string                { return "e" + strconv.Itoa(i) }

// chaosIPCmd runs one ip(8) command.
func chaosIPCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// upChaosLab builds the namespaces, starts the etcd members and the
// servers, and waits until every member and server serves. down removes
// everything (lab.Down: every process in the lab's namespaces, the
// namespaces, the directory); it is non-nil whenever something may exist.
func upChaosLab(ctx context.Context, o ChaosOptions) (c *chaosLab, down func(), err error) {
	if err := lab.CheckEnvironment(); err != nil {
		return nil, nil, err
	}
	n := o.names()
	c = &chaosLab{o: o, n: n, hub: n.Node("hub")}
	down = func() {
		if c.etcd != nil {
			c.etcd.Close()
		}
		if c.hubNS != nil {
			c.hubNS.Close()
		}
		for _, p := range append(append([]*chaosProc{}, c.servers...), c.members...) {
			p.kill(syscall.SIGTERM, 5*time.Second)
		}
		if o.KeepLogs != "" {
			dst := filepath.Join(o.KeepLogs, n.Lab+"-logs")
			if err := os.CopyFS(dst, os.DirFS(n.Logs())); err != nil {
				o.progress("keep the logs: %v", err)
			} else {
				o.progress("logs kept in %s", dst)
			}
		}
		o.takeDown()
	}
	if o.Hosts > 0 {
		// The hosts' namespaces and segment first: lab up refuses a
		// directory or namespaces that exist.
		sc, err := lab.ParseScenario([]byte(chaosScenario(o.Hosts)))
		if err != nil {
			return c, down, fmt.Errorf("chaos scenario: %w", err)
		}
		o.progress("hosts: %d namespaces on one segment", o.Hosts)
		if _, err := lab.Up(ctx, lab.UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: sc, Terrane: o.Terrane, PluginDir: o.PluginDir, AgentArgs: o.AgentArgs, InfraOnly: true}); err != nil {
			return c, down, err
		}
	}
	if err := os.MkdirAll(n.Logs(), 0o700); err != nil {
		return c, down, err
	}
	// A lock file marks the directory as a lab's: lab down removes it.
	if f, err := os.OpenFile(n.Lock(), os.O_CREATE|os.O_WRONLY, 0o600); err != nil {
		return c, down, err
	} else {
		f.Close()
	}
	if err := c.buildNetwork(ctx); err != nil {
		return c, down, err
	}
	if err := c.startMembers(ctx); err != nil {
		return c, down, err
	}
	if err := c.startServers(ctx); err != nil {
		return c, down, err
	}
	return c, down, nil
}

func (c *chaosLab) buildNetwork(ctx context.Context) error {
	cmds := [][]string{
		{"netns", "add", c.hub},
		{"-n", c.hub, "link", "set", "lo", "up"},
		{"-n", c.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", c.hub, "addr", "add", chaosHubAddr, "dev", "br0"},
		{"-n", c.hub, "link", "set", "br0", "up"},
	}
	for i := range chaosMembers {
		m := c.memberNetns(i)
		cmds = append(cmds,
			[]string{"netns", "add", m},
			[]string{"-n", m, "link", "set", "lo", "up"},
			[]string{"-n", c.hub, "link", "add", memberLink(i), "type", "veth", "peer", "name", "eth0", "netns", m},
			[]string{"-n", c.hub, "link", "set", memberLink(i), "master", "br0", "up"},
			[]string{"-n", m, "addr", "add", chaosMemberIP(i) + "/24", "dev", "eth0"},
			[]string{"-n", m, "link", "set", "eth0", "up"},
		)
	}
	for _, cmd := range cmds {
		if err := chaosIPCmd(ctx, cmd...); err != nil {
			return err
		}
	}
	return nil
}

// chaosMembers is the size of the etcd cluster.
const chaosMembers = 3

func (c *chaosLab) endpoints() []string {
	var eps []string
	for i := range chaosMembers {
		eps = append(eps, "http://"+net.JoinHostPort(chaosMemberIP(i), strconv.Itoa(chaosClientPort)))
	}
	return eps
}

func (c *chaosLab) startMembers(ctx context.Context) error {
	var initial []string
	for i := range chaosMembers {
		initial = append(initial, fmt.Sprintf("etcd%d=http://%s:%d", i, chaosMemberIP(i), chaosPeerPort))
	}
	token := "terrane-chaos-" + c.n.Lab
	for i := range chaosMembers {
		name := "etcd" + strconv.Itoa(i)
		p := &chaosProc{role: name, netns: c.memberNetns(i), log: filepath.Join(c.n.Logs(), name+".log"), argv: []string{
			c.o.Terrane, "lab", "etcd-member", "--name", name,
			"--data-dir", filepath.Join(c.n.Dir, name),
			"--log", filepath.Join(c.n.Logs(), name+"-etcd.log"),
			"--listen-client", fmt.Sprintf("http://%s:%d", chaosMemberIP(i), chaosClientPort),
			"--listen-peer", fmt.Sprintf("http://%s:%d", chaosMemberIP(i), chaosPeerPort),
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-token", token,
		}}
		if err := p.start(); err != nil {
			return err
		}
		c.members = append(c.members, p)
	}
	hubNS, err := ns.GetNS(lab.NetnsPath(c.hub))
	if err != nil {
		return err
	}
	c.hubNS = hubNS
	c.etcd, err = clientv3.New(clientv3.Config{
		Endpoints:   c.endpoints(),
		DialTimeout: 2 * time.Second,
		// A member down is the point of the run, not news.
		Logger: zap.NewNop(),
		// The members live behind the hub's bridge: dial from there.
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(c.dialHub)},
	})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	c.o.progress("etcd: %d members starting", chaosMembers)
	return c.waitMembers(ctx, 2*time.Minute)
}

// dialHub opens a TCP connection from inside the hub namespace.
func (c *chaosLab) dialHub(ctx context.Context, addr string) (net.Conn, error) {
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "unix://")
	var conn net.Conn
	err := c.hubNS.Do(func(ns.NetNS) error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return err
	})
	return conn, err
}

// memberStatus is one member's view: its raft member ID and the leader's.
type memberStatus struct {
	id, leader uint64
	err        error
}

func (c *chaosLab) status(ctx context.Context) []memberStatus {
	out := make([]memberStatus, chaosMembers)
	var wg sync.WaitGroup
	for i, ep := range c.endpoints() {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			r, err := c.etcd.Status(sctx, ep)
			if err != nil {
				out[i].err = err
				return
			}
			out[i] = memberStatus{id: r.Header.MemberId, leader: r.Leader}
		})
	}
	wg.Wait()
	return out
}

// leader is the index of the member every answering member calls leader.
func (c *chaosLab) leader(ctx context.Context) (int, error) {
	st := c.status(ctx)
	var errs []error
	for i, s := range st {
		if s.err != nil {
			errs = append(errs, fmt.Errorf("etcd%d: %w", i, s.err))
			continue
		}
		if s.leader != 0 && s.leader == s.id {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no member is leader: %w", errors.Join(errs...))
}

// waitMembers waits until every member answers and all agree on one
// leader.
func (c *chaosLab) waitMembers(ctx context.Context, timeout time.Duration) error {
	return chaosAwait(ctx, timeout, "every etcd member serving under one leader", func(ctx context.Context) error {
		st := c.status(ctx)
		var errs []error
		for i, s := range st {
			if s.err != nil {
				errs = append(errs, fmt.Errorf("etcd%d: %w", i, s.err))
			} else if s.leader == 0 || s.leader != st[0].leader {
				errs = append(errs, fmt.Errorf("etcd%d: leader %x, etcd0's %x", i, s.leader, st[0].leader))
			}
			if !c.members[i].running() {
				errs = append(errs, fmt.Errorf("etcd%d exited; see %s", i, c.members[i].log))
			}
		}
		return errors.Join(errs...)
	})
}

func (c *chaosLab) startServers(ctx context.Context) error {
	l, err := pki.Init(c.n.PKI(), pki.InitOptions{})
	if err != nil {
		return fmt.Errorf("chaos lab CA: %w", err)
	}
	c.pki = l
	for i := range c.o.Servers {
		name := "server" + strconv.Itoa(i)
		sock := filepath.Join(c.n.Dir, name+".sock")
		p := &chaosProc{role: name, netns: c.hub, log: filepath.Join(c.n.Logs(), name+".log"), argv: []string{
			c.o.Terrane, "server", "--store", "etcd", "--etcd-endpoints", strings.Join(c.endpoints(), ","),
			"--etcd-prefix", "/terrane-chaos/",
			"--listen", "unix://" + sock, "--data-dir", filepath.Join(c.n.Dir, name),
			"--tls-cert", l.Server.Cert, "--tls-key", l.Server.Key, "--client-ca", l.CA.Cert,
		}}
		if err := p.start(); err != nil {
			return err
		}
		c.servers = append(c.servers, p)
		c.sockets = append(c.sockets, sock)
	}
	c.o.progress("servers: %d starting", c.o.Servers)
	if err := c.waitServers(ctx, time.Minute); err != nil {
		return err
	}
	c.admin, err = c.retrier(0, c.o.Timeout)
	return err
}

// serverURLs are the servers' URLs, server first.
func (c *chaosLab) serverURLs(first int) []string {
	var out []string
	for i := range c.sockets {
		out = append(out, "unix://"+c.sockets[(first+i)%len(c.sockets)])
	}
	return out
}

// client is an admin client of server i alone with a per-request timeout.
func (c *chaosLab) client(i int, timeout time.Duration) (*client.Client, error) {
	return c.clientOf([]string{"unix://" + c.sockets[i]}, timeout)
}

// clientOf is an admin client of servers (it fails over between them).
func (c *chaosLab) clientOf(servers []string, timeout time.Duration) (*client.Client, error) {
	return client.New(client.Config{
		Server: strings.Join(servers, ","), CAFile: c.pki.CA.Cert,
		CertFile: c.pki.Admin.Cert, KeyFile: c.pki.Admin.Key, Timeout: timeout,
	})
}

// waitServers waits until every server answers a read of the state.
func (c *chaosLab) waitServers(ctx context.Context, timeout time.Duration) error {
	clients := make([]*client.Client, len(c.servers))
	for i := range clients {
		cl, err := c.client(i, 2*time.Second)
		if err != nil {
			return err
		}
		clients[i] = cl
	}
	return chaosAwait(ctx, timeout, "every server answering", func(ctx context.Context) error {
		var errs []error
		for i, cl := range clients {
			if !c.servers[i].running() {
				errs = append(errs, fmt.Errorf("server%d exited; see %s", i, c.servers[i].log))
				continue
			}
			if _, err := cl.Hosts(ctx); err != nil {
				errs = append(errs, fmt.Errorf("server%d: %w", i, err))
			}
		}
		return errors.Join(errs...)
	})
}

// chaosAwait polls ready every 100 ms until it returns nil; after timeout the
// error names what was awaited and the last error.
func chaosAwait(ctx context.Context, timeout time.Duration, what string, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (%s): %w", what, timeout, err)
		case <-tick.C:
		}
	}
}

// setLink sets member i's hub-side link up or down: down partitions the
// member from its peers and from every server.
func (c *chaosLab) setLink(ctx context.Context, i int, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return chaosIPCmd(ctx, "-n", c.hub, "link", "set", memberLink(i), state)
}
