package kubenode

import (
	"bufio"
	"context"
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

// cgroupMounts lists the mount points of every cgroup hierarchy (v1
// controllers, named hierarchies, and a v2 one if mounted).
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// "... mountpoint opts - fstype source superopts"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, post2 := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(post2) < 1 || (post2[0] != "cgroup" && post2[0] != "cgroup2") {
			continue
		}
		// Only hierarchies mounted at their root (field 4 is the root
		// of the mount within its filesystem).
		if fields[3] != "/" {
			continue
		}
		out = append(out, unescapeMount(fields[4]))
	}
	return out, nil
}

// makeCgroupRoot creates the node's cgroup root in every hierarchy: the
// kubelet checks it exists in each. A new v1 cpuset starts with no CPUs and
// no memory nodes, so it gets its parent's.
func makeCgroupRoot(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	if len(mounts) == 0 {
		return errors.New("no cgroup hierarchy is mounted (the kubelet needs /sys/fs/cgroup)")
	}
	for _, m := range mounts {
		d := filepath.Join(m, root)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cgroup root %s: %w", d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if !exists(filepath.Join(m, f)) {
				continue
			}
			if cur, _ := os.ReadFile(filepath.Join(d, f)); strings.TrimSpace(string(cur)) != "" {
				continue
			}
			v, err := os.ReadFile(filepath.Join(m, f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
				return fmt.Errorf("cgroup root %s: %s: %w", d, f, err)
			}
		}
	}
	return nil
}

// cgroupDirs lists the directories of the node's cgroup tree in every
// hierarchy, deepest first.
func cgroupDirs(root string) []string {
	mounts, _ := cgroupMounts()
	var dirs []string
	for _, m := range mounts {
		top := filepath.Join(m, root)
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	slices.SortStableFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs
}

// cgroupProcs lists the processes anywhere in the node's cgroup tree.
func cgroupProcs(root string) []int {
	var out []int
	for _, d := range cgroupDirs(root) {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(out, pid) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// killCgroupTree SIGKILLs every process in the node's cgroup tree until
// none is left (a dying container may fork once more), for up to 10 s.
func killCgroupTree(ctx context.Context, root string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := cgroupProcs(root)
		live := slices.DeleteFunc(pids, func(p int) bool { return !alive(p) })
		if len(live) == 0 {
			return nil
		}
		for _, pid := range live {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("cgroup %s: processes %v still run", root, live)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeCgroupRoot removes the node's cgroup tree from every hierarchy,
// deepest first; a cgroup whose last process just died may be busy for a
// moment.
func removeCgroupRoot(root string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var errs []error
		for _, d := range cgroupDirs(root) {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
		if len(errs) == 0 || time.Now().After(deadline) {
			return errors.Join(errs...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
