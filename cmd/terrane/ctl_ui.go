package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
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
page elsewhere cannot use the listener to act on the server as you. The
printed URL carries a key made for this run (?key=…): the browser that
opens it gets a cookie, and a request without that cookie is refused, so
other users and processes of the machine cannot read the page as you.

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
			c, err := o.client()
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
			key := make([]byte, 16)
			if _, err := rand.Read(key); err != nil {
				return err
			}
			url := fmt.Sprintf("http://%s/ui/?key=%x", ln.Addr(), key)
			fmt.Fprintf(cmd.OutOrStdout(), "Serving the topology page of %s at %s\nOpen it in a browser; Ctrl-C stops.\n", o.server, url)
			srv := &http.Server{Handler: uiProxy(c.Proxy(), fmt.Sprintf("%x", key)), ReadHeaderTimeout: 10 * time.Second}
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

// uiKeyCookie holds ctl ui's key in the browser that opened its URL.
const uiKeyCookie = "terrane-ui-key"

// uiProxy passes on the page's reads and nothing else: GET and HEAD under
// /ui/ (and /ui itself, redirected), from a browser that calls the
// listener by a loopback name (a DNS-rebound name is refused) and holds
// the run's key: ?key=KEY once (answered with the key as a cookie and a
// redirect to the page without it), the cookie after that.
func uiProxy(next http.Handler, key string) http.Handler {
	valid := func(s string) bool { return subtle.ConstantTimeCompare([]byte(s), []byte(key)) == 1 }
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
		if q := r.URL.Query(); q.Has("key") {
			if !valid(q.Get("key")) {
				http.Error(w, "wrong key: open the URL this run of terrane ctl ui printed", http.StatusUnauthorized)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: uiKeyCookie, Value: key, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			q.Del("key")
			to := *r.URL
			to.RawQuery = q.Encode()
			http.Redirect(w, r, to.RequestURI(), http.StatusFound)
			return
		}
		if c, err := r.Cookie(uiKeyCookie); err != nil || !valid(c.Value) {
			http.Error(w, "no key: open the URL terrane ctl ui printed (it carries the key for this run)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
