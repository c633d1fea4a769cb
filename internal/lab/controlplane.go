package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/pki"
)

// AdminClient reaches the lab's server over its unix socket with the
// built-in CA's admin certificate.
func AdminClient(n Names) (*client.Client, error) {
	admin := pki.PairIn(n.PKI(), pki.AdminName)
	return client.New(client.Config{
		Server:   "unix://" + n.ServerSocket(),
		CAFile:   pki.PairIn(n.PKI(), pki.CAName).Cert,
		CertFile: admin.Cert, KeyFile: admin.Key,
	})
}

// UICommand is the command that opens the lab server's topology page
// (terrane ctl ui, as the lab's admin).
func UICommand(n Names) string {
	admin := pki.PairIn(n.PKI(), pki.AdminName)
	return fmt.Sprintf("terrane ctl --server unix://%s --ca %s --cert %s --key %s ui", n.ServerSocket(), pki.PairIn(n.PKI(), pki.CAName).Cert, admin.Cert, admin.Key)
}

// daemonNetns is where the lab's own daemons (server, vpcd) run: the
// fabric namespace, or with --k8s the root namespace, where the
// kube-apiserver listens on 127.0.0.1 for the server, kubectl and the lab
// kubelet alike.
func (s *State) daemonNetns() string {
	if s.Kube != nil {
		return ""
	}
	return s.names().Fabric()
}

// startServer runs `terrane server` inside the fabric namespace (the root
// one with --k8s), on a unix socket in the lab directory (sockets on the
// filesystem reach every namespace: the lab's management network), and
// waits until it answers. With --k8s it keeps its state in the Kubernetes
// API and runs the Node and Namespace controllers.
func startServer(ctx context.Context, st *State) (*client.Client, error) {
	n := st.names()
	argv := []string{st.Terrane, "server", "--data-dir", n.ServerData(), "--listen", "unix://" + n.ServerSocket()}
	if k := st.Kube; k != nil {
		argv = append(argv, "--store", "kubernetes", "--kubeconfig", k.Kubeconfig, "--kube-namespace", KubeNamespace,
			"--kube-install-crds", "--kube-nodes", "--kube-node-grace", k.NodeGrace.String(), "--kube-namespaces", "--kube-pods")
	}
	var env []string
	if _, ok := st.Scenario.VPCRouter(); ok {
		argv = append(argv, "--vpc-config", n.VPCConfig())
		env = vpcEnv
	}
	d, err := startDaemon(st, "server", "", st.daemonNetns(), argv, env...)
	if err != nil {
		return nil, err
	}
	var c *client.Client
	err = waitFor(ctx, d, 30*time.Second, "server", func(ctx context.Context) error {
		if c == nil {
			if _, err := os.Stat(pki.PairIn(n.PKI(), pki.AdminName).Key); err != nil {
				return err
			}
			cl, err := AdminClient(n)
			if err != nil {
				return err
			}
			c = cl
		}
		_, err := c.Health(ctx)
		return err
	})
	return c, err
}

// startAgents installs each host's CNI configuration (its own conflist,
// pointing at its own agent's socket) and starts one agent per host inside
// the host's namespace, in parallel; it returns when every agent is ready.
func startAgents(ctx context.Context, st *State, progress func(string, ...any)) error {
	var daemons []*daemon
	for _, h := range st.Scenario.Hosts {
		d, err := startAgent(ctx, st, h)
		if err != nil {
			return err
		}
		daemons = append(daemons, d)
	}
	progress("waiting for %d agents to be ready", len(daemons))
	errs := make([]error, len(daemons))
	var wg sync.WaitGroup
	for i, d := range daemons {
		wg.Go(func() { errs[i] = waitAgent(ctx, st.names(), d) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startAgent installs a host's CNI configuration and starts its agent.
// With --k8s the agent gives no labels: the Node controller registered
// the host with its Node's, and a node may not change them.
func startAgent(ctx context.Context, st *State, h Host) (*daemon, error) {
	n := st.names()
	plugin, err := pluginPath(st)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(n.HostDir(h.Name), 0o700); err != nil {
		return nil, err
	}
	cert, err := pki.Issue(n.PKI(), pki.RoleNode, h.Name)
	if err != nil && !errors.Is(err, pki.ErrExists) {
		return nil, fmt.Errorf("host %s: node certificate: %w", h.Name, err)
	}
	if errors.Is(err, pki.ErrExists) {
		cert = pki.PairIn(n.PKI(), h.Name)
	}
	install := exec.CommandContext(ctx, st.Terrane, "agent", "--install-cni",
		"--cni-conf-dir", n.CNIConfDir(h.Name), "--cni-bin-dir", n.CNIBinDir(h.Name),
		"--socket", n.AgentSocket(h.Name), "--cni-queue-dir", n.CNIQueueDir(h.Name), "--cni-plugin", plugin)
	if out, err := install.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("host %s: terrane agent --install-cni: %v: %s", h.Name, err, bytes.TrimSpace(out))
	}
	argv := []string{st.Terrane, "agent",
		"--server", st.agentServers(),
		"--ca", pki.PairIn(n.PKI(), pki.CAName).Cert, "--cert", cert.Cert, "--key", cert.Key,
		"--host", h.Name, "--ip", h.IP.String(),
		"--socket", n.AgentSocket(h.Name), "--state-dir", n.HostDir(h.Name) + "/state",
		"--cni-queue-dir", n.CNIQueueDir(h.Name)}
	if h.IP6.IsValid() {
		argv = append(argv, "--ip6", h.IP6.String())
	}
	if st.Kube != nil {
		// NetworkPolicy from the lab's API server, through the relay
		// into the host (the kubeconfig's 127.0.0.1 address).
		argv = append(argv, "--policy", "kubernetes", "--kubeconfig", st.Kube.Kubeconfig)
	} else {
		if st.Policy == PolicyServer {
			argv = append(argv, "--policy", "server")
		}
		var labels []string
		for _, k := range slices.Sorted(maps.Keys(h.Labels)) {
			labels = append(labels, k+"="+h.Labels[k])
		}
		argv = append(argv, "--labels", strings.Join(labels, ","))
	}
	return startDaemon(st, "agent", h.Name, n.Node(h.Name), slices.Concat(argv, st.AgentArgs, st.HostAgentArgs[h.Name]))
}

// waitAgent waits until a host's agent says it is ready.
func waitAgent(ctx context.Context, n Names, d *daemon) error {
	agent := cniapi.NewClient(n.AgentSocket(d.Node), 2*time.Second)
	return waitFor(ctx, d, 45*time.Second, "agent "+d.Node, func(ctx context.Context) error {
		s, err := agent.Status(ctx)
		if err != nil {
			return err
		}
		if !s.Ready {
			return fmt.Errorf("not ready: %s", s.Reason)
		}
		return nil
	})
}

// pluginPath finds terrane-cni: in st.PluginDir, else next to the terrane
// binary.
func pluginPath(st *State) (string, error) {
	dir := st.PluginDir
	if dir == "" {
		dir = dirOf(st.Terrane)
	}
	p := dir + "/terrane-cni"
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		return "", fmt.Errorf("no CNI plugin at %s: build it next to terrane (go build -o bin/ ./cmd/terrane ./cmd/terrane-cni) or give --cni-bin-dir", p)
	}
	return p, nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}

// startFabricd runs `terrane lab fabricd` inside the fabric namespace: it
// keeps the routers' routes equal to RouterRoutes as the server's state
// changes.
func startFabricd(ctx context.Context, st *State) error {
	n := st.names()
	d, err := startDaemon(st, "fabricd", "", n.Fabric(), []string{st.Terrane, "lab", "fabricd", "--name", st.Name, "--dir", st.Dir})
	if err != nil {
		return err
	}
	return waitFor(ctx, d, 20*time.Second, "fabricd", func(context.Context) error {
		s, err := ReadFabricStatus(n)
		if err != nil {
			return err
		}
		if s.Revision == 0 {
			return errors.New("no snapshot applied yet")
		}
		return nil
	})
}

// WaitFabric waits until the routers carry the routes of the server's
// current state (fabricd has applied a snapshot at least as new).
func WaitFabric(ctx context.Context, st *State, c *client.Client) error {
	if !st.Scenario.StaticRouters() {
		return nil // no static routers: no fabricd
	}
	snap, err := c.Snapshot(ctx, 0, 0)
	if err != nil {
		return fmt.Errorf("read the server's state: %w", err)
	}
	return waitFor(ctx, nil, 30*time.Second, "routers", func(context.Context) error {
		s, err := ReadFabricStatus(st.names())
		switch {
		case err != nil:
			return err
		case s.Revision < snap.Revision:
			return fmt.Errorf("fabricd applied revision %d, the server is at %d", s.Revision, snap.Revision)
		case s.Error != "":
			return fmt.Errorf("fabricd: %s", s.Error)
		}
		return nil
	})
}
