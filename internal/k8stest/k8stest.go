// Package k8stest runs a real Kubernetes control plane for tests: an etcd
// server and a kube-apiserver, both real binaries built by
// scripts/k8s-bins.sh, on loopback ports with throwaway certificates, keys
// and an admin token, their data and logs in t.TempDir(). No scheduler,
// controller manager or kubelet: enough for custom resources, watches and
// RBAC.
//
// A test that needs one calls Start and talks to the API through the
// returned Cluster's rest.Config or kubeconfig file. When the binaries are
// missing the test fails (never skips) with the command that builds them.
package k8stest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
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
)

// Versions the default binary directory is keyed by; scripts/k8s-bins.sh
// builds these.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.3"
)

// BinsEnv names the environment variable that overrides the binary
// directory (the same one scripts/k8s-bins.sh writes to).
const BinsEnv = "TERRANE_K8S_BINS"

// BuildCommand is what a developer runs to get the binaries.
const BuildCommand = "bash scripts/k8s-bins.sh"

const (
	// readyTimeout bounds start-up; kube-apiserver is ready in about 2 s
	// on an idle machine, much slower beside a -race build on 2 cores.
	readyTimeout = 90 * time.Second
	// stopGrace is how long a process gets after SIGTERM before SIGKILL:
	// kube-apiserver may ignore SIGTERM while it drains.
	stopGrace = 5 * time.Second
	// adminToken is the bearer token of the admin identity (group
	// system:masters); only ever valid for a throwaway loopback server.
	adminToken = "terrane-k8stest-admin"
)

// BinDir is the directory holding kube-apiserver, kubectl and etcd.
func BinDir() string {
	if d := os.Getenv(BinsEnv); d != "" {
		return d
	}
	return filepath.Join("/var/cache/terrane/k8s", KubernetesVersion+"-etcd"+EtcdVersion)
}

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
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(bins, b)); err != nil {
			t.Fatalf("k8stest: %s not found in %s (%v): build the Kubernetes test binaries with `%s` "+
				"(about 5 minutes the first time; %s=DIR picks another directory)", b, bins, err, BuildCommand, BinsEnv)
		}
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
	run := filepath.Join(c.dir, "run-"+strconv.Itoa(len(c.procs)))
	if err := os.MkdirAll(run, 0o700); err != nil {
		return err
	}
	pki, err := writePKI(filepath.Join(run, "pki"))
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	etcdClient, etcdPeer, apiPort := freePort(), freePort(), freePort()
	etcdURL := "http://127.0.0.1:" + etcdClient
	c.etcdURL = etcdURL
	etcd, err := c.spawn(run, "etcd", filepath.Join(bins, "etcd"),
		"--name=k8stest",
		"--data-dir="+filepath.Join(run, "etcd-data"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls=http://127.0.0.1:"+etcdPeer,
		"--initial-advertise-peer-urls=http://127.0.0.1:"+etcdPeer,
		"--initial-cluster=k8stest=http://127.0.0.1:"+etcdPeer,
		// Test data is thrown away; fsync only slows the tests.
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := waitHTTP(ctx, etcd, http.DefaultClient, etcdURL+"/health", nil); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}

	c.URL = "https://127.0.0.1:" + apiPort
	c.ServiceAccountKeyFile = pki.saKey
	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The kubernetes Service's endpoints may not be loopback; no
		// test needs them.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + apiPort,
		"--tls-cert-file=" + pki.serverCert,
		"--tls-private-key-file=" + pki.serverKey,
		"--client-ca-file=" + pki.caCert,
		"--token-auth-file=" + pki.tokens,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + pki.saKey,
		"--service-account-signing-key-file=" + pki.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		// No controller manager creates the default service accounts.
		"--disable-admission-plugins=ServiceAccount",
		"--cert-dir=" + filepath.Join(run, "apiserver-certs"),
		"--v=1",
	}
	if c.opts.NoWatchCache {
		apiArgs = append(apiArgs, "--watch-cache=false")
	}
	api, err := c.spawn(run, "kube-apiserver", filepath.Join(bins, "kube-apiserver"), apiArgs...)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(pki.caCert)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	if err := waitHTTP(ctx, api, hc, c.URL+"/readyz", map[string]string{"Authorization": "Bearer " + adminToken}); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}

	c.Config = &rest.Config{
		Host:            c.URL,
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		// Tests hammer the API from many goroutines; client-go's default
		// of 5 requests per second would make them crawl.
		QPS:   1000,
		Burst: 2000,
	}
	c.Kubeconfig = filepath.Join(run, "kubeconfig")
	return os.WriteFile(c.Kubeconfig, kubeconfig(c.URL, pki.caCert), 0o600)
}

// spawn starts a binary with its output in run/<name>.log.
func (c *Cluster) spawn(run, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(run, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
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

// waitHTTP polls url until it answers 200, the process exits or ctx ends.
func waitHTTP(ctx context.Context, p *proc, hc *http.Client, url string, header map[string]string) error {
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, lastLines(body, 5))
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before it was ready (%s); see %s", p.cmd.ProcessState, p.log)
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: last answer from %s: %s", readyTimeout, url, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

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
		t.Logf("k8stest: %s, last lines of %s:\n%s", p.name, p.log, lastLines(data, 30))
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

func lastLines(data []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("k8stest: no free port: %v", err))
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func kubeconfig(server, caFile string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: k8stest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: k8stest
  context:
    cluster: k8stest
    user: admin
current-context: k8stest
`, server, caFile, adminToken)
}
