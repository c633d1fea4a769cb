package ipam

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Orphaned pod addresses. A pod address whose pod no longer exists (its
// Kubernetes Pod object is gone, was re-created with another UID, or is bound
// to another node) leaks for good when the runtime never sent the CNI DEL.
// The decision is here, pure: the caller (the Kubernetes Pod controller)
// gives the host's report, the Pod objects it sees and the clock, keeps the
// marks between passes, verifies what falls due against a fresh read and
// publishes the release requests the host's agent executes.

// Reasons an address is an orphan.
const (
	OrphanPodGone      = "pod-gone"
	OrphanPodOtherUID  = "pod-other-uid"
	OrphanPodOtherNode = "pod-other-node"
)

// PodObject is what the orphan decision knows of one Pod object.
type PodObject struct {
	// UIDs the pod may carry in a report: its metadata.uid and, for a
	// static pod's mirror, the static pod's own UID (the kubelet's
	// kubernetes.io/config.mirror annotation), which the runtime passes
	// as K8S_POD_UID.
	UIDs []string
	// Node is spec.nodeName ("" while unscheduled).
	Node string
}

// OrphanedAddress is a reported pod address whose pod no longer exists:
// a mark while its grace runs, a release request once it has passed.
type OrphanedAddress struct {
	Network string     `json:"network"`
	Addr    netip.Addr `json:"addr"`
	// Attachment is the CNI attachment holding Addr, "<containerID>/<ifName>":
	// an agent releases the address only while this attachment holds it.
	Attachment string `json:"attachment"`
	Pod        string `json:"pod"`
	PodUID     string `json:"podUID,omitempty"`
	// Reason is one of OrphanPodGone, OrphanPodOtherUID, OrphanPodOtherNode;
	// Detail says it in words.
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
	// Since is when the leader first saw the address orphaned; Due when
	// the release falls due (Since + the grace).
	Since time.Time `json:"since"`
	Due   time.Time `json:"due"`
	// Requested is when the release was asked of the host's agent (zero
	// while only marked).
	Requested time.Time `json:"requested,omitzero"`
}

// Key identifies the holding the mark is about: the address and the
// attachment holding it (an address released and handed out again is
// another holding).
func (o OrphanedAddress) Key() OrphanKey {
	return OrphanKey{AddressKey: AddressKey{Network: o.Network, Addr: o.Addr}, Attachment: o.Attachment}
}

// OrphanKey identifies an address held by one attachment.
type OrphanKey struct {
	AddressKey
	Attachment string
}

// HostOrphans is a host's orphaned pod addresses as the leader last
// published them: the marks (Requested zero) and the releases asked.
type HostOrphans struct {
	Host      string            `json:"host"`
	Addresses []OrphanedAddress `json:"addresses"`
}

// OrphanOptions time the two phases.
type OrphanOptions struct {
	Now time.Time
	// Settle: an address is marked once it has been an orphan candidate
	// this long, and only if it was handed out at least this long ago.
	// A normal CNI DEL reaches the report a few seconds after the Pod
	// object goes, and an ADD reaches it a few seconds after the Pod
	// object appears: neither is ever marked.
	Settle time.Duration
	// Grace: a mark falls due this long after Since.
	Grace time.Duration
}

// OrphanCandidates lists the addresses of r whose pod, by the Pod objects
// in pods (keyed "namespace/name"), does not exist, exists with another UID
// (when the report carries one) or is bound to another node than r.Host.
// Addresses with no pod "namespace/name" (not from Kubernetes) are never
// candidates. Since and Due are left zero.
func OrphanCandidates(r HostReport, pods map[string]PodObject) []OrphanedAddress {
	var out []OrphanedAddress
	for _, ad := range r.Addresses {
		if !isPodName(ad.Pod) {
			continue
		}
		reason, detail := orphanReason(r.Host, ad, pods[ad.Pod], hasPod(pods, ad.Pod))
		if reason == "" {
			continue
		}
		out = append(out, OrphanedAddress{Network: ad.Network, Addr: ad.Addr, Attachment: ad.Attachment, Pod: ad.Pod, PodUID: ad.PodUID, Reason: reason, Detail: detail})
	}
	return out
}

func hasPod(pods map[string]PodObject, name string) bool { _, ok := pods[name]; return ok }

// isPodName says whether s is a pod's "namespace/name".
func isPodName(s string) bool {
	ns, name, ok := strings.Cut(s, "/")
	return ok && ns != "" && name != ""
}

// IsOrphan says whether the pod object p (exists false: none) leaves the
// address ad on host an orphan, and why: OrphanCandidates for one address,
// for a fresh read of its Pod.
func IsOrphan(host string, ad ReportedAddress, p PodObject, exists bool) (reason, detail string) {
	if !isPodName(ad.Pod) {
		return "", ""
	}
	return orphanReason(host, ad, p, exists)
}

func orphanReason(host string, ad ReportedAddress, p PodObject, exists bool) (reason, detail string) {
	switch {
	case !exists:
		return OrphanPodGone, fmt.Sprintf("pod %s does not exist", ad.Pod)
	case ad.PodUID != "" && !slices.Contains(p.UIDs, ad.PodUID):
		return OrphanPodOtherUID, fmt.Sprintf("pod %s exists with UID %s, not %s (re-created)", ad.Pod, strings.Join(p.UIDs, "/"), ad.PodUID)
	case p.Node != host:
		node := p.Node
		if node == "" {
			node = "no node"
		}
		return OrphanPodOtherNode, fmt.Sprintf("pod %s is bound to %s, not %s", ad.Pod, node, host)
	}
	return "", ""
}

// OrphanPass is one pass of the two phases over one host.
type OrphanPass struct {
	// Noticed are every candidate with the time it was first seen,
	// published or not yet: the caller keeps them for the next pass.
	Noticed []OrphanedAddress
	// Marks are the noticed candidates that have settled, to publish
	// (Requested carried over from requested).
	Marks []OrphanedAddress
	// Due are the marks whose grace has passed and whose release is not
	// yet requested: the caller verifies each against a fresh read of its
	// Pod before it requests the release.
	Due []OrphanedAddress
	// Done are the requested releases whose holding the report no longer
	// shows: the agent released the address (or refused, the attachment
	// being gone): the caller drops them.
	Done []OrphanedAddress
}

// PlanOrphans advances the marks of host r.Host by one pass: candidates
// (OrphanCandidates) keep the time they were first noticed (noticed, from
// the previous pass), new ones are noticed now, and any no longer a
// candidate (the pod came back, the address was released) is dropped. A
// candidate is marked once it has been one for Settle and its address was
// handed out at least Settle ago; a mark falls due Grace after it was
// noticed. requested are the releases already asked of the agent: they
// stay marked until the report no longer shows their holding, then they
// are Done. Outputs are sorted by network, address.
func PlanOrphans(r HostReport, pods map[string]PodObject, noticed, requested []OrphanedAddress, o OrphanOptions) OrphanPass {
	prev := map[OrphanKey]OrphanedAddress{}
	for _, m := range noticed {
		prev[m.Key()] = m
	}
	asked := map[OrphanKey]OrphanedAddress{}
	for _, m := range requested {
		asked[m.Key()] = m
	}
	since := map[AddressKey]time.Time{}
	held := map[OrphanKey]bool{}
	for _, ad := range r.Addresses {
		since[ad.Key()] = ad.Since
		held[OrphanKey{ad.Key(), ad.Attachment}] = true
	}
	var pass OrphanPass
	for _, c := range OrphanCandidates(r, pods) {
		k := c.Key()
		if p, ok := prev[k]; ok {
			c.Since = p.Since
		} else {
			c.Since = o.Now
		}
		if a, ok := asked[k]; ok && a.Since.Before(c.Since) {
			c.Since = a.Since // requested by this leader or an earlier one
		}
		c.Due = c.Since.Add(o.Grace)
		pass.Noticed = append(pass.Noticed, c)
		if a, ok := asked[k]; ok {
			c.Requested = a.Requested
			pass.Marks = append(pass.Marks, c)
			continue
		}
		if o.Now.Sub(c.Since) < o.Settle || o.Now.Sub(since[c.AddressKey()]) < o.Settle {
			continue
		}
		pass.Marks = append(pass.Marks, c)
		if !o.Now.Before(c.Due) {
			pass.Due = append(pass.Due, c)
		}
	}
	for _, a := range requested {
		if !held[a.Key()] {
			pass.Done = append(pass.Done, a)
		} else if !slices.ContainsFunc(pass.Marks, func(m OrphanedAddress) bool { return m.Key() == a.Key() }) {
			// Still held but no longer a candidate (the pod is back with
			// its UID): the request stays until the agent acts on it or
			// refuses; it is not marked again.
			pass.Marks = append(pass.Marks, a)
		}
	}
	for _, s := range [][]OrphanedAddress{pass.Noticed, pass.Marks, pass.Due, pass.Done} {
		slices.SortFunc(s, compareOrphans)
	}
	return pass
}

// AddressKey is the orphan's address key.
func (o OrphanedAddress) AddressKey() AddressKey {
	return AddressKey{Network: o.Network, Addr: o.Addr}
}

func compareOrphans(x, y OrphanedAddress) int {
	return cmp.Or(cmp.Compare(x.Network, y.Network), x.Addr.Compare(y.Addr), cmp.Compare(x.Attachment, y.Attachment))
}

// auditOrphans lists the marked and requested orphans as findings
// (orphan-pod), with the holder as the host's report shows it.
func (a *Allocator) auditOrphans(o AuditOptions, add func(Finding)) {
	for _, ho := range o.Orphans {
		for _, m := range ho.Addresses {
			h := Holder{Path: "cni", Network: m.Network, Addr: m.Addr, Host: ho.Host, Endpoint: m.Attachment, Pod: m.Pod}
			for _, ad := range a.reports[ho.Host].Addresses {
				if ad.Key() == m.AddressKey() && ad.Attachment == m.Attachment {
					h.Block, h.Since = ad.Block, ad.Since
				}
			}
			state := fmt.Sprintf("marked since %s, release due at %s", m.Since.UTC().Format(time.RFC3339), m.Due.UTC().Format(time.RFC3339))
			if !m.Requested.IsZero() {
				state = fmt.Sprintf("marked since %s, release requested at %s: the agent on %s releases it like a CNI DEL", m.Since.UTC().Format(time.RFC3339), m.Requested.UTC().Format(time.RFC3339), ho.Host)
			}
			add(Finding{Kind: "orphan-pod", Network: m.Network, Subject: m.Addr.String(), Addr: m.Addr, Host: ho.Host, Block: h.Block, Holders: []Holder{h}, Since: m.Since, Due: m.Due,
				Detail: fmt.Sprintf("%s: %s; %s", h, m.Detail, state)})
		}
	}
}
