// Package kubenode runs one real Kubernetes node inside a network
// namespace: Debian's containerd (its own configuration, root, state and
// socket; runc through a wrapper) and a real kubelet registering the Node
// with the given labels and address, both started with
// `nsenter --net=NETNS` and detached. Pods get their network from the CNI
// configuration the namespace's Terrane agent installed. Cleanup removes
// everything a node made, from its directory's record alone: processes,
// mounts, pod namespaces, cgroup trees, CNI results and the kubelet's
// iptables chains.
package kubenode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Ports the kubelet serves on in its namespace (each node has its own).
const (
	KubeletPort = 10250
	HealthzPort = 10248
)

// Options describe one node.
type Options struct {
	// Name is the Node's name.
	Name string
	// Netns is the path of the network namespace the node runs in
	// (/run/netns/NAME).
	Netns string
	// Dir holds everything of the node: configurations, containerd's
	// root and state, the kubelet's root, logs (Dir/logs).
	Dir string
	// NodeIP is the node's address (InternalIP, the kubelet's address).
	NodeIP netip.Addr
	// Labels are the Node's labels (--node-labels).
	Labels map[string]string
	// Kubeconfig is the kubelet's identity at the API server.
	Kubeconfig string
	// CgroupName is the node's cgroup root below every v1 hierarchy's
	// root, e.g. "terrane-lab-lab-host-1"; default "terrane-node-<Name>".
	CgroupName string
	// CNIConfDir holds the conflist the node's pods are wired with (it
	// may be installed after Start: InstallCNI); CNIBinDir its plugin
	// (Tools.Loopback is copied there too).
	CNIConfDir, CNIBinDir string
	// Kubelet and Terrane are binaries; Containerd, Runc and Ctr are
	// looked up on PATH when empty.
	Kubelet, Terrane, Containerd, Runc, Ctr string
	// Tools are the images to import and the loopback plugin.
	Tools Tools
}

// CgroupRoot is the kubelet's cgroupRoot.
func (o *Options) CgroupRoot() string {
	if o.CgroupName != "" {
		return "/" + o.CgroupName
	}
	return "/terrane-node-" + o.Name
}

// LogDir holds containerd.log and kubelet.log.
func (o *Options) LogDir() string { return filepath.Join(o.Dir, "logs") }

var (
	nodeNameRe   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$`)
	cgroupNameRe = regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9_.]{0,99}$`)
)

// validate checks the options and fills in the defaults.
func (o *Options) validate() error {
	var errs []error
	if !nodeNameRe.MatchString(o.Name) {
		errs = append(errs, fmt.Errorf("name %q: want a Node name (lowercase letters, digits, '-' and '.', at most 63)", o.Name))
	}
	if o.CgroupName != "" && !cgroupNameRe.MatchString(o.CgroupName) {
		errs = append(errs, fmt.Errorf("cgroup name %q: want letters, digits, '-', '_' or '.'", o.CgroupName))
	}
	if o.Netns == "" {
		errs = append(errs, errors.New("netns: required, the path of the node's network namespace (/run/netns/NAME)"))
	} else if _, err := os.Stat(o.Netns); err != nil {
		errs = append(errs, fmt.Errorf("netns: %w", err))
	}
	if o.Dir == "" || !filepath.IsAbs(o.Dir) {
		errs = append(errs, fmt.Errorf("dir %q: want an absolute directory for the node's files", o.Dir))
	} else if p := o.ContainerdSocket() + ".ttrpc"; len(p) > 107 {
		errs = append(errs, fmt.Errorf("dir %s: containerd's socket %s would exceed the 107 bytes of a unix socket path; pick a shorter directory", o.Dir, p))
	}
	if o.CNIConfDir == "" || o.CNIBinDir == "" {
		errs = append(errs, errors.New("CNI conf dir and bin dir: required, the node's agent's (terrane agent --install-cni)"))
	}
	if !o.NodeIP.IsValid() {
		errs = append(errs, errors.New("node IP: required, the node's address in its namespace"))
	}
	for _, f := range []struct{ name, path string }{
		{"kubeconfig", o.Kubeconfig}, {"kubelet", o.Kubelet}, {"terrane", o.Terrane},
		{"pause image archive", o.Tools.PauseArchive}, {"pod image archive", o.Tools.PodArchive},
		{"CNI loopback plugin", o.Tools.Loopback},
	} {
		if f.path == "" {
			errs = append(errs, fmt.Errorf("%s: required", f.name))
		} else if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	for _, t := range []struct {
		field *string
		name  string
		pkg   string
	}{{&o.Containerd, "containerd", "containerd"}, {&o.Ctr, "ctr", "containerd"}, {&o.Runc, "runc", "runc"}} {
		if *t.field != "" {
			continue
		}
		p, err := exec.LookPath(t.name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not found on PATH; install it (apt-get install %s)", t.name, t.pkg))
			continue
		}
		*t.field = p
	}
	if len(errs) > 0 {
		return fmt.Errorf("kubenode %s: %w", o.Name, errors.Join(errs...))
	}
	return nil
}

// Node is a running node: its containerd and kubelet.
type Node struct {
	opts       Options
	containerd *daemon
	kubelet    *daemon
	api        *apiReader
	// kubeletStarted is when the kubelet was started.
	kubeletStarted time.Time
	// Timings of Start's steps.
	Timings Timings
}

// Timings measure a node's start.
type Timings struct {
	Containerd time.Duration `json:"containerd"`
	Images     time.Duration `json:"images"`
	// Ready is from the kubelet's start to the Node's Ready condition.
	Ready time.Duration `json:"ready"`
}

// Start prepares the node's files and cgroups, starts containerd, imports
// the images and starts the kubelet. It does not wait for the Node to be
// Ready (WaitReady). On error what was made stays recorded: Cleanup
// removes it.
func Start(ctx context.Context, o Options) (*Node, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	n := &Node{opts: o}
	for _, d := range []string{o.Dir, o.LogDir(), o.containerdDir(), o.KubeletRoot(), o.runcRoot(), o.cniConfDir(), o.CNIBinDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	rec := record{Name: o.Name, Netns: o.Netns, Dir: o.Dir, CgroupRoot: o.CgroupRoot(), Socket: o.ContainerdSocket()}
	if err := rec.save(); err != nil {
		return nil, err
	}
	if err := makeCgroupRoot(o.CgroupRoot()); err != nil {
		return nil, err
	}
	if err := o.writeFiles(); err != nil {
		return nil, err
	}
	api, err := newAPIReader(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	n.api = api

	t0 := time.Now()
	n.containerd, err = startDaemon(o.Netns, filepath.Join(o.LogDir(), "containerd.log"),
		[]string{o.Containerd, "--config", o.containerdConfig()})
	if err != nil {
		return nil, err
	}
	rec.Containerd = n.containerd.pid
	if err := rec.save(); err != nil {
		return nil, err
	}
	if err := waitUntil(ctx, 30*time.Second, n.containerd, "containerd", func(ctx context.Context) error {
		_, err := n.ctr(ctx, "version")
		return err
	}); err != nil {
		return nil, err
	}
	n.Timings.Containerd = time.Since(t0)
	t1 := time.Now()
	for _, a := range []string{o.Tools.PauseArchive, o.Tools.PodArchive} {
		if out, err := n.ctr(ctx, "images", "import", a); err != nil {
			return nil, fmt.Errorf("node %s: import %s into containerd: %w\n%s", o.Name, a, err, out)
		}
	}
	n.Timings.Images = time.Since(t1)
	n.kubeletStarted = time.Now()
	n.kubelet, err = startDaemon(o.Netns, filepath.Join(o.LogDir(), "kubelet.log"), o.kubeletArgs())
	if err != nil {
		return nil, err
	}
	rec.Kubelet = n.kubelet.pid
	return n, rec.save()
}

// writeFiles writes containerd's and the kubelet's configurations, the
// runc wrapper, the CNI configuration containerd reads and the loopback
// plugin.
func (o *Options) writeFiles() error {
	if err := writeAtomic(o.containerdConfig(), []byte(o.containerdTOML()), 0o600); err != nil {
		return err
	}
	if err := writeAtomic(o.kubeletConfig(), []byte(o.kubeletYAML()), 0o600); err != nil {
		return err
	}
	if err := writeAtomic(o.runcWrapper(), []byte(o.runcWrapperScript()), 0o755); err != nil {
		return err
	}
	if err := copyConflists(o.CNIConfDir, o.cniConfDir(), false); err != nil {
		return err
	}
	lo, err := os.ReadFile(o.Tools.Loopback)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(o.CNIBinDir, "loopback"), lo, 0o755)
}

// containerdCNIVersion is the newest CNI spec version Debian 12's
// containerd (1.6, with libcni 1.1) parses results of.
const containerdCNIVersion = "1.0.0"

// InstallCNI copies the node's CNI configuration for containerd, which
// follows its directory: a node may start before its agent installed the
// conflist (the kubelet registers the Node first, the agent is placed by
// it), and is Ready once this is done.
func (n *Node) InstallCNI() error {
	return copyConflists(n.opts.CNIConfDir, n.opts.cniConfDir(), true)
}

// copyConflists copies the conflists of src into dst with their
// cniVersion set to what containerd 1.6 reads: the agent writes 1.1.0,
// whose results libcni 1.1 cannot parse ("unsupported CNI result
// version"); Terrane's plugin speaks both. With none there, it fails only
// if required.
func copyConflists(src, dst string, required bool) error {
	files, err := filepath.Glob(filepath.Join(src, "*.conflist"))
	if err != nil {
		return err
	}
	if len(files) == 0 && !required {
		return nil
	}
	if len(files) == 0 {
		return fmt.Errorf("CNI conf dir %s holds no .conflist; install the agent's (terrane agent --install-cni) first", src)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var conf map[string]any
		if err := json.Unmarshal(data, &conf); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		conf["cniVersion"] = containerdCNIVersion
		out, err := json.MarshalIndent(conf, "", "  ")
		if err != nil {
			return err
		}
		if err := writeAtomic(filepath.Join(dst, filepath.Base(f)), out, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ctr runs ctr against the node's containerd in the k8s.io namespace (the
// CRI's).
func (n *Node) ctr(ctx context.Context, args ...string) ([]byte, error) {
	return ctrCmd(ctx, n.opts.Ctr, n.opts.ContainerdSocket(), args...)
}

func ctrCmd(ctx context.Context, ctr, sock string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ctr, append([]string{"-a", sock, "-n", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// WaitReady waits until the API reports the Node Ready, and returns its
// status.
func (n *Node) WaitReady(ctx context.Context, timeout time.Duration) (NodeStatus, error) {
	var st NodeStatus
	err := waitUntil(ctx, timeout, n.kubelet, "node "+n.opts.Name+" Ready", func(ctx context.Context) error {
		if n.containerd.exited() {
			return n.containerd.failure("containerd")
		}
		s, err := n.api.node(ctx, n.opts.Name)
		if err != nil {
			return err
		}
		st = s
		if !s.Ready {
			return errors.New(s.Reason)
		}
		return nil
	})
	if err == nil {
		n.Timings.Ready = time.Since(n.kubeletStarted)
	}
	return st, err
}

// Processes are the node's daemons, for a caller that records them.
func (n *Node) Processes() []Process {
	return []Process{
		{Role: "containerd", PID: n.containerd.pid, Log: n.containerd.log, Args: n.containerd.args},
		{Role: "kubelet", PID: n.kubelet.pid, Log: n.kubelet.log, Args: n.kubelet.args},
	}
}

// Process is one daemon of the node.
type Process struct {
	Role string
	PID  int
	Log  string
	Args []string
}

// Stop stops the node and removes what it made (Cleanup).
func (n *Node) Stop(ctx context.Context) error { return Cleanup(ctx, n.opts.Dir) }
