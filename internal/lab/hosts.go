package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

// What a running lab's hosts go through besides Up: agents killed and
// started again, a whole host lost and a fresh one built in its place —
// the faults `bench chaos` injects, and the offline tests' restarts.

// StartAgents starts one agent per host of a lab that Up built with
// InfraOnly, against servers the caller runs (URLs an agent's --server
// takes; the agents fail over between them). The servers' built-in CA
// must be at the lab's PKI directory (Names.PKI): each agent's node
// certificate is issued from it. It returns when every agent is ready.
func StartAgents(ctx context.Context, name, dir string, servers []string, progress func(string, ...any)) error {
	if len(servers) == 0 {
		return errors.New("no servers for the agents")
	}
	st, unlock, err := lockState(name, dir)
	if err != nil {
		return err
	}
	defer unlock()
	st.Servers = slices.Clone(servers)
	if err := st.Save(); err != nil {
		return err
	}
	if progress == nil {
		progress = func(string, ...any) {}
	}
	return startAgents(ctx, st, progress)
}

// agentServers is what the agents' --server says: the caller's servers,
// or the lab's own.
func (s *State) agentServers() string {
	if len(s.Servers) > 0 {
		return strings.Join(s.Servers, ",")
	}
	return "unix://" + s.names().ServerSocket()
}

// KillDaemons kills the lab's processes of role (on node, when not "")
// with SIGKILL, waits until they are gone and drops them from the lab's
// processes. It returns how many it killed; none is an error.
func KillDaemons(ctx context.Context, name, dir, role, node string) (int, error) {
	st, unlock, err := lockState(name, dir)
	if err != nil {
		return 0, err
	}
	defer unlock()
	return killDaemons(ctx, st, role, node)
}

func killDaemons(ctx context.Context, st *State, role, node string) (int, error) {
	var pids []int
	st.Processes = slices.DeleteFunc(st.Processes, func(p Process) bool {
		if p.Role == role && (node == "" || p.Node == node) {
			pids = append(pids, p.PID)
			return true
		}
		return false
	})
	if len(pids) == 0 {
		return 0, fmt.Errorf("the lab runs no %s %s", role, node)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return 0, fmt.Errorf("kill -9 the %s (pid %d): %w", role, pid, err)
		}
	}
	// The lab's daemons are reaped by the process that started them; one
	// started by another command is gone once the kernel says so.
	err := awaitGone(ctx, pids, 10*time.Second)
	return len(pids), errors.Join(err, st.Save())
}

// awaitGone waits until none of pids exists.
func awaitGone(ctx context.Context, pids []int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		left := slices.DeleteFunc(slices.Clone(pids), func(pid int) bool {
			return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || zombie(pid)
		})
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pids %v still exist after SIGKILL", left)
		case <-t.C:
		}
	}
}

// zombie reports whether pid has exited and waits to be reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// RestartAgent starts host's agent again on its state directory (as after
// a crash) and waits until it is ready.
func RestartAgent(ctx context.Context, name, dir, host string) error {
	st, unlock, err := lockState(name, dir)
	if err != nil {
		return err
	}
	defer unlock()
	h, ok := st.Scenario.Host(host)
	if !ok {
		return fmt.Errorf("no host %q in lab %q", host, name)
	}
	d, err := startAgent(ctx, st, h)
	if err != nil {
		return err
	}
	return waitAgent(ctx, st.names(), d)
}

// LoseHost takes a host away as a machine that dies: its agent is killed
// -9, its pods' namespaces and its own are deleted (its link to the
// segment goes with it), and nothing is released on the server. Its pods
// are dropped from the lab's state.
func LoseHost(ctx context.Context, name, dir, host string) error {
	st, unlock, err := lockState(name, dir)
	if err != nil {
		return err
	}
	defer unlock()
	if _, ok := st.Scenario.Host(host); !ok {
		return fmt.Errorf("no host %q in lab %q", host, name)
	}
	n := st.names()
	var errs []error
	if _, err := killDaemons(ctx, st, "agent", host); err != nil {
		errs = append(errs, err)
	}
	gone := map[string]bool{n.Node(host): true}
	cmds := []string{"netns del " + n.Node(host)}
	st.Pods = slices.DeleteFunc(st.Pods, func(p PodState) bool {
		if p.Host != host {
			return false
		}
		gone[p.Netns] = true
		cmds = append(cmds, "netns del "+p.Netns)
		return true
	})
	st.Scenario.Pods = slices.DeleteFunc(st.Scenario.Pods, func(p Pod) bool { return p.Host == host })
	st.Netns = slices.DeleteFunc(st.Netns, func(s string) bool { return gone[s] })
	if err := ipBatch(ctx, "", cmds); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, st.Save())...)
}

// RebuildHost builds a host that LoseHost took away afresh, as a machine
// re-imaged under its old name and address: its namespace, its link to
// the segment, its address; its agent starts with an empty state
// directory and registers again. It returns when the agent is ready.
func RebuildHost(ctx context.Context, name, dir, host string) error {
	st, unlock, err := lockState(name, dir)
	if err != nil {
		return err
	}
	defer unlock()
	n := st.names()
	i := slices.IndexFunc(st.Scenario.Hosts, func(h Host) bool { return h.Name == host })
	if i < 0 {
		return fmt.Errorf("no host %q in lab %q", host, name)
	}
	h := st.Scenario.Hosts[i]
	if slices.Contains(labNetns(n.Prefix()), n.Node(host)) {
		return fmt.Errorf("host %s exists; it can be rebuilt only after it was lost", host)
	}
	st.Netns = append(st.Netns, n.Node(host))
	if err := st.Save(); err != nil {
		return err
	}
	if err := ipBatch(ctx, "", []string{"netns add " + n.Node(host)}); err != nil {
		return err
	}
	wire := hostWireCmds(st.Scenario, n, i, h)
	if err := ipBatch(ctx, n.Fabric(), wire); err != nil {
		return err
	}
	if err := linksAsWire(n.Fabric(), nil, wire); err != nil {
		return err
	}
	if err := ipBatch(ctx, n.Node(host), hostAddrCmds(st.Scenario, h)); err != nil {
		return err
	}
	// A re-imaged machine keeps nothing of the agent's.
	if err := os.RemoveAll(n.HostDir(host)); err != nil {
		return err
	}
	d, err := startAgent(ctx, st, h)
	if err != nil {
		return err
	}
	return waitAgent(ctx, n, d)
}
