package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/netx"
)

func newCtlBGPCommand(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "bgp",
		Short: "Show each bgp host's BGP sessions and the prefixes it announces",
		Long: `bgp lists every registered host whose group routes by bgp, with what its
agent last reported: its AS and router ID, each peer (address, AS, session
state and since when, prefixes sent and received) and the prefixes it
announces. A host whose agent has not reported says so. Agents report on
every change, at most every few seconds; REPORTED is the report's age.`,
		Example: `  terrane ctl bgp
  terrane ctl bgp -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				r, err := c.BGP(ctx)
				if err != nil {
					return err
				}
				return o.show(cmd, r, func(w io.Writer) { bgpTable(w, r, time.Now()) })
			})
		},
	}
}

// bgpTable prints a line per host, then per reported host its sessions
// and what it announces. Each part is aligned on its own (the caller's
// tabwriter sees no tabs).
func bgpTable(w io.Writer, r *api.BGPReport, now time.Time) {
	if len(r.Hosts) == 0 {
		fmt.Fprintln(w, "no host is in a bgp group")
		return
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tAS\tROUTER ID\tGROUPS\tREPORTED")
	for _, h := range r.Hosts {
		groups := joinGroups(h.Groups)
		if !h.Reported {
			fmt.Fprintf(tw, "%s\t-\t-\t%s\tnever: is its agent running, and can it reach the server?\n", h.Host, groups)
			continue
		}
		st := h.Status
		as, id := "-", "-"
		if st.ASN != 0 {
			as = fmt.Sprint(st.ASN)
		}
		if st.RouterID.IsValid() {
			id = st.RouterID.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s ago\n", h.Host, as, id, groups, bgpAge(now, st.ReportedAt))
	}
	tw.Flush()
	for _, h := range r.Hosts {
		if !h.Reported {
			continue
		}
		st := h.Status
		fmt.Fprintf(&b, "\n%s\n", h.Host)
		if st.Error != "" {
			fmt.Fprintf(&b, "  error: %s\n", st.Error)
		}
		if len(st.Peers) > 0 {
			tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  PEER\tAS\tSTATE\tSINCE\tSENT/RECEIVED")
			for _, p := range st.Peers {
				state := p.State
				if p.LastError != "" && p.State != "established" {
					state += " (" + p.LastError + ")"
				}
				since := "-"
				if !p.Since.IsZero() {
					since = bgpAge(now, p.Since)
				}
				fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%d/%d\n", p.Address, p.ASN, state, since, p.PrefixesSent, p.PrefixesReceived)
			}
			tw.Flush()
		} else {
			fmt.Fprintln(&b, "  no peers")
		}
		fmt.Fprintf(&b, "  announces %s\n", prefixList(st.Announced))
	}
	_, _ = w.Write(b.Bytes())
}

func joinGroups(g map[string]string) string {
	if len(g) == 0 {
		return "-"
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(g)) {
		parts = append(parts, n+":"+g[n])
	}
	return strings.Join(parts, ",")
}

func prefixList(ps []netip.Prefix) string { return netx.Join(ps, ", ", "nothing") }

// bgpAge is how long ago t was, to the second.
func bgpAge(now, t time.Time) string {
	d := now.Sub(t).Truncate(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String()
}
