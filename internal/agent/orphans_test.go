package agent

import (
	"context"
	"slices"
	"testing"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/ipam"
)

// TestReleaseOrphansChecksTheAttachment: the agent executes a release
// request like a CNI DEL (address, route, host veth), idempotently, and
// only while the attachment it names holds the address (and pod UID) it
// names: an address released since and handed out again, to another
// attachment, is never touched.
func TestReleaseOrphansChecksTheAttachment(t *testing.T) {
	e := newEnv(t, flatTopology)
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	addWithUID := func(id, uid string) ipam.OrphanedAddress {
		t.Helper()
		req := addReq(id)
		req.PodUID = uid
		r, err := n.Add(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return ipam.OrphanedAddress{Network: r.Network, Addr: r.Addr.Addr(), Attachment: req.ID(), Pod: "default/" + id, PodUID: uid, Reason: ipam.OrphanPodGone}
	}
	held := func(id string) bool {
		_, err := n.Check(ctx, cniapi.Attachment{ContainerID: id, IfName: "eth0"})
		return err == nil
	}

	orphan := addWithUID("orphan", "u1")
	other := addWithUID("other", "u2")
	uid := addWithUID("uid", "u3")
	// The address of "reused" is released by a DEL and handed to "taker":
	// a request still naming "reused" must leave "taker" alone.
	reused := addWithUID("reused", "u4")
	if err := n.Del(ctx, cniapi.Attachment{ContainerID: "reused", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	taker := addWithUID("taker", "u5")
	reused.Addr = taker.Addr

	wrongAddr := other
	wrongAddr.Addr = orphan.Addr // "other" does not hold orphan's address
	wrongUID := uid
	wrongUID.PodUID = "u-old" // the attachment is another pod's
	n.releaseOrphans(ctx, []ipam.OrphanedAddress{orphan, wrongAddr, wrongUID, reused})

	if held("orphan") {
		t.Error("the orphan's attachment is still held")
	}
	if !slices.Contains(n.host.deleted, cniapi.HostVeth("orphan", "eth0")) {
		t.Errorf("deleted links %v: want the orphan's host veth", n.host.deleted)
	}
	for _, id := range []string{"other", "uid", "taker"} {
		if !held(id) {
			t.Errorf("%s released by a request that named another attachment, address or pod UID", id)
		}
	}
	waitFor(t, "the orphan's route gone", func() bool {
		return !slices.Contains(n.routes(), orphan.Addr.String()+"/32 dev "+cniapi.HostVeth("orphan", "eth0"))
	})
	waitFor(t, "the report without the orphan", func() bool {
		rep, err := e.admin.Explain(ctx, orphan.Addr)
		return err == nil && len(rep.Holders) == 0
	})
	// Again: nothing left to do, nothing else touched.
	n.releaseOrphans(ctx, []ipam.OrphanedAddress{orphan, wrongAddr, wrongUID, reused})
	for _, id := range []string{"other", "uid", "taker"} {
		if !held(id) {
			t.Errorf("%s released by a repeated request", id)
		}
	}
}
