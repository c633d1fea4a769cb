package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/client"
)

// Environment variables the ctl flags fall back to.
const (
	envServer = "TERRANE_SERVER"
	envToken  = "TERRANE_TOKEN"
)

const defaultServer = "https://127.0.0.1:7443"

// ctlOptions are the flags every ctl command shares.
type ctlOptions struct {
	server, ca, cert, key, token, output string
	timeout                              time.Duration
	// serverFlag names where server came from: --server or $TERRANE_SERVER.
	serverFlag string
}

func newCtlCommand() *cobra.Command {
	o := &ctlOptions{}
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Drive a Terrane server: topology, hosts, blocks, endpoints, checks, certificates",
		Long: `ctl calls the control API of 'terrane server'. Tables are for people; -o json
prints the API's answer for scripts.

Authenticate with a client certificate from the built-in CA (--cert, --key; see
'terrane ctl certs') or a bearer token (--token or $TERRANE_TOKEN), and trust
the server's certificate with --ca (the ca.crt of 'certs init'). An admin may
do everything; a node identity may register only its own host and claim,
release and allocate only on it.

Exit status: 0 done; 1 'check' found problems; 2 the request failed or was
refused (the message says what to do).`,
		Example: `  terrane ctl certs init --dir pki --server-host localhost,127.0.0.1
  export TERRANE_SERVER=https://127.0.0.1:7443
  # or several servers on one store: the next is asked when one does not answer
  export TERRANE_SERVER=https://10.0.0.1:7443,https://10.0.0.2:7443
  terrane ctl --ca pki/ca.crt --cert pki/admin.crt --key pki/admin.key topology apply examples/flat-l2.yaml
  terrane ctl --ca pki/ca.crt --token "$TOKEN" hosts list -o json`,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if o.output != "table" && o.output != "json" {
				return fmt.Errorf("-o %q: use table or json", o.output)
			}
			o.serverFlag = "--server"
			if !cmd.Flags().Changed("server") {
				if s := os.Getenv(envServer); s != "" {
					o.server, o.serverFlag = s, "$"+envServer
				}
			}
			if !cmd.Flags().Changed("token") {
				o.token = os.Getenv(envToken)
			}
			// With no credentials given, use the admin certificate a
			// zero-set-up server created on this machine, if readable.
			if o.ca == "" && o.cert == "" && o.key == "" && o.token == "" {
				dir := filepath.Join(defaultDataDir, "pki")
				ca, cert, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
				if readable(ca) && readable(cert) && readable(key) {
					o.ca, o.cert, o.key = ca, cert, key
				}
			}
			return nil
		},
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.server, "server", defaultServer, "the server's URL, or unix:///path.sock; several servers of one control plane comma-separated, tried in turn while one gives no answer (env "+envServer+")")
	f.StringVar(&o.ca, "ca", "", "CA certificate the server's certificate must chain to (the ca.crt of 'certs init'; default: system roots)")
	f.StringVar(&o.cert, "cert", "", "client certificate for mTLS (from 'certs init' or 'certs issue')")
	f.StringVar(&o.key, "key", "", "the client certificate's key")
	f.StringVar(&o.token, "token", "", "bearer token (env "+envToken+")")
	f.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&o.timeout, "timeout", client.DefaultTimeout, "how long to wait for each answer")
	cmd.AddCommand(
		newCtlTopologyCommand(o),
		newCtlHostsCommand(o),
		newCtlBlocksCommand(o),
		newCtlEndpointsCommand(o),
		newCtlNamespacesCommand(o),
		newCtlPolicyCommand(o),
		newCtlLabelCommand(o),
		newCtlUtilisationCommand(o),
		newCtlCheckCommand(o),
		newCtlVPCCommand(o),
		newCtlBGPCommand(o),
		newCtlCertsCommand(o),
		newCtlUICommand(o),
	)
	return cmd
}

// call connects to the server, runs fn, and turns its error into one that
// says what to do.
func (o *ctlOptions) call(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	return o.explain(fn(cmd.Context(), c))
}

// client checks the server list and makes the client.
func (o *ctlOptions) client() (*client.Client, error) {
	if _, err := client.SplitServers(o.server); err != nil {
		return nil, fmt.Errorf("%s %q: %w", o.serverFlag, o.server, err)
	}
	return client.New(client.Config{Server: o.server, CAFile: o.ca, CertFile: o.cert, KeyFile: o.key, Token: o.token, Timeout: o.timeout})
}

// explain rewrites a failed call's error as advice.
func (o *ctlOptions) explain(err error) error {
	if err == nil {
		return nil
	}
	var ue *client.UnreachableError
	if errors.As(err, &ue) {
		// Several servers, none answered: the advice for each.
		var b strings.Builder
		b.WriteString("no server answered:")
		for i, e := range ue.Errs {
			one := *o
			one.server = ue.Servers[i]
			msg := one.explain(e).Error()
			if !strings.Contains(msg, one.server) {
				msg = one.server + ": " + msg
			}
			fmt.Fprintf(&b, "\n  %s", msg)
		}
		return errors.New(b.String())
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		return o.explainAPI(ae)
	}
	var (
		unknownCA x509.UnknownAuthorityError
		wrongHost x509.HostnameError
		dnsErr    *net.DNSError
		netErr    net.Error
	)
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.ENOENT) && strings.HasPrefix(o.server, "unix://"):
		return fmt.Errorf("no socket at %s; is `terrane server` running with --listen %s? (set --server or %s)", strings.TrimPrefix(o.server, "unix://"), o.server, envServer)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot connect to %s: connection refused; is `terrane server` running at that address? (set --server or %s)", o.server, envServer)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("the server at %s has a certificate from a CA you do not trust: give --ca with the ca.crt of `terrane ctl certs init`", o.server)
	case errors.As(err, &wrongHost):
		return fmt.Errorf("the server's certificate is not valid for %s (it lists %s): use --server with a name it lists, or re-create it with `terrane ctl certs init --server-host`", wrongHost.Host, certNames(wrongHost.Certificate))
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("the server at %s speaks plain HTTP (was it started with --insecure?): use --server %s", o.server, strings.Replace(o.server, "https://", "http://", 1))
	case strings.Contains(msg, "remote error: tls"):
		return fmt.Errorf("the server refused the TLS connection (%v): was --cert issued by the CA the server trusts (its --client-ca)?", err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot resolve %s: check --server (%s)", dnsErr.Name, o.server)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("no answer from %s within %s: is the server overloaded or the address wrong? (--timeout to wait longer)", o.server, o.timeout)
	}
	return err
}

func (o *ctlOptions) explainAPI(ae *client.APIError) error {
	switch {
	case ae.Status == http.StatusUnauthorized && o.token == "" && o.cert == "":
		return fmt.Errorf("not authenticated: give --token (or set %s) or --cert and --key from `terrane ctl certs issue`", envToken)
	case ae.Status == http.StatusUnauthorized:
		return fmt.Errorf("the server did not accept your credentials: check --token, or that --cert was issued by the CA the server trusts (%s)", ae.Message)
	case ae.Status == http.StatusForbidden:
		return fmt.Errorf("forbidden: %s; use an admin certificate or token for this", ae.Message)
	case len(ae.Conflicts) > 0:
		var b strings.Builder
		b.WriteString(ae.Message)
		b.WriteString(":")
		for _, c := range ae.Conflicts {
			fmt.Fprintf(&b, "\n  %s", finding(c.Kind, c.Network, c.Subject, c.Detail))
		}
		return errors.New(b.String())
	case ae.Status >= 500:
		return fmt.Errorf("the server failed: %s (HTTP %d); see its log", ae.Message, ae.Status)
	}
	return errors.New(ae.Message)
}

func finding(kind, network, subject, detail string) string {
	if network != "" {
		return fmt.Sprintf("%s %s %s: %s", kind, network, subject, detail)
	}
	return fmt.Sprintf("%s %s: %s", kind, subject, detail)
}

func certNames(c *x509.Certificate) string {
	if c == nil {
		return "no names"
	}
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no names"
	}
	return strings.Join(names, ", ")
}

// show prints v as JSON with -o json, else the table.
func (o *ctlOptions) show(cmd *cobra.Command, v any, table func(w io.Writer)) error {
	out := cmd.OutOrStdout()
	if o.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// orDash shows an empty cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// defaultDataDir is where `terrane server` keeps its state by default; its
// pki/ holds the credentials of a zero-set-up server.
const defaultDataDir = "/var/lib/terrane"

func readable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	f.Close()
	return true
}
