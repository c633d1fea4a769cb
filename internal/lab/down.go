package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DownOptions say which lab to remove.
type DownOptions struct {
	Name string
	// Dir is the lab directory (default DefaultDir(Name)).
	Dir string
	// All sweeps every lab: every namespace named terrane-lab-*, every
	// process inside one, every directory under DefaultDirRoot.
	All bool
}

// DownReport lists what Down removed.
type DownReport struct {
	Killed []int    `json:"killed"`
	Netns  []string `json:"netns"`
	Dirs   []string `json:"dirs"`
}

// Empty reports whether there was nothing to remove.
func (r DownReport) Empty() bool {
	return len(r.Killed) == 0 && len(r.Netns) == 0 && len(r.Dirs) == 0
}

// Down removes a lab: it stops every process the lab started — those
// recorded in state.json and any other process living in one of the lab's
// namespaces (every lab process runs inside one, so a lost state file
// loses nothing) — deletes every namespace with the lab's prefix and the
// lab directory. It succeeds when there is nothing to remove.
func Down(ctx context.Context, opts DownOptions) (DownReport, error) {
	var rep DownReport
	prefix := NetnsPrefix
	var dirs []string
	if !opts.All {
		if err := ValidateName(opts.Name); err != nil {
			return rep, err
		}
		n := Names{Lab: opts.Name, Dir: opts.Dir}
		if n.Dir == "" {
			n.Dir = DefaultDir(opts.Name)
		}
		prefix = n.Prefix()
		dirs = []string{n.Dir}
	} else {
		entries, _ := os.ReadDir(DefaultDirRoot)
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(DefaultDirRoot, e.Name()))
			}
		}
		if opts.Dir != "" {
			dirs = append(dirs, opts.Dir)
		}
	}

	// Processes: the recorded ones (if they still run the terrane binary
	// they were) and every process inside a lab namespace.
	namespaces := labNetns(prefix)
	var recorded []Process
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "state.json"))
		if err != nil {
			continue
		}
		var st State
		if json.Unmarshal(b, &st) == nil {
			recorded = append(recorded, st.Processes...)
		}
	}
	// Real nodes first, while their containerd still answers and their
	// pods still run: the pods live in containerd's namespaces and
	// cgroups, not the lab's, and the nodes' records say what to remove.
	var errs []error
	if err := cleanupRealNodes(ctx, dirs); err != nil {
		errs = append(errs, err)
	}
	rep.Killed = stopProcesses(ctx, recorded, namespaces)

	// Namespaces.
	if len(namespaces) > 0 {
		var cmds []string
		for _, ns := range namespaces {
			cmds = append(cmds, "netns del "+ns)
		}
		// One batch; failures fall through to the sweep below.
		_ = ipBatch(ctx, "", cmds)
		for _, ns := range namespaces {
			p := NetnsPath(ns)
			if _, err := os.Lstat(p); err == nil {
				// `ip netns del` failed (or raced): detach the bind mount
				// and remove the file ourselves.
				_ = syscall.Unmount(p, syscall.MNT_DETACH)
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, fmt.Errorf("remove namespace %s: %w", ns, err))
					continue
				}
			}
			rep.Netns = append(rep.Netns, ns)
		}
	}

	// Directories: only those that are lab directories.
	for _, d := range dirs {
		if !isLabDir(d) {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("remove lab directory: %w", err))
			continue
		}
		rep.Dirs = append(rep.Dirs, d)
	}
	if left := labNetns(prefix); len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left behind: %s", strings.Join(left, ", ")))
	}
	return rep, errors.Join(errs...)
}

func isLabDir(d string) bool {
	for _, f := range []string{"lock", "state.json"} {
		if _, err := os.Stat(filepath.Join(d, f)); err == nil {
			return true
		}
	}
	return false
}

// labNetns lists the named namespaces starting with prefix.
func labNetns(prefix string) []string {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// netnsInode is the inode identifying a namespace (what /proc/PID/ns/net
// links to), or 0.
func netnsInode(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// processesIn lists the processes whose network namespace is one of
// namespaces.
func processesIn(namespaces []string) []int {
	inodes := map[string]bool{}
	for _, ns := range namespaces {
		if ino := netnsInode(NetnsPath(ns)); ino != 0 {
			inodes["net:["+strconv.FormatUint(ino, 10)+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var out []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink("/proc/" + e.Name() + "/ns/net")
		if err == nil && inodes[link] && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// ownsRecorded reports whether pid still runs the program a record says
// (pids are reused).
func ownsRecorded(p Process) bool {
	if p.PID <= 0 || len(p.Args) == 0 || !alive(p.PID) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return filepath.Base(argv0) == filepath.Base(p.Args[0])
}

// stopProcesses sends SIGTERM to the recorded processes' groups and to
// every process in the namespaces, waits up to 5 s, then SIGKILLs what is
// left. It returns the pids signalled.
func stopProcesses(ctx context.Context, recorded []Process, namespaces []string) []int {
	var targets []int
	for _, p := range recorded {
		if ownsRecorded(p) {
			_ = syscall.Kill(-p.PID, syscall.SIGTERM) // its session's group (Setsid)
			targets = append(targets, p.PID)
		}
	}
	for _, pid := range processesIn(namespaces) {
		if !slices.Contains(targets, pid) {
			targets = append(targets, pid)
		}
	}
	for _, pid := range targets {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !slices.ContainsFunc(targets, alive) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, pid := range targets {
		if alive(pid) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// A second pass catches children started while we waited.
	for _, pid := range processesIn(namespaces) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		targets = append(targets, pid)
	}
	slices.Sort(targets)
	return slices.Compact(targets)
}
