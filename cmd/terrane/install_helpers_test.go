package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/k8stest"
)

// installCNIAsInitContainer runs the DaemonSet's init container's args,
// its host paths under a temporary root and the image's /terrane-cni a
// stand-in file: the conflist it writes carries the pod-annotations
// capability and the plugin lands in the CNI bin directory.
func installCNIAsInitContainer(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	if len(pod.InitContainers) != 1 {
		t.Fatalf("the agent pod has %d init containers, want 1", len(pod.InitContainers))
	}
	root := t.TempDir()
	plugin := filepath.Join(root, "terrane-cni")
	if err := os.WriteFile(plugin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range pod.InitContainers[0].Args {
		a = strings.Replace(a, "=/host/", "="+root+"/host/", 1)
		a = strings.Replace(a, "--cni-plugin=/terrane-cni", "--cni-plugin="+plugin, 1)
		args = append(args, a)
	}
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("terrane %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	conf, err := os.ReadFile(filepath.Join(root, "host/etc/cni/net.d/10-terrane.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(conf, []byte(`"io.kubernetes.cri.pod-annotations": true`)) {
		t.Fatalf("the conflist lacks the pod-annotations capability:\n%s", conf)
	}
	if _, err := os.Stat(filepath.Join(root, "host/opt/cni/bin/terrane-cni")); err != nil {
		t.Fatal(err)
	}
}

// manifestDocs splits a manifest into its objects, by kind/name.
func manifestDocs(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind == "" {
			continue
		}
		out[meta.Kind+"/"+meta.Metadata.Name] = doc
	}
	return out
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// podArgs is the container's args as the kubelet would run them: each
// $(VAR) expanded from the container's env, whose downward-API values
// come from fields (by field path), or from fields by the variable's name
// (the service links the kubelet adds). An unknown variable fails the test.
func podArgs(t *testing.T, c corev1.Container, fields map[string]string) []string {
	t.Helper()
	env := map[string]string{}
	for k, v := range fields {
		if !strings.Contains(k, ".") {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v, ok := fields[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Fatalf("container %s: env %s from %s, which the test does not provide", c.Name, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		}
	}
	args := slices.Clone(c.Args)
	for i, a := range args {
		args[i] = varRef.ReplaceAllStringFunc(a, func(ref string) string {
			name := varRef.FindStringSubmatch(ref)[1]
			v, ok := env[name]
			if !ok {
				t.Fatalf("container %s: %s refers to $(%s), which nothing defines", c.Name, a, name)
			}
			return v
		})
	}
	return args
}

// serviceAccountToken asks the TokenRequest API for a token of the
// account, for audience ("": the API server's), bound to pod if not nil.
func serviceAccountToken(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name, audience string, pod *corev1.Pod) string {
	t.Helper()
	exp := int64(3600)
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}
	if audience != "" {
		req.Spec.Audiences = []string{audience}
	}
	if pod != nil {
		req.Spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	res, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request for %s/%s: %v", ns, name, err)
	}
	return res.Status.Token
}

// tokenKubeconfig writes a kubeconfig that authenticates with token only.
func tokenKubeconfig(t *testing.T, c *k8stest.Cluster, token string) string {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "apiserver-ca.crt")
	if err := os.WriteFile(caFile, c.Config.CAData, 0o600); err != nil {
		t.Fatal(err)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: k8stest, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: sa, user: {token: %q}}]
contexts: [{name: sa, context: {cluster: k8stest, user: sa}}]
current-context: sa
`, c.URL, caFile, token)
	f := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(f, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// replica is a `terrane server` child process.
type replica struct {
	cmd  *exec.Cmd
	addr string

	mu   sync.Mutex
	logs bytes.Buffer
}

func (r *replica) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

// startReplicas starts n `terrane ARGS` processes at once and waits until
// each listens.
func startReplicas(t *testing.T, args []string, n int) []*replica {
	t.Helper()
	for _, a := range args {
		if strings.ContainsAny(a, " \t\n") {
			t.Fatalf("argument %q holds white space, which TERRANE_RUN_MAIN cannot pass", a)
		}
	}
	rs := make([]*replica, n)
	addrs := make([]chan string, n)
	for i := range rs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "TERRANE_RUN_MAIN="+strings.Join(args, " "))
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{cmd: cmd}
		rs[i], addrs[i] = r, make(chan string, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("replica %d's log:\n%s", i, r.log())
			}
		})
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				r.mu.Lock()
				r.logs.WriteString(sc.Text() + "\n")
				r.mu.Unlock()
				if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
					select {
					case addrs[i] <- m[1]:
					default:
					}
				}
			}
			select {
			case addrs[i] <- "": // exited before it listened
			default:
			}
		}()
	}
	deadline := time.After(60 * time.Second)
	for i, r := range rs {
		select {
		case r.addr = <-addrs[i]:
			if r.addr == "" {
				t.Fatalf("replica %d exited before it served:\n%s", i, r.log())
			}
		case <-deadline:
			for i, r := range rs {
				t.Logf("replica %d:\n%s", i, r.log())
			}
			t.Fatal("the servers did not all start within 60 s")
		}
	}
	return rs
}

// servedCertificate is the certificate a TLS server at addr presents.
func servedCertificate(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // inspected, then verified by the caller
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// waitReady waits for the readiness probe's answer: /readyz 200 over TLS
// checked against roots.
func waitReady(t *testing.T, ctx context.Context, url string, roots *x509.CertPool) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	waitFor(t, 30*time.Second, func() string {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.Status
		}
		return ""
	})
}

// agentClient is an agent's client on node: a token of terrane-agent for
// audience, bound to a pod of the agent on the node, in a file as the
// projected volume holds it; the server's certificate checked against
// caFile.
func agentClient(t *testing.T, ctx context.Context, cs kubernetes.Interface, node, audience, server, caFile string) *client.Client {
	t.Helper()
	no := false
	pod, err := cs.CoreV1().Pods("terrane-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "terrane-agent-" + node},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: "terrane-agent", AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "agent", Image: "terrane:dev"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(serviceAccountToken(t, ctx, cs, "terrane-system", "terrane-agent", audience, pod)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{Server: server, CAFile: caFile, TokenFile: tokFile})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// projectedAudience is the audience of the pod's projected token.
func projectedAudience(t *testing.T, pod corev1.PodSpec) string {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil {
				return s.ServiceAccountToken.Audience
			}
		}
	}
	t.Fatal("the agent pod has no projected ServiceAccount token")
	return ""
}

func createTestNode(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, ip string, labels map[string]string) {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it returns "" or within passes.
func waitFor(t *testing.T, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
