package ipam

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/netx"
)

// The server holds only its own endpoints (VM ports) as state; the
// addresses the agents hand out from their blocks it learns from their
// reports. A report is not a state change: the server keeps the last one
// per host beside the state and reads it for views (block use,
// utilisation), for Audit and for Explain.

// HostReport is what a host's agent last reported: every address it has
// handed out, the blocks it allocates from and the VM ports of the host it
// found plugged in.
type HostReport struct {
	Host string `json:"host"`
	// Generation counts the reports the server merged (deltas included).
	Generation uint64 `json:"generation"`
	// At is when the server merged the last report.
	At        time.Time         `json:"at"`
	Addresses []ReportedAddress `json:"addresses"`
	Blocks    []ReportedBlock   `json:"blocks"`
	Ports     []ReportedPort    `json:"ports"`
}

// ReportedAddress is one address an agent handed out.
type ReportedAddress struct {
	Network string       `json:"network"`
	Addr    netip.Addr   `json:"addr"`
	Block   netip.Prefix `json:"block"`
	// Attachment is the CNI attachment, "<containerID>/<ifName>".
	Attachment string `json:"attachment"`
	// Pod is "<namespace>/<name>" when the runtime said; PodUID the pod's
	// UID (K8S_POD_UID) when it said that too.
	Pod    string    `json:"pod,omitempty"`
	PodUID string    `json:"podUID,omitempty"`
	Since  time.Time `json:"since"`
	// Orphaned is set when the pod's network namespace is gone but the
	// agent has not released the address yet; OrphanedSince is when it
	// first saw that.
	Orphaned      bool      `json:"orphaned,omitempty"`
	OrphanedSince time.Time `json:"orphanedSince,omitzero"`
}

// Key identifies a reported address.
func (r ReportedAddress) Key() AddressKey { return AddressKey{Network: r.Network, Addr: r.Addr} }

// AddressKey identifies an address: networks may overlap.
type AddressKey struct {
	Network string     `json:"network"`
	Addr    netip.Addr `json:"addr"`
}

// ReportedBlock is one block in the agent's pool and how many of its
// addresses the pool counts in use.
type ReportedBlock struct {
	Network string       `json:"network"`
	Prefix  netip.Prefix `json:"prefix"`
	Used    int          `json:"used"`
	Open    bool         `json:"open"`
}

// ReportedPort is one VM port (server endpoint) of the host: whether the
// agent found its device (api.VMPortDevice) and routed it, and since when
// that has been so.
type ReportedPort struct {
	ID     string    `json:"id"`
	Device string    `json:"device"`
	Wired  bool      `json:"wired"`
	Since  time.Time `json:"since"`
}

// Holder is one holder of an address.
type Holder struct {
	// Path is how the address was handed out: "cni" (a pod, by the host's
	// agent) or "api" (a VM port, by the server).
	Path    string       `json:"path"`
	Network string       `json:"network"`
	Addr    netip.Addr   `json:"addr"`
	Host    string       `json:"host"`
	Block   netip.Prefix `json:"block"`
	// Endpoint is the VM port's ID or the pod's CNI attachment.
	Endpoint string `json:"endpoint"`
	Pod      string `json:"pod,omitempty"`
	// Namespace is the VM port's namespace or tenant.
	Namespace string    `json:"namespace,omitempty"`
	Since     time.Time `json:"since,omitzero"`
}

func (h Holder) String() string {
	who := "VM port " + h.Endpoint
	if h.Path == "cni" {
		who = "pod " + cmp.Or(h.Pod, h.Endpoint) + " (attachment " + h.Endpoint + ")"
	}
	s := fmt.Sprintf("%s on %s via %s", who, h.Host, strings.ToUpper(h.Path))
	if !h.Since.IsZero() {
		s += " since " + h.Since.UTC().Format(time.RFC3339)
	}
	return s
}

// AuditOptions bound how long the audit waits before it calls something
// gone or leaked.
type AuditOptions struct {
	Now time.Time
	// Gone: a host whose agent has neither reported nor sent a heartbeat
	// for this long is gone (0: 10 minutes).
	Gone time.Duration
	// Grace: a pod's netns missing, or a VM port's device missing while
	// its host's agent reports, for this long is a leak (0: 1 minute).
	Grace time.Duration
	// Seen is each host's last sign of life (heartbeat), besides reports.
	Seen map[string]time.Time
	// Orphans are the orphaned pod addresses the Kubernetes Pod controller
	// marked or asked agents to release, by host (orphans.go).
	Orphans []HostOrphans
}

// SetReports replaces the agents' reports the allocator's views count:
// Blocks, Block, Usage and GroupUsage then include the addresses the
// agents hand out. The reports are not state: changes do not carry them.
func (a *Allocator) SetReports(reports []HostReport) {
	a.reports = map[string]HostReport{}
	a.reported = map[string]map[netip.Prefix]int{}
	for _, r := range reports {
		a.reports[r.Host] = r
		for _, ad := range r.Addresses {
			if a.reported[ad.Network] == nil {
				a.reported[ad.Network] = map[netip.Prefix]int{}
			}
			a.reported[ad.Network][ad.Block]++
		}
	}
}

// Reports returns the reports SetReports gave, by host.
func (a *Allocator) Reports() []HostReport {
	out := make([]HostReport, 0, len(a.reports))
	for _, h := range slices.Sorted(maps.Keys(a.reports)) {
		out = append(out, a.reports[h])
	}
	return out
}

// reportedIn counts the addresses b's host's agent reported in b.
func (a *Allocator) reportedIn(network string, b *block) int {
	if b.issuer != IssuerAgent {
		return 0
	}
	return a.reported[network][b.prefix]
}

// holders lists every address held, by network and address: the server's
// endpoints and every address the agents reported.
func (a *Allocator) holders() map[AddressKey][]Holder {
	out := map[AddressKey][]Holder{}
	for _, e := range a.s.endpoints {
		k := AddressKey{e.network, e.addr}
		out[k] = append(out[k], Holder{Path: "api", Network: e.network, Addr: e.addr, Host: e.host, Block: e.block.prefix, Endpoint: e.id, Namespace: e.namespace, Since: e.since})
	}
	for _, r := range a.reports {
		for _, ad := range r.Addresses {
			k := ad.Key()
			out[k] = append(out[k], Holder{Path: "cni", Network: ad.Network, Addr: ad.Addr, Host: r.Host, Block: ad.Block, Endpoint: ad.Attachment, Pod: ad.Pod, Since: ad.Since})
		}
	}
	return out
}

// Audit checks the addresses in use against the state, with the agents'
// reports (SetReports): an address held twice (pods and VM ports alike), an
// address in use outside its host's blocks, an agent's block whose host is
// gone, a leaked address (a pod whose netns is gone, a VM port whose device
// its live host's agent has not seen for the grace period), and a block
// whose agent's count disagrees with the addresses reported in it. Check's
// findings come first. The result is sorted and deterministic.
func (a *Allocator) Audit(o AuditOptions) []Finding { return a.audit(o, a.holders()) }

// audit is Audit with the holders of every address already listed.
func (a *Allocator) audit(o AuditOptions, holders map[AddressKey][]Holder) []Finding {
	if o.Gone == 0 {
		o.Gone = 10 * time.Minute
	}
	if o.Grace == 0 {
		o.Grace = time.Minute
	}
	out := a.Check()
	add := func(f Finding) { out = append(out, f) }
	for _, k := range slices.SortedFunc(maps.Keys(holders), compareKeys) {
		hs := holders[k]
		if len(hs) > 1 {
			slices.SortFunc(hs, func(x, y Holder) int {
				return cmp.Or(cmp.Compare(x.Path, y.Path), cmp.Compare(x.Host, y.Host), cmp.Compare(x.Endpoint, y.Endpoint))
			})
			names := make([]string, len(hs))
			since := hs[0].Since
			for i, h := range hs {
				names[i] = h.String()
				if h.Since.After(since) {
					since = h.Since // held twice since the later one came
				}
			}
			add(Finding{Kind: "address-twice", Network: k.Network, Subject: k.Addr.String(), Addr: k.Addr, Host: hs[0].Host, Block: hs[0].Block, Holders: hs, Since: since,
				Detail: fmt.Sprintf("%s is held by %d endpoints: %s; traffic for it reaches only one of them", k.Addr, len(hs), strings.Join(names, "; "))})
		}
	}
	for _, host := range slices.Sorted(maps.Keys(a.reports)) {
		r := a.reports[host]
		for _, ad := range r.Addresses {
			h := Holder{Path: "cni", Network: ad.Network, Addr: ad.Addr, Host: host, Block: ad.Block, Endpoint: ad.Attachment, Pod: ad.Pod, Since: ad.Since}
			if why := a.outside(host, ad); why != "" {
				add(Finding{Kind: "address-outside-blocks", Network: ad.Network, Subject: ad.Addr.String(), Addr: ad.Addr, Host: host, Block: ad.Block, Holders: []Holder{h}, Since: ad.Since,
					Detail: fmt.Sprintf("%s is in use on %s but %s: its host's routes do not cover it", h, host, why)})
			}
			if ad.Orphaned && o.Now.Sub(ad.OrphanedSince) >= o.Grace {
				add(Finding{Kind: "leak", Network: ad.Network, Subject: ad.Addr.String(), Addr: ad.Addr, Host: host, Block: ad.Block, Holders: []Holder{h}, Since: ad.OrphanedSince,
					Detail: fmt.Sprintf("%s: its pod's network namespace is gone and the agent on %s has not released the address; the agent releases it on its next resync (restart it if this persists)", h, host)})
			}
		}
		a.auditBlocks(host, r, add)
		a.auditPorts(host, r, o, add)
	}
	a.auditOrphans(o, add)
	for _, n := range a.s.topo.Networks {
		for _, p := range sortedPrefixes(a.s.nets[n.Name].blocks) {
			b := a.s.nets[n.Name].blocks[p]
			if b.issuer != IssuerAgent {
				continue
			}
			last := o.Seen[b.host]
			if r, ok := a.reports[b.host]; ok && r.At.After(last) {
				last = r.At
			}
			if o.Now.Sub(last) >= o.Gone {
				seen := "has never reported"
				if !last.IsZero() {
					seen = "last reported at " + last.UTC().Format(time.RFC3339)
				}
				add(Finding{Kind: "block-of-gone-host", Network: n.Name, Subject: p.String(), Host: b.host, Block: p, Since: last,
					Detail: fmt.Sprintf("block %s is claimed by host %s, whose agent %s (more than %s ago): if the host is gone, remove it (`terrane ctl hosts remove %s`) to release its blocks", p, b.host, seen, o.Gone, b.host)})
			}
		}
	}
	slices.SortStableFunc(out, func(x, y Finding) int {
		return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Network, y.Network), cmp.Compare(x.Subject, y.Subject))
	})
	return out
}

// outside says why a reported address is not in one of its host's agent
// blocks ("" when it is).
func (a *Allocator) outside(host string, ad ReportedAddress) string {
	ns := a.s.nets[ad.Network]
	if ns == nil {
		return fmt.Sprintf("network %q does not exist", ad.Network)
	}
	bp := netip.PrefixFrom(ad.Addr, ns.net.BlockBits).Masked()
	b := ns.blocks[bp]
	switch {
	case !ns.net.CIDR.Contains(ad.Addr):
		return fmt.Sprintf("it is outside network %s (%s)", ad.Network, ns.net.CIDR)
	case b == nil:
		return fmt.Sprintf("block %s is claimed by no host", bp)
	case b.host != host:
		return fmt.Sprintf("block %s belongs to host %s", bp, b.host)
	case b.issuer != IssuerAgent:
		return fmt.Sprintf("block %s is the server's (VM ports), not the agent's", bp)
	case ad.Block != bp:
		return fmt.Sprintf("the agent files it under block %s, not %s", ad.Block, bp)
	}
	return ""
}

// auditBlocks compares the agent's pool with the server's blocks.
func (a *Allocator) auditBlocks(host string, r HostReport, add func(Finding)) {
	inBlock := map[AddressKey]int{} // addresses reported per block (Addr: the block's)
	for _, ad := range r.Addresses {
		inBlock[AddressKey{ad.Network, ad.Block.Addr()}]++
	}
	for _, rb := range r.Blocks {
		f := Finding{Kind: "block-count-mismatch", Network: rb.Network, Subject: rb.Prefix.String(), Host: host, Block: rb.Prefix, Since: r.At}
		var b *block
		if ns := a.s.nets[rb.Network]; ns != nil {
			b = ns.blocks[rb.Prefix]
		}
		switch n := inBlock[AddressKey{rb.Network, rb.Prefix.Addr()}]; {
		case b == nil || b.host != host || b.issuer != IssuerAgent:
			if rb.Used == 0 && !rb.Open {
				continue // being given back
			}
			owner := "no host"
			if b != nil {
				owner = fmt.Sprintf("host %s (%s)", b.host, b.issuer)
			}
			f.Detail = fmt.Sprintf("the agent on %s allocates from block %s (%d in use), which the server lists as claimed by %s", host, rb.Prefix, rb.Used, owner)
			add(f)
		case rb.Used != n:
			f.Detail = fmt.Sprintf("the agent on %s counts %d addresses in use in block %s but reports %d; its node-local state disagrees with its pool (restart the agent to rebuild it)", host, rb.Used, rb.Prefix, n)
			add(f)
		}
	}
}

// auditPorts finds VM ports whose device the host's live agent has not
// seen for the grace period: leaked, and safe to release.
func (a *Allocator) auditPorts(host string, r HostReport, o AuditOptions, add func(Finding)) {
	if o.Now.Sub(r.At) >= o.Grace {
		return // the agent is not reporting: its word on ports is stale
	}
	for _, p := range r.Ports {
		e := a.s.endpoints[p.ID]
		if p.Wired || e == nil || e.host != host || o.Now.Sub(p.Since) < o.Grace {
			continue
		}
		h := Holder{Path: "api", Network: e.network, Addr: e.addr, Host: host, Block: e.block.prefix, Endpoint: e.id, Namespace: e.namespace, Since: e.since}
		add(Finding{Kind: "leak", Network: e.network, Subject: e.addr.String(), Addr: e.addr, Host: host, Block: e.block.prefix, Holders: []Holder{h}, Since: p.Since, Release: e.id,
			Detail: fmt.Sprintf("%s: the agent on %s has not found its device %s since %s; the VM is gone or was never plugged in", h, host, p.Device, p.Since.UTC().Format(time.RFC3339))})
	}
}

// Explanation answers "why is this address allocated".
type Explanation struct {
	Addr netip.Addr `json:"addr"`
	// Holders is everyone holding the address, in any network.
	Holders []Holder `json:"holders"`
	// Places is where the address lies in each network that contains it.
	Places   []Place   `json:"places"`
	Findings []Finding `json:"findings,omitempty"`
}

// Place is where an address lies in one network.
type Place struct {
	Network string `json:"network"`
	// Group is the leaf group whose prefixes hold it ("" if none).
	Group string       `json:"group,omitempty"`
	Block netip.Prefix `json:"block,omitzero"`
	// Host and Issuer describe the block ("" if it is not claimed).
	Host   string `json:"host,omitempty"`
	Issuer Issuer `json:"issuer,omitempty"`
}

// Explain tells who holds addr, where it lies, and what Audit finds about
// it.
func (a *Allocator) Explain(addr netip.Addr, o AuditOptions) Explanation {
	addr = addr.Unmap()
	ex := Explanation{Addr: addr, Holders: []Holder{}, Places: []Place{}}
	holders := a.holders()
	for _, n := range a.s.topo.Networks {
		if !n.CIDR.Contains(addr) {
			continue
		}
		ns := a.s.nets[n.Name]
		pl := Place{Network: n.Name, Block: netip.PrefixFrom(addr, n.BlockBits).Masked()}
		for g, ps := range ns.owned {
			if g.IsLeaf() && netx.CoveredBy(pl.Block, ps) {
				pl.Group = g.Path
			}
		}
		if b := ns.blocks[pl.Block]; b != nil {
			pl.Host, pl.Issuer = b.host, b.issuer
		}
		ex.Places = append(ex.Places, pl)
		ex.Holders = append(ex.Holders, holders[AddressKey{n.Name, addr}]...)
	}
	for _, f := range a.audit(o, holders) {
		if f.Addr == addr || (f.Block.IsValid() && f.Block.Contains(addr)) {
			ex.Findings = append(ex.Findings, f)
		}
	}
	return ex
}

func compareKeys(x, y AddressKey) int {
	return cmp.Or(cmp.Compare(x.Network, y.Network), x.Addr.Compare(y.Addr))
}
