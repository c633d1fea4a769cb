package kubenode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// daemon is a process the node started; Start's caller waits for it (so
// it is reaped while the caller runs); after the caller exits it runs on,
// in a session of its own.
type daemon struct {
	pid  int
	log  string
	args []string
	done chan struct{}
	err  error
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *daemon) failure(what string) error {
	return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", what, d.err, d.log, LogTail(d.log, 20))
}

// startDaemon runs argv in the network namespace at netns with
// `nsenter --net` (not `ip netns exec`, which mounts a /sys of the
// namespace's own and so hides the cgroup hierarchies the kubelet and
// runc work in). nsenter execs the program: the pid is the daemon's.
func startDaemon(netns, logPath string, argv []string) (*daemon, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=" + netns, "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	d := &daemon{pid: cmd.Process.Pid, log: logPath, args: argv, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// waitUntil polls ready every 100 ms until it returns nil, d exits, or the
// timeout passes; the error says which, with the last error seen and the
// end of d's log.
func waitUntil(ctx context.Context, timeout time.Duration, d *daemon, what string, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if d != nil && d.exited() {
			return fmt.Errorf("%s: %w", what, d.failure(what))
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last := ready(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("%s: not after %s: %v", what, timeout, last)
			if d != nil {
				msg += fmt.Sprintf("\nlast lines of %s:\n%s", d.log, LogTail(d.log, 20))
			}
			return fmt.Errorf("%s", msg)
		case <-t.C:
		}
	}
}

// LogTail returns the last n lines of a daemon's log file, indented: what
// an error about a daemon shows of it (the lab's daemons use it too).
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var out bytes.Buffer
	for _, l := range lines {
		out.WriteString("  | ")
		out.Write(l)
		out.WriteByte('\n')
	}
	return out.String()
}
