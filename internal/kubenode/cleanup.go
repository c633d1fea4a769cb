package kubenode

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// recordFile, in a node's directory, says what Cleanup must remove; it is
// written before anything is made.
const recordFile = "node.json"

type record struct {
	Name       string `json:"name"`
	Netns      string `json:"netns"`
	Dir        string `json:"dir"`
	CgroupRoot string `json:"cgroupRoot"`
	Socket     string `json:"socket"`
	Containerd int    `json:"containerdPID,omitempty"`
	Kubelet    int    `json:"kubeletPID,omitempty"`
	// PodNetns are the pods' namespaces a Cleanup found: kept for the
	// next one if this one fails after their processes are gone.
	PodNetns []string `json:"podNetns,omitempty"`
}

func (r record) save() error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(r.Dir, recordFile), append(b, '\n'), 0o600)
}

// IsNodeDir reports whether dir holds a node's record.
func IsNodeDir(dir string) bool { return exists(filepath.Join(dir, recordFile)) }

// stopGrace is how long a daemon gets after SIGTERM.
const stopGrace = 5 * time.Second

// Cleanup stops the node recorded in dir and removes everything it made:
// the kubelet first (so it restarts nothing), every process in the node's
// cgroup tree (the pods' containers), containerd and its shims; then the
// mounts below dir, the pods' network namespaces (found by the namespace
// of their processes and by containerd's sandbox records), the cgroup
// trees in every hierarchy, the CNI results libcni cached for the node's
// sandboxes, the shims' sockets and the KUBE-* iptables chains in the
// node's namespace. What stays is dir/logs. It succeeds when nothing is
// there and may be called again after a failure.
func Cleanup(ctx context.Context, dir string) error {
	// Cleanup runs to the end, bounded by its own timeouts: a caller
	// cancelled (Ctrl-C, a test's context at its cleanup) must not leave
	// containers running.
	ctx = context.WithoutCancel(ctx)
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("node record %s: %w", dir, err)
	}
	rec.Dir = dir
	var errs []error

	// 1. The kubelet, so it restarts no container.
	stopPIDs(ctx, matching(rec.Kubelet, "kubelet", "--root-dir="+filepath.Join(dir, "kubelet")))

	// 2. The pods' processes, by cgroup; their namespaces first: those
	// the processes live in, and those containerd (if it still answers)
	// made for its sandboxes, even with no process left in them.
	podNetns := netnsOf(cgroupProcs(rec.CgroupRoot))
	if ctr, err := exec.LookPath("ctr"); err == nil && exists(rec.Socket) {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		sbs, _ := Sandboxes(lctx, ctr, rec.Socket)
		cancel()
		for _, sb := range sbs {
			// containerd names them under /var/run/netns, a link to /run.
			if p := filepath.Join("/run/netns", filepath.Base(sb.Netns)); sb.Netns != "" && !slices.Contains(podNetns, p) {
				podNetns = append(podNetns, p)
			}
		}
	}
	for _, p := range podNetns {
		if !slices.Contains(rec.PodNetns, p) {
			rec.PodNetns = append(rec.PodNetns, p)
		}
	}
	if err := rec.save(); err != nil {
		errs = append(errs, err)
	}
	sandboxes := sandboxIDs(dir)
	if err := killCgroupTree(ctx, rec.CgroupRoot); err != nil {
		errs = append(errs, err)
	}

	// 3. containerd and its shims (each shim names the socket).
	pids := matching(rec.Containerd, "containerd", filepath.Join(dir, "containerd.toml"))
	pids = append(pids, shimsOf(rec.Socket)...)
	stopPIDs(ctx, pids)

	// 4. Mounts below the node's directory, deepest first.
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}

	// 5. The pods' namespaces.
	for _, p := range rec.PodNetns {
		if err := removeNetns(p); err != nil {
			errs = append(errs, err)
		}
	}

	// 6. Cgroup trees.
	if err := removeCgroupRoot(rec.CgroupRoot); err != nil {
		errs = append(errs, err)
	}

	// 7. Files outside the directory: libcni's cached results and the
	// shims' sockets, named after the sandboxes.
	for _, id := range sandboxes {
		matches, _ := filepath.Glob(filepath.Join(cniResultsDir, "*-"+id+"-*"))
		for _, m := range matches {
			_ = os.Remove(m)
		}
		_ = os.Remove(shimSocket(rec.Socket, id))
	}

	// 8. The kubelet's iptables chains in the node's namespace (gone with
	// the namespace too).
	if _, err := os.Stat(rec.Netns); err == nil {
		flushKubeChains(ctx, rec.Netns)
	}

	// 9. What the kubelet keeps at fixed paths: a symlink per container
	// in /var/log/containers into its pod logs, and its device plugin
	// socket (shared by every kubelet here: removed with the last one).
	removeContainerLogLinks(podLogsIn(dir))
	removeDevicePluginSocket()

	// 10. The directory, but the logs.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == "logs" || e.Name() == recordFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", rec.Name, err))
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(filepath.Join(dir, recordFile)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cniResultsDir is where containerd's libcni caches results (not
// configurable in containerd 1.6).
const cniResultsDir = "/var/lib/cni/results"

// matching returns pid if it still runs a program named prog with arg
// among its arguments (pids are reused), else nothing.
func matching(pid int, prog, arg string) []int {
	if pid <= 0 {
		return nil
	}
	args := cmdline(pid)
	if len(args) == 0 || filepath.Base(args[0]) != prog || !slices.Contains(args, arg) {
		// nsenter execs the daemon, but it may not have yet.
		if len(args) == 0 || filepath.Base(args[0]) != "nsenter" || !slices.Contains(args, arg) {
			return nil
		}
	}
	return []int{pid}
}

func cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// shimsOf lists the containerd-shim processes serving the containerd at
// socket (`-address SOCKET` on their command line).
func shimsOf(socket string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		args := cmdline(pid)
		if len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && slices.Contains(args, socket) {
			out = append(out, pid)
		}
	}
	return out
}

// shimSocket is where containerd 1.6 puts the shim socket of container id
// in namespace k8s.io (runtime/v2/shim.SocketAddress).
func shimSocket(containerdSocket, id string) string {
	sum := sha256.Sum256([]byte(filepath.Join(containerdSocket, "k8s.io", id)))
	return fmt.Sprintf("/run/containerd/s/%x", sum)
}

// sandboxIDs lists the CRI sandboxes containerd keeps state for.
func sandboxIDs(dir string) []string {
	var ids []string
	for _, d := range []string{
		filepath.Join(dir, "containerd", "state", "io.containerd.grpc.v1.cri", "sandboxes"),
		filepath.Join(dir, "containerd", "root", "io.containerd.grpc.v1.cri", "sandboxes"),
		filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task", "k8s.io"),
	} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() && !slices.Contains(ids, e.Name()) {
				ids = append(ids, e.Name())
			}
		}
	}
	return ids
}

// stopPIDs sends SIGTERM, waits up to stopGrace, then SIGKILL.
func stopPIDs(ctx context.Context, pids []int) {
	if len(pids) == 0 {
		return
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	waitGone(ctx, pids, stopGrace)
	for _, pid := range pids {
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	waitGone(ctx, pids, stopGrace)
}

func waitGone(ctx context.Context, pids []int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil && slices.ContainsFunc(pids, alive) {
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// netnsOf maps processes to the named namespaces (/run/netns/*) they live
// in.
func netnsOf(pids []int) []string {
	inodes := map[uint64]bool{}
	for _, pid := range pids {
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &st) == nil {
			inodes[st.Ino] = true
		}
	}
	var out []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		p := filepath.Join("/run/netns", e.Name())
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && inodes[st.Ino] {
			out = append(out, p)
		}
	}
	return out
}

// removeNetns unmounts and removes a named namespace's file.
func removeNetns(p string) error {
	_ = syscall.Unmount(p, syscall.MNT_DETACH)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pod namespace %s: %w", p, err)
	}
	return nil
}

// unmountUnder unmounts every mount point at or below dir, deepest first
// (the kubelet bind-mounts its root directory onto itself; containerd
// mounts rootfs overlays and sandbox shm).
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	f.Close()
	// Deepest first; a point mounted twice appears twice.
	slices.SortStableFunc(points, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// flushKubeChains deletes the KUBE-* chains the kubelet made in the
// namespace's iptables tables (IPv4 and IPv6), when iptables is there.
func flushKubeChains(ctx context.Context, netns string) {
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			continue
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			run := func(args ...string) ([]byte, error) {
				return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netns, "--", tool, "-w", "-t", table}, args...)...).Output()
			}
			out, err := run("-S")
			if err != nil {
				continue
			}
			var chains []string
			for _, l := range strings.Split(string(out), "\n") {
				f := strings.Fields(l)
				// Rules jumping to a KUBE chain from a built-in chain.
				if len(f) > 3 && f[0] == "-A" && !strings.HasPrefix(f[1], "KUBE-") && slices.Contains(f, "-j") && strings.HasPrefix(f[slices.Index(f, "-j")+1], "KUBE-") {
					_, _ = run(append([]string{"-D"}, f[1:]...)...)
				}
				if len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], "KUBE-") {
					chains = append(chains, f[1])
				}
			}
			for _, c := range chains {
				_, _ = run("-F", c)
			}
			for _, c := range chains {
				_, _ = run("-X", c)
			}
		}
	}
}

// Paths the kubelet does not let a configuration move.
const (
	containerLogLinks = "/var/log/containers"
	devicePluginDir   = "/var/lib/kubelet/device-plugins"
)

// removeContainerLogLinks removes the links in /var/log/containers that
// point into podLogs, then the directory if it is left empty.
func removeContainerLogLinks(podLogs string) {
	entries, _ := os.ReadDir(containerLogLinks)
	for _, e := range entries {
		p := filepath.Join(containerLogLinks, e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, podLogs+"/") {
			_ = os.Remove(p)
		}
	}
	_ = syscall.Rmdir(containerLogLinks)
}

// removeDevicePluginSocket removes the kubelet's device plugin socket
// and its directories (if empty) when no kubelet runs on the machine any
// more: every kubelet binds the same path.
func removeDevicePluginSocket() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if args := cmdline(pid); len(args) > 0 && filepath.Base(args[0]) == "kubelet" && alive(pid) {
			return
		}
	}
	_ = os.Remove(filepath.Join(devicePluginDir, "kubelet.sock"))
	_ = syscall.Rmdir(devicePluginDir)
	_ = syscall.Rmdir(filepath.Dir(devicePluginDir))
}
