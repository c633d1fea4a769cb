package kubenode

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Files of a node's directory.
func (o *Options) containerdDir() string    { return filepath.Join(o.Dir, "containerd") }
func (o *Options) ContainerdSocket() string { return ContainerdSocketIn(o.Dir) }
func (o *Options) containerdConfig() string { return filepath.Join(o.Dir, "containerd.toml") }
func (o *Options) kubeletConfig() string    { return filepath.Join(o.Dir, "kubelet.yaml") }
func (o *Options) KubeletRoot() string      { return filepath.Join(o.Dir, "kubelet") }
func (o *Options) runcWrapper() string      { return filepath.Join(o.Dir, "runc-wrapper") }
func (o *Options) runcRoot() string         { return filepath.Join(o.Dir, "runc") }
func (o *Options) cniConfDir() string       { return filepath.Join(o.Dir, "net.d") }
func (o *Options) podLogs() string          { return podLogsIn(o.Dir) }

func podLogsIn(dir string) string { return filepath.Join(dir, "pod-logs") }

// ContainerdSocketIn is the containerd socket of the node in dir.
func ContainerdSocketIn(dir string) string { return filepath.Join(dir, "containerd.sock") }

// containerdTOML is containerd's configuration: everything of its own in
// the node's directory (root, state, sockets, runc's state), the CRI
// plugin's sandbox image the locally imported pause image, runc through
// the wrapper that drops negative OOM score adjustments, and the CNI
// configuration the node's agent installed.
func (o *Options) containerdTOML() string {
	d := o.containerdDir()
	q := strconv.Quote
	return fmt.Sprintf(`# Written by terrane (internal/kubenode) for node %[1]s.
version = 2
root = %[2]s
state = %[3]s
# Plugins that read or write outside the node's directory, or that this
# kernel cannot run.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = %[4]s

[ttrpc]
  address = %[5]s

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]s
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[7]s
        Root = %[8]s
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[9]s
    conf_dir = %[10]s
    max_conf_num = 1
`, o.Name, q(filepath.Join(d, "root")), q(filepath.Join(d, "state")), q(o.ContainerdSocket()),
		q(o.ContainerdSocket()+".ttrpc"), q(PauseImage), q(o.runcWrapper()), q(o.runcRoot()),
		q(o.CNIBinDir), q(o.cniConfDir()))
}

// kubeletYAML is the kubelet's configuration file: the cgroupfs driver on
// cgroup v1 under the node's own cgroup root, no swap check, the node's
// containerd, served on the node's address, and eviction thresholds a
// busy shared machine does not cross.
func (o *Options) kubeletYAML() string {
	return fmt.Sprintf(`# Written by terrane (internal/kubenode) for node %s.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
resolvConf: ""
podLogsDir: %s
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 24h
nodeStatusUpdateFrequency: 2s
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 20s
maxPods: 110
logging:
  verbosity: 1
`, o.Name, o.NodeIP, KubeletPort, HealthzPort, o.ContainerdSocket(), o.CgroupRoot(), o.podLogs())
}

// kubeletArgs are the kubelet's flags besides its configuration file.
func (o *Options) kubeletArgs() []string {
	args := []string{
		o.Kubelet,
		"--config=" + o.kubeletConfig(),
		"--kubeconfig=" + o.Kubeconfig,
		"--root-dir=" + o.KubeletRoot(),
		"--cert-dir=" + filepath.Join(o.Dir, "kubelet-pki"),
		"--hostname-override=" + o.Name,
		"--node-ip=" + o.NodeIP.String(),
	}
	if len(o.Labels) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
			kv = append(kv, k+"="+o.Labels[k])
		}
		args = append(args, "--node-labels="+strings.Join(kv, ","))
	}
	return args
}

// runcWrapperScript is containerd's runc: it runs the terrane binary's
// runc shim (see RuncShim), which rewrites a negative oomScoreAdj and
// execs the real runc.
func (o *Options) runcWrapperScript() string {
	return fmt.Sprintf("#!/bin/sh\n# Written by terrane (internal/kubenode): runc without negative OOM score adjustments.\nexec %s %s %s \"$@\"\n",
		shellQuote(o.Terrane), strings.Join(RuncShimArgs, " "), shellQuote(o.Runc))
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
