package ipam

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/topology"
)

// TestPlanOrphans is the two-phase decision as a table: a report and the
// Pod objects in, marks, releases due and releases done out.
func TestPlanOrphans(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const settle, grace = 10 * time.Second, time.Minute
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}) }
	rep := func(ads ...ReportedAddress) HostReport { return HostReport{Host: "n1", Addresses: ads} }
	// pod i holds 10.0.0.i through attachment c<i>/eth0, handed out at t0.
	pod := func(i int, name, uid string) ReportedAddress {
		return ReportedAddress{Network: "pods", Addr: addr(i), Block: netip.MustParsePrefix("10.0.0.0/28"), Attachment: fmt.Sprintf("c%d/eth0", i), Pod: name, PodUID: uid, Since: t0}
	}
	mark := func(i int, name, reason string, since time.Time) OrphanedAddress {
		return OrphanedAddress{Network: "pods", Addr: addr(i), Attachment: fmt.Sprintf("c%d/eth0", i), Pod: name, Reason: reason, Since: since, Due: since.Add(grace)}
	}
	requested := func(m OrphanedAddress, at time.Time) OrphanedAddress { m.Requested = at; return m }
	on := func(node string, uids ...string) PodObject { return PodObject{UIDs: uids, Node: node} }

	type want struct{ noticed, marks, due, done []string } // "addr reason"
	for _, tc := range []struct {
		name      string
		report    HostReport
		pods      map[string]PodObject
		noticed   []OrphanedAddress
		requested []OrphanedAddress
		now       time.Time
		want      want
	}{
		{name: "pod exists on this node: nothing",
			report: rep(pod(1, "default/a", "u1")), pods: map[string]PodObject{"default/a": on("n1", "u1")},
			now: t0.Add(time.Hour)},
		{name: "no pod name (not Kubernetes): never",
			report: rep(pod(1, "", "")), pods: map[string]PodObject{},
			now: t0.Add(time.Hour)},
		{name: "a pod name that is no namespace/name: never",
			report: rep(pod(1, "web", ""), pod(2, "/web", ""), pod(3, "web/", "")), pods: map[string]PodObject{},
			now: t0.Add(time.Hour)},
		{name: "pod gone: noticed, not yet marked (settling)",
			report: rep(pod(1, "default/a", "u1")), pods: map[string]PodObject{},
			now:  t0.Add(time.Hour),
			want: want{noticed: []string{"10.0.0.1 pod-gone"}}},
		{name: "pod gone for the settle time: marked, not due",
			report: rep(pod(1, "default/a", "u1")), pods: map[string]PodObject{},
			noticed: []OrphanedAddress{mark(1, "default/a", OrphanPodGone, t0.Add(time.Hour))},
			now:     t0.Add(time.Hour + settle),
			want:    want{noticed: []string{"10.0.0.1 pod-gone"}, marks: []string{"10.0.0.1 pod-gone"}}},
		{name: "pod gone for the grace: due",
			report: rep(pod(1, "default/a", "u1")), pods: map[string]PodObject{},
			noticed: []OrphanedAddress{mark(1, "default/a", OrphanPodGone, t0.Add(time.Hour))},
			now:     t0.Add(time.Hour + grace),
			want:    want{noticed: []string{"10.0.0.1 pod-gone"}, marks: []string{"10.0.0.1 pod-gone"}, due: []string{"10.0.0.1 pod-gone"}}},
		{name: "pod re-created with another UID: orphan",
			report: rep(pod(1, "default/a", "u1"), pod(2, "default/a", "u2")), pods: map[string]PodObject{"default/a": on("n1", "u2")},
			noticed: []OrphanedAddress{mark(1, "default/a", OrphanPodOtherUID, t0)},
			now:     t0.Add(grace),
			want:    want{noticed: []string{"10.0.0.1 pod-other-uid"}, marks: []string{"10.0.0.1 pod-other-uid"}, due: []string{"10.0.0.1 pod-other-uid"}}},
		{name: "no UID in the report: the name decides",
			report: rep(pod(1, "default/a", "")), pods: map[string]PodObject{"default/a": on("n1", "u2")},
			now: t0.Add(time.Hour)},
		{name: "static pod: the mirror's config.mirror UID counts",
			report: rep(pod(1, "kube-system/etcd-n1", "hash")), pods: map[string]PodObject{"kube-system/etcd-n1": on("n1", "mirror-uid", "hash")},
			now: t0.Add(time.Hour)},
		{name: "pod on another node: orphan",
			report: rep(pod(1, "default/a", "u1")), pods: map[string]PodObject{"default/a": on("n2", "u1")},
			noticed: []OrphanedAddress{mark(1, "default/a", OrphanPodOtherNode, t0)},
			now:     t0.Add(grace),
			want:    want{noticed: []string{"10.0.0.1 pod-other-node"}, marks: []string{"10.0.0.1 pod-other-node"}, due: []string{"10.0.0.1 pod-other-node"}}},
		{name: "pod back within the grace: unmarked",
			report: rep(pod(1, "default/a", "u1")), pods: map[string]PodObject{"default/a": on("n1", "u1")},
			noticed: []OrphanedAddress{mark(1, "default/a", OrphanPodGone, t0)},
			now:     t0.Add(grace / 2)},
		{name: "address handed out in the last seconds: not marked (ADD racing the Pod's informer)",
			report: rep(func() ReportedAddress { a := pod(1, "default/new", "u9"); a.Since = t0.Add(time.Hour); return a }()), pods: map[string]PodObject{},
			noticed: []OrphanedAddress{mark(1, "default/new", OrphanPodGone, t0)},
			now:     t0.Add(time.Hour + settle/2),
			want:    want{noticed: []string{"10.0.0.1 pod-gone"}}},
		{name: "requested and still held: marked, not due again",
			report: rep(pod(1, "default/a", "u1")), pods: map[string]PodObject{},
			requested: []OrphanedAddress{requested(mark(1, "default/a", OrphanPodGone, t0), t0.Add(grace))},
			now:       t0.Add(2 * grace),
			want:      want{noticed: []string{"10.0.0.1 pod-gone"}, marks: []string{"10.0.0.1 pod-gone"}}},
		{name: "requested and released by the agent: done",
			report:    rep(),
			requested: []OrphanedAddress{requested(mark(1, "default/a", OrphanPodGone, t0), t0.Add(grace))},
			now:       t0.Add(2 * grace),
			want:      want{done: []string{"10.0.0.1 pod-gone"}}},
		{name: "requested, the address now another attachment's: done (the agent refused)",
			report:    rep(func() ReportedAddress { a := pod(1, "default/b", "u5"); a.Attachment = "c9/eth0"; return a }()),
			pods:      map[string]PodObject{"default/b": on("n1", "u5")},
			requested: []OrphanedAddress{requested(mark(1, "default/a", OrphanPodGone, t0), t0.Add(grace))},
			now:       t0.Add(2 * grace),
			want:      want{done: []string{"10.0.0.1 pod-gone"}}},
		{name: "a new leader: the grace starts again",
			report: rep(pod(1, "default/a", "u1")), pods: map[string]PodObject{},
			now:  t0.Add(time.Hour),
			want: want{noticed: []string{"10.0.0.1 pod-gone"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PlanOrphans(tc.report, tc.pods, tc.noticed, tc.requested, OrphanOptions{Now: tc.now, Settle: settle, Grace: grace})
			got := want{noticed: short(p.Noticed), marks: short(p.Marks), due: short(p.Due), done: short(p.Done)}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("PlanOrphans = %+v\nwant          %+v", got, tc.want)
			}
			for _, m := range p.Marks {
				if m.Due != m.Since.Add(grace) || m.Detail == "" {
					t.Errorf("mark %+v: want due = since + grace and a detail", m)
				}
				if tc.now.Sub(m.Since) < settle && m.Requested.IsZero() {
					t.Errorf("mark %+v before the settle time", m)
				}
			}
			for _, d := range p.Due {
				if tc.now.Before(d.Since.Add(grace)) {
					t.Errorf("due %+v before the grace has passed", d)
				}
			}
		})
	}
}

func short(os []OrphanedAddress) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.Addr.String()+" "+o.Reason)
	}
	return out
}

// TestPlanOrphansNeverReleasesALivePod checks the first invariant over
// every combination of report and Pod: an address whose pod exists on the
// host with the reported UID is never due, however long it waited.
func TestPlanOrphansNeverReleasesALivePod(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, uid := range []string{"", "u1", "u2"} {
		for _, node := range []string{"n1", "n2", ""} {
			for _, objUID := range []string{"u1", "u2"} {
				ad := ReportedAddress{Network: "pods", Addr: netip.MustParseAddr("10.0.0.1"), Attachment: "c/eth0", Pod: "ns/p", PodUID: uid, Since: t0}
				pods := map[string]PodObject{"ns/p": {UIDs: []string{objUID}, Node: node}}
				noticed := []OrphanedAddress{{Network: "pods", Addr: ad.Addr, Attachment: ad.Attachment, Pod: ad.Pod, Since: t0}}
				p := PlanOrphans(HostReport{Host: "n1", Addresses: []ReportedAddress{ad}}, pods, noticed, nil, OrphanOptions{Now: t0.Add(time.Hour), Settle: time.Second, Grace: time.Minute})
				live := node == "n1" && (uid == "" || uid == objUID)
				if live && len(p.Due) > 0 {
					t.Errorf("uid %q, pod %s on %q: due %+v for a live pod", uid, objUID, node, p.Due)
				}
				if !live && len(p.Due) != 1 {
					t.Errorf("uid %q, pod %s on %q: not due", uid, objUID, node)
				}
				if r, _ := IsOrphan("n1", ad, pods["ns/p"], true); (r == "") != live {
					t.Errorf("IsOrphan(uid %q, pod %s on %q) = %q", uid, objUID, node, r)
				}
			}
		}
	}
}

// TestAuditOrphans: marks and requested releases are check findings with
// the pod, host, address, marked since and due time, and Explain shows them.
func TestAuditOrphans(t *testing.T) {
	topo, err := topology.Load([]byte(`
networks: [{name: pods, cidr: 10.0.0.0/16, blockSize: 28}]
topologies: [{networks: [pods], groups: [{name: a, assignment: {matchLabels: {zone: a}}}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := New(topo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddHost(HostSpec{Name: "n1", Labels: map[string]string{"zone": "a"}}); err != nil {
		t.Fatal(err)
	}
	claim, _, err := a.ClaimBlock("n1", "pods")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ad := ReportedAddress{Network: "pods", Addr: claim.Addr().Next(), Block: claim, Attachment: "c1/eth0", Pod: "default/a", PodUID: "u1", Since: t0}
	a.SetReports([]HostReport{{Host: "n1", At: t0, Addresses: []ReportedAddress{ad}, Blocks: []ReportedBlock{{Network: "pods", Prefix: claim, Used: 1, Open: true}}}})
	m := OrphanedAddress{Network: "pods", Addr: ad.Addr, Attachment: ad.Attachment, Pod: ad.Pod, PodUID: "u1", Reason: OrphanPodGone, Detail: "pod default/a does not exist", Since: t0, Due: t0.Add(time.Minute)}
	o := AuditOptions{Now: t0.Add(30 * time.Second), Seen: map[string]time.Time{"n1": t0}, Orphans: []HostOrphans{{Host: "n1", Addresses: []OrphanedAddress{m}}}}
	fs := a.Audit(o)
	if len(fs) != 1 || fs[0].Kind != "orphan-pod" || fs[0].Host != "n1" || fs[0].Addr != ad.Addr || !fs[0].Since.Equal(t0) || !fs[0].Due.Equal(t0.Add(time.Minute)) ||
		!strings.Contains(fs[0].Detail, "default/a") || !strings.Contains(fs[0].Detail, "release due at 2026-01-01T12:01:00Z") || fs[0].Block != claim {
		t.Fatalf("Audit = %+v, want one orphan-pod finding naming the pod, host, address, since and due", fs)
	}
	ex := a.Explain(ad.Addr, o)
	if len(ex.Findings) != 1 || ex.Findings[0].Kind != "orphan-pod" {
		t.Fatalf("Explain findings = %+v, want the mark", ex.Findings)
	}
	m.Requested = t0.Add(time.Minute)
	o.Orphans[0].Addresses[0] = m
	if fs := a.Audit(o); len(fs) != 1 || !strings.Contains(fs[0].Detail, "release requested at") {
		t.Fatalf("Audit = %+v, want the requested release", fs)
	}
}

// TestPlanOrphansModel drives PlanOrphans pass after pass over random
// timelines — Pods deleted, re-created with a new UID, moved, back — and
// checks every pass against a simple oracle: an address is due only if its
// Pod has not been live on the host, as the pass saw it, for the whole
// grace (settle included) up to now, and every due address is marked.
func TestPlanOrphansModel(t *testing.T) {
	const settle, grace, step = 2 * time.Second, 10 * time.Second, time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for seed := range 200 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		const n = 4
		var r HostReport
		r.Host = "n1"
		for i := range n {
			r.Addresses = append(r.Addresses, ReportedAddress{Network: "pods", Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Attachment: fmt.Sprintf("c%d/eth0", i),
				Pod: fmt.Sprintf("ns/p%d", i), PodUID: fmt.Sprintf("u%d", i), Since: t0})
		}
		pods := map[string]PodObject{}
		for i := range n {
			pods[fmt.Sprintf("ns/p%d", i)] = PodObject{UIDs: []string{fmt.Sprintf("u%d", i)}, Node: "n1"}
		}
		lastLive := map[string]time.Time{} // attachment → last pass its pod was live
		var noticed, requested []OrphanedAddress
		for pass := range 60 {
			now := t0.Add(time.Duration(pass) * step)
			i := rng.IntN(n)
			name := fmt.Sprintf("ns/p%d", i)
			switch rng.IntN(6) {
			case 0:
				delete(pods, name)
			case 1:
				pods[name] = PodObject{UIDs: []string{"new"}, Node: "n1"}
			case 2:
				pods[name] = PodObject{UIDs: []string{fmt.Sprintf("u%d", i)}, Node: "n2"}
			case 3:
				pods[name] = PodObject{UIDs: []string{fmt.Sprintf("u%d", i)}, Node: "n1"}
			}
			for _, ad := range r.Addresses {
				if reason, _ := IsOrphan("n1", ad, pods[ad.Pod], hasPod(pods, ad.Pod)); reason == "" {
					lastLive[ad.Attachment] = now
				}
			}
			p := PlanOrphans(r, pods, noticed, requested, OrphanOptions{Now: now, Settle: settle, Grace: grace})
			for _, d := range p.Due {
				if live, ok := lastLive[d.Attachment]; ok && now.Sub(live) <= grace {
					t.Fatalf("seed %d pass %d: %s due %s after its pod was last live (grace %s)", seed, pass, d.Attachment, now.Sub(live), grace)
				}
				if !slices.ContainsFunc(p.Marks, func(m OrphanedAddress) bool { return m.Key() == d.Key() }) {
					t.Fatalf("seed %d pass %d: %s due but not marked", seed, pass, d.Attachment)
				}
				d.Requested = now
				requested = append(requested, d)
			}
			noticed = p.Noticed
		}
	}
}
