package agent

import (
	"context"

	"github.com/terrane-net/terrane/internal/ipam"
)

// releaseOrphans executes the server's release requests: addresses whose
// pod no longer exists (the Kubernetes Pod controller found them, waited
// its grace period and checked the Pod again). Each is released exactly
// like a CNI DEL of its attachment that never came: the host veth, if it
// still exists, goes with the pod end, the address returns to the pool and
// the route goes with the next sync. A request is executed only while the
// attachment it names holds the address it names, for the pod (UID) it
// names: an address released since and handed out again belongs to another
// attachment, which such a request must never touch. Requests for
// attachments the agent no longer holds are done already; repeating a
// request is harmless.
func (a *Agent) releaseOrphans(ctx context.Context, rels []ipam.OrphanedAddress) {
	a.mu.Lock()
	if a.refused == nil {
		a.refused = map[ipam.OrphanKey]bool{}
	}
	var todo []*endpoint
	asked := map[ipam.OrphanKey]bool{}
	for _, r := range rels {
		asked[r.Key()] = true
		e := a.eps[r.Attachment]
		if e == nil {
			continue // released already (a DEL, an earlier request)
		}
		if why := refuseRelease(e, r); why != "" {
			if !a.refused[r.Key()] {
				a.refused[r.Key()] = true
				a.log.Warn("release request refused", "attachment", r.Attachment, "addr", r.Addr, "pod", r.Pod, "why", why)
			}
			continue
		}
		todo = append(todo, e)
	}
	for k := range a.refused {
		if !asked[k] {
			delete(a.refused, k)
		}
	}
	a.mu.Unlock()
	for _, e := range todo {
		if err := a.cfg.HostOps.DeleteLink(e.HostVeth); err != nil {
			a.log.Warn("deleting the veth of an orphaned pod address", "attachment", e.ID(), "err", err)
		}
		if err := a.release(ctx, e); err != nil {
			a.log.Warn("releasing an orphaned pod address", "attachment", e.ID(), "addr", e.Addr, "err", err)
			continue
		}
		a.log.Info("released the address of a pod that no longer exists, at the server's request", "attachment", e.ID(), "addr", e.Addr, "pod", e.PodNamespace+"/"+e.PodName)
	}
}

// refuseRelease says why request r may not release endpoint e, the one
// its attachment names ("" when it may).
func refuseRelease(e *endpoint, r ipam.OrphanedAddress) string {
	switch {
	case !e.holds(r.Network, r.Addr):
		return "the attachment holds " + e.Addr.String() + " in network " + e.Network + ", not the address the request names"
	case r.PodUID != "" && e.PodUID != r.PodUID:
		return "the attachment belongs to pod UID " + e.PodUID + ", not " + r.PodUID
	case r.Pod != "" && e.PodNamespace+"/"+e.PodName != r.Pod:
		return "the attachment belongs to pod " + e.PodNamespace + "/" + e.PodName + ", not " + r.Pod
	}
	return ""
}
