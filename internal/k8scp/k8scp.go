// Package k8scp runs a real Kubernetes control plane on loopback: an etcd
// server and a kube-apiserver (the binaries of internal/k8sbins), with
// throwaway certificates, keys and an admin token, and a kubeconfig file
// for kubectl and clients. No scheduler, controller manager or kubelet:
// enough for custom resources, watches, RBAC, Nodes and Pods bound by
// nodeName.
//
// The caller decides how processes run (Options.Spawn): the tests
// (internal/k8stest) tie them to the test process, `terrane lab up --k8s`
// starts them as detached daemons that `lab down` stops. The package
// imports no client-go: readiness is plain HTTPS.
package k8scp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/k8sbins"
)

// Defaults.
const (
	// DefaultReadyTimeout bounds start-up; kube-apiserver is ready in
	// about 2 s on an idle machine, much slower beside a -race build on 2
	// cores.
	DefaultReadyTimeout = 90 * time.Second
	// certLifetime: a lab may run for days.
	certLifetime = 365 * 24 * time.Hour
)

// Process is a started binary, as the Spawner reports it.
type Process interface {
	// Done is closed when the process has exited.
	Done() <-chan struct{}
	// Describe says how it exited and where its log is.
	Describe() string
}

// Spawner starts argv with its output in logPath. name is "etcd" or
// "kube-apiserver".
type Spawner func(name string, argv []string, logPath string) (Process, error)

// Options configure Start.
type Options struct {
	// Bins holds etcd and kube-apiserver (default k8sbins.Dir()).
	Bins string
	// Dir receives the certificates, etcd's data, the logs and the
	// kubeconfig.
	Dir string
	// Spawn starts a process (required).
	Spawn Spawner
	// Token is the admin's bearer token (default: random).
	Token string
	// NoWatchCache serves watches straight from etcd
	// (--watch-cache=false).
	NoWatchCache bool
	// ReadyTimeout bounds each wait (default DefaultReadyTimeout).
	ReadyTimeout time.Duration
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	// URL is the apiserver's https URL on 127.0.0.1.
	URL string
	// EtcdURL is etcd's client URL (plain HTTP on 127.0.0.1).
	EtcdURL string
	// Kubeconfig is a kubeconfig file with the admin identity.
	Kubeconfig string
	// CAFile and CAPEM are the CA that signed the serving certificate.
	CAFile string
	CAPEM  []byte
	// Token is the admin's bearer token (group system:masters).
	Token string
	// ServiceAccountKeyFile is the PEM ECDSA key that signs
	// service-account tokens.
	ServiceAccountKeyFile string
	// Etcd and APIServer are the processes, for the caller to stop
	// (kube-apiserver may ignore SIGTERM while it drains: SIGKILL after a
	// timeout).
	Etcd, APIServer Process
}

// Start starts etcd, then kube-apiserver, on free loopback ports and
// waits until the apiserver is ready. On error the processes already
// started are in the returned ControlPlane (which may be partly filled)
// for the caller to stop.
func Start(ctx context.Context, o Options) (*ControlPlane, error) {
	if o.Bins == "" {
		o.Bins = k8sbins.Dir()
	}
	if o.Spawn == nil {
		return nil, fmt.Errorf("k8scp: no Spawn")
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if missing := k8sbins.Missing(o.Bins, []string{k8sbins.Etcd, k8sbins.APIServer}); len(missing) > 0 {
		return nil, fmt.Errorf("%s not found in %s: build them with `%s` (%s the first time; %s=DIR picks another directory)",
			strings.Join(missing, " and "), o.Bins, k8sbins.BuildCommand, k8sbins.About(k8sbins.Estimate(o.Bins, k8sbins.ControlPlane)), k8sbins.DirEnv)
	}
	if o.Token == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		o.Token = "terrane-admin-" + hex.EncodeToString(b)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	p, err := writePKI(filepath.Join(o.Dir, "pki"), o.Token)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	cp := &ControlPlane{Token: o.Token, CAFile: p.caCert, ServiceAccountKeyFile: p.saKey}
	if cp.CAPEM, err = os.ReadFile(p.caCert); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	cp.EtcdURL = "http://127.0.0.1:" + etcdClient
	cp.Etcd, err = o.Spawn(k8sbins.Etcd, []string{filepath.Join(o.Bins, k8sbins.Etcd),
		"--name=terrane",
		"--data-dir=" + filepath.Join(o.Dir, "etcd-data"),
		"--listen-client-urls=" + cp.EtcdURL,
		"--advertise-client-urls=" + cp.EtcdURL,
		"--listen-peer-urls=http://127.0.0.1:" + etcdPeer,
		"--initial-advertise-peer-urls=http://127.0.0.1:" + etcdPeer,
		"--initial-cluster=terrane=http://127.0.0.1:" + etcdPeer,
		// Throwaway data: fsync only slows tests and labs.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, filepath.Join(o.Dir, "etcd.log"))
	if err != nil {
		return cp, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	if err := waitHTTP(wctx, cp.Etcd, http.DefaultClient, cp.EtcdURL+"/health", nil); err != nil {
		return cp, fmt.Errorf("etcd: %w", err)
	}

	cp.URL = "https://127.0.0.1:" + apiPort
	args := []string{filepath.Join(o.Bins, k8sbins.APIServer),
		"--etcd-servers=" + cp.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The kubernetes Service's endpoints may not be loopback; nothing
		// here needs them.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + apiPort,
		"--tls-cert-file=" + p.serverCert,
		"--tls-private-key-file=" + p.serverKey,
		"--client-ca-file=" + p.caCert,
		"--token-auth-file=" + p.tokens,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.saKey,
		"--service-account-signing-key-file=" + p.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		// No controller manager creates the default service accounts.
		"--disable-admission-plugins=ServiceAccount",
		"--kubelet-preferred-address-types=InternalIP",
		"--cert-dir=" + filepath.Join(o.Dir, "apiserver-certs"),
		"--v=1",
	}
	if o.NoWatchCache {
		args = append(args, "--watch-cache=false")
	}
	cp.APIServer, err = o.Spawn(k8sbins.APIServer, args, filepath.Join(o.Dir, "kube-apiserver.log"))
	if err != nil {
		return cp, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.CAPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if err := waitHTTP(wctx, cp.APIServer, hc, cp.URL+"/readyz", map[string]string{"Authorization": "Bearer " + o.Token}); err != nil {
		return cp, fmt.Errorf("kube-apiserver: %w", err)
	}
	cp.Kubeconfig = filepath.Join(o.Dir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, KubeconfigFile(cp.URL, cp.CAFile, cp.Token), 0o600); err != nil {
		return cp, err
	}
	return cp, nil
}

// waitHTTP polls url until it answers 200, the process exits or ctx ends.
func waitHTTP(ctx context.Context, p Process, hc *http.Client, url string, header map[string]string) error {
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
			last = fmt.Sprintf("%s: %s", resp.Status, LastLines(body, 5))
		} else {
			last = err.Error()
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited before it was ready (%s)", p.Describe())
		case <-ctx.Done():
			return fmt.Errorf("not ready in time: last answer from %s: %s", url, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LastLines is the last n lines of data.
func LastLines(data []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago (a port can be taken before the server binds it: callers retry).
func freePorts(n int) ([]string, error) {
	var out []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("no free loopback port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return out, nil
}

// KubeconfigFile is a kubeconfig for server with a bearer token.
func KubeconfigFile(server, caFile, token string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: terrane
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: terrane
  context:
    cluster: terrane
    user: admin
current-context: terrane
`, server, caFile, token)
}
