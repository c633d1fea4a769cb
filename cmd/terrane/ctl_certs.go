package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/pki"
)

func newCtlCertsCommand(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Run the built-in CA: server, admin and node certificates for mTLS",
		Long: `certs keeps a small certificate authority in a directory. 'init' creates the
CA with a server certificate and an admin client certificate; 'issue' adds a
client certificate per node (or per further admin). The server trusts the CA
with --client-ca; a client certificate's common name is the identity and its
organization the role. These commands only write files: no server is needed.

Keep ca.key off the nodes. There is no revocation: to withdraw certificates,
re-create the CA with 'init --force' and issue new ones.`,
	}

	var (
		dir      string
		hosts    []string
		validity time.Duration
		force    bool
	)
	initCmd := &cobra.Command{
		Use:   "init --dir DIR [--server-host NAME,IP...]",
		Short: "Create a CA with a server and an admin certificate",
		Example: `  terrane ctl certs init --dir pki --server-host terrane.example.net,10.0.0.5,127.0.0.1
  terrane server --tls-cert pki/server.crt --tls-key pki/server.key --client-ca pki/ca.crt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := pki.Init(dir, pki.InitOptions{ServerHosts: hosts, Validity: validity, Force: force})
			if err != nil {
				return err
			}
			return o.show(cmd, l, func(w io.Writer) {
				names := "localhost, 127.0.0.1, ::1"
				if len(hosts) > 0 {
					names = strings.Join(hosts, ", ")
				}
				fmt.Fprintf(w, "wrote %s, %s\tthe CA: keep the key secret\n", l.CA.Cert, l.CA.Key)
				fmt.Fprintf(w, "wrote %s, %s\tthe server, valid for %s\n", l.Server.Cert, l.Server.Key, names)
				fmt.Fprintf(w, "wrote %s, %s\tthe admin client\n", l.Admin.Cert, l.Admin.Key)
				fmt.Fprintf(w, "\nstart the server:\n  terrane server --tls-cert %s --tls-key %s --client-ca %s\n", l.Server.Cert, l.Server.Key, l.CA.Cert)
				fmt.Fprintf(w, "call it as the admin:\n  terrane ctl --ca %s --cert %s --key %s hosts list\n", l.CA.Cert, l.Admin.Cert, l.Admin.Key)
			})
		},
	}
	f := initCmd.Flags()
	f.StringVar(&dir, "dir", "pki", "directory for the CA and certificates (created 0700)")
	f.StringSliceVar(&hosts, "server-host", nil, "DNS names and IP addresses clients reach the server at (default localhost,127.0.0.1,::1)")
	f.DurationVar(&validity, "validity", pki.DefaultValidity, "how long the server and admin certificates last")
	f.BoolVar(&force, "force", false, "replace an existing CA: every certificate it issued stops working")

	var (
		issueDir, role, name string
	)
	issue := &cobra.Command{
		Use:   "issue --dir DIR --role node|admin --name NAME",
		Short: "Issue a client certificate for a node or an admin",
		Long: `issue signs a client certificate NAME.crt (with NAME.key) with the CA in
--dir. For a node, --name is its host name: the node may register only that
host and claim, release and allocate only on it. Copy ca.crt, NAME.crt and
NAME.key to the node; never ca.key.`,
		Example: `  terrane ctl certs issue --dir pki --role node --name n1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := pki.Issue(issueDir, role, name)
			if err != nil {
				return err
			}
			return o.show(cmd, p, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s, %s: %s identity %s\n", p.Cert, p.Key, role, name)
				fmt.Fprintf(w, "use: terrane ctl --ca %s --cert %s --key %s ...\n", pki.PairIn(issueDir, pki.CAName).Cert, p.Cert, p.Key)
			})
		},
	}
	f = issue.Flags()
	f.StringVar(&issueDir, "dir", "pki", "the CA's directory (from certs init)")
	f.StringVar(&role, "role", pki.RoleNode, "node or admin")
	f.StringVar(&name, "name", "", "the identity: for a node its host name (required)")
	_ = issue.MarkFlagRequired("name")

	cmd.AddCommand(initCmd, issue)
	return cmd
}
