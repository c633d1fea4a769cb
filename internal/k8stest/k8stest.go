// Package k8stest runs a real Kubernetes control plane for tests: an etcd
// server and a kube-apiserver (internal/k8scp), both real binaries built by
// internal/k8sbins (scripts/k8s-bins.sh), on loopback ports with throwaway
// certificates, keys and an admin token, their data and logs in
// t.TempDir(). No scheduler, controller manager or kubelet: enough for
// custom resources, watches and RBAC.
//
// A test that needs one calls Start and talks to the API through the
// returned Cluster's rest.Config or kubeconfig file. When the binaries are
// missing the test fails (never skips) with the command that builds them.
package k8stest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/terrane-net/terrane/internal/k8sbins"
	"github.com/terrane-net/terrane/internal/k8scp"
)

// Versions the default binary directory is keyed by (internal/k8sbins
// builds these).
const (
	KubernetesVersion = k8sbins.KubernetesVersion
	EtcdVersion       = k8sbins.EtcdVersion
)

// BinsEnv names the environment variable that overrides the binary
// directory.
const BinsEnv = k8sbins.DirEnv

// BuildCommand is what a developer runs to get the binaries.
const BuildCommand = k8sbins.BuildCommand

const (
	// stopGrace is how long a process gets after SIGTERM before SIGKILL:
	// kube-apiserver may ignore SIGTERM while it drains.
	stopGrace = 5 * time.Second
)

// BinDir is the directory holding kube-apiserver, kubectl and etcd.
func BinDir() string { return k8sbins.Dir() }

// Cluster is a running control plane, stopped when the test ends.
type Cluster struct {
	// Config is an admin client configuration (bearer token, the
	// server's CA); copy it before changing it.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file with the same identity.
	Kubeconfig string
	// URL is the apiserver's https URL.
	URL string
	// Kubectl is the path of the kubectl binary beside the apiserver.
	Kubectl string
	// ServiceAccountKeyFile is the PEM ECDSA key that signs service-account
	// tokens, for tests that need a token the TokenRequest API will not
	// issue (one already expired).
	ServiceAccountKeyFile string

	dir     string
	opts    Options
	etcdURL string
	runs    int
	procs   []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// Options change how the control plane runs; the zero value is a default
// kube-apiserver.
type Options struct {
	// NoWatchCache serves watches straight from etcd (--watch-cache=false),
	// so a watch from a resourceVersion older than etcd's compaction (see
	// CompactEtcd) gets 410 Gone at once; with the cache, the cache's own
	// window decides.
	NoWatchCache bool
}

// Start starts etcd and kube-apiserver and waits until the apiserver is
// ready. It fails the test when a binary is missing or start-up fails.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bins := BinDir()
	if missing := k8sbins.Missing(bins, k8sbins.ControlPlane); len(missing) > 0 {
		t.Fatalf("k8stest: %s not found in %s: build the Kubernetes test binaries with `%s` "+
			"(%s the first time; %s=DIR picks another directory)", strings.Join(missing, ", "), bins, BuildCommand,
			k8sbins.About(k8sbins.Estimate(bins, k8sbins.ControlPlane)), BinsEnv)
	}
	c := &Cluster{dir: t.TempDir(), Kubectl: filepath.Join(bins, "kubectl"), opts: opts}
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			c.dumpLogs(t)
		}
	})
	var err error
	// A port picked free can be taken before the server binds it: try again
	// with fresh ports.
	for attempt := 0; attempt < 3; attempt++ {
		if err = c.start(bins); err == nil {
			return c
		}
		t.Logf("k8stest: start attempt %d: %v", attempt+1, err)
		c.dumpLogs(t)
		c.stop()
	}
	t.Fatalf("k8stest: start control plane: %v", err)
	return nil
}

func (c *Cluster) start(bins string) error {
	run := filepath.Join(c.dir, "run-"+strconv.Itoa(c.runs))
	c.runs++
	cp, err := k8scp.Start(context.Background(), k8scp.Options{Bins: bins, Dir: run, NoWatchCache: c.opts.NoWatchCache, Spawn: c.spawn})
	if err != nil {
		return err
	}
	c.etcdURL = cp.EtcdURL
	c.URL = cp.URL
	c.ServiceAccountKeyFile = cp.ServiceAccountKeyFile
	c.Kubeconfig = cp.Kubeconfig
	c.Config = &rest.Config{
		Host:            c.URL,
		BearerToken:     cp.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.CAPEM},
		// Tests hammer the API from many goroutines; client-go's default
		// of 5 requests per second would make them crawl.
		QPS:   1000,
		Burst: 2000,
	}
	return nil
}

// spawn starts a binary with its output in logPath (a k8scp.Spawner).
func (c *Cluster) spawn(name string, argv []string, logPath string) (k8scp.Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a Ctrl-C meant for `go test` reaches it
	// only through our cleanup, in order; killed if the test process dies
	// without cleaning up (a panic, a -timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child exits,
		// and the Go runtime ends threads that a goroutine locked and
		// left (netns code does): start it from a thread of its own that
		// lives exactly as long as the child.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	if err := <-started; err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, p)
	return p, nil
}

func (p *proc) Done() <-chan struct{} { return p.done }

func (p *proc) Describe() string { return fmt.Sprintf("%v; see %s", p.cmd.ProcessState, p.log) }

// stop stops the processes, newest first: SIGTERM, then SIGKILL after
// stopGrace.
func (c *Cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// dumpLogs shows the end of each process's log.
func (c *Cluster) dumpLogs(t testing.TB) {
	for _, p := range c.procs {
		data, err := os.ReadFile(p.log)
		if err != nil {
			continue
		}
		t.Logf("k8stest: %s, last lines of %s:\n%s", p.name, p.log, k8scp.LastLines(data, 30))
	}
}

// RunKubectl runs kubectl against the cluster and returns its combined output.
func (c *Cluster) RunKubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}
