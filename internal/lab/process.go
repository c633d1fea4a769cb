package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/terrane-net/terrane/internal/kubenode"
)

// daemon is a process the lab started and still waits for (so it is reaped
// and its exit seen).
type daemon struct {
	Process
	done chan struct{}
	err  error
}

// exited reports whether the daemon has stopped.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// failure describes an exited daemon with the end of its log.
func (d *daemon) failure() error {
	return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", d.describe(), d.err, d.Log, tail(d.Log, 15))
}

func (d *daemon) describe() string {
	if d.Node != "" {
		return d.Role + " " + d.Node
	}
	return d.Role
}

// startDaemon runs argv inside netns (`ip netns exec`, which execs the
// program: the pid is the daemon's; "" is the root namespace), in its own session so nothing of the
// caller's terminal reaches it, logging to DIR/logs/<role>[-node].log. The
// process is recorded in st before startDaemon returns; env adds to the
// daemon's environment.
func startDaemon(st *State, role, node, netns string, argv []string, env ...string) (*daemon, error) {
	n := st.names()
	if err := os.MkdirAll(n.Logs(), 0o700); err != nil {
		return nil, err
	}
	name := role
	if node != "" {
		name += "-" + node
	}
	logPath := filepath.Join(n.Logs(), name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns}, argv...)...)
	if netns == "" {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{Process: Process{Role: role, Node: node, PID: cmd.Process.Pid, Netns: netns, Log: logPath, Args: argv}, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	st.Processes = append(st.Processes, d.Process)
	return d, st.Save()
}

// waitFor polls ready every 50 ms until it returns nil, the daemon exits,
// or the deadline passes; the error says which, with the last error seen.
func waitFor(ctx context.Context, d *daemon, timeout time.Duration, what string, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		if d != nil && d.exited() {
			return fmt.Errorf("%s: %w", what, d.failure())
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("%s: not ready after %s: %v", what, timeout, last)
			if d != nil {
				msg += fmt.Sprintf("\nlast lines of %s:\n%s", d.Log, tail(d.Log, 15))
			}
			return fmt.Errorf("%s", msg)
		case <-t.C:
		}
	}
}

// tail returns the last n lines of a daemon's log, indented.
func tail(path string, n int) string { return kubenode.LogTail(path, n) }
