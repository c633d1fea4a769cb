package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/terrane-net/terrane/internal/cniapi/cnihttp"
)

// Serve answers the CNI plugin on a unix socket at path until ctx ends.
// The socket is created mode 0600 (root only: whoever can ADD can take
// addresses); a socket left by a crashed agent is replaced, any other file
// at the path is an error. ready, if set, is called once listening.
func (a *Agent) Serve(ctx context.Context, path string, ready func()) error {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("--socket %s exists and is not a socket; remove it or choose another path", path)
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("serve the CNI socket: %w", err)
	}
	a.log.Info("serving the CNI plugin", "socket", path)
	return a.serveUntil(ctx, ln, cnihttp.Handler(a), func() {
		if ready != nil {
			ready()
		}
	})
}

// serveUntil serves h on ln until ctx ends, then shuts the server down
// (requests in flight get 5 s). ready runs once it serves.
func (a *Agent) serveUntil(ctx context.Context, ln net.Listener, h http.Handler, ready func()) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	ready()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(shutdown)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		return err
	}
}
