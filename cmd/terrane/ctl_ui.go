package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/client"
)

// defaultUIPort is kubectl proxy's port: the same habit, the same place.
const defaultUIPort = 8001

func newCtlUICommand(o *ctlOptions) *cobra.Command {
	var (
		address string
		port    int
	)
	cmd := &cobra.Command{
		Use:   "ui [--port N] [--address IP]",
		Short: "Open the topology page: a local listener that forwards to the server as you, and prints its URL",
		Long: `ui serves the server's topology page (/ui/) on a local listener, as kubectl proxy
does: every request is forwarded to the server authenticated as you — your
client certificate or token, the CA you trust — so a browser needs no
credentials of its own. Open the URL it prints.

Only the page's own reads (GET under /ui/) are forwarded, and only to a
browser that names this listener by a loopback address or localhost: a web
page elsewhere cannot use the listener to act on the server as you.

--port 0 picks a free port.`,
		Example: `  terrane ctl ui
  terrane ctl --server unix:///run/terrane-lab/lab/server.sock --ca … --cert … --key … ui --port 8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if port < 0 || port > 65535 {
				return fmt.Errorf("--port %d: want 0 to 65535 (0: any free port)", port)
			}
			ip := net.ParseIP(address)
			if ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("--address %q: want a loopback address such as 127.0.0.1 or ::1 (the listener acts on the server as you)", address)
			}
			c, err := client.New(client.Config{Server: o.server, CAFile: o.ca, CertFile: o.cert, KeyFile: o.key, Token: o.token, Timeout: o.timeout})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Fail here, with ctl's advice, rather than in the browser.
			if _, err := c.Hosts(ctx); err != nil && !errors.Is(err, client.ErrNoTopology) {
				return o.explain(err)
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(port)))
			if err != nil {
				return fmt.Errorf("listen on %s port %d: %w (another process there? choose --port)", address, port, err)
			}
			url := fmt.Sprintf("http://%s/ui/", ln.Addr())
			fmt.Fprintf(cmd.OutOrStdout(), "Serving the topology page of %s at %s\nOpen it in a browser; Ctrl-C stops.\n", o.server, url)
			srv := &http.Server{Handler: uiProxy(c.Proxy()), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-ctx.Done()
				shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_ = srv.Shutdown(shutdown)
				srv.Close() // event streams do not end by themselves
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&port, "port", defaultUIPort, "local port to listen on (0: any free port)")
	f.StringVar(&address, "address", "127.0.0.1", "local address to listen on (a loopback address)")
	return cmd
}

// uiProxy passes on the page's reads and nothing else: GET and HEAD under
// /ui/ (and /ui itself, redirected), from a browser that calls the
// listener by a loopback name (a DNS-rebound name is refused).
func uiProxy(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			http.Error(w, fmt.Sprintf("host %q refused: open the page through 127.0.0.1 or localhost", r.Host), http.StatusForbidden)
			return
		}
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/ui/", http.StatusFound)
			return
		}
		if (r.Method != http.MethodGet && r.Method != http.MethodHead) || (r.URL.Path != "/ui" && !strings.HasPrefix(r.URL.Path, "/ui/")) {
			http.Error(w, "terrane ctl ui forwards only the topology page's reads (GET /ui/…); use the other ctl commands for the API", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
