package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/cniapi"
)

// link forwards TCP connections to a real server until it is cut: then
// every connection open through it is closed and new ones are closed as
// soon as they are accepted, as if the server's host had gone away.
type link struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func startLink(t *testing.T, serverURL string) (*link, string) {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); l.setCut(true) })
	go l.serve()
	return l, "https://" + ln.Addr().String()
}

func (l *link) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.cut {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[c] = true
		l.mu.Unlock()
		go l.forward(c)
	}
}

func (l *link) forward(c net.Conn) {
	s, err := net.Dial("tcp", l.target)
	if err != nil {
		c.Close()
		return
	}
	l.mu.Lock()
	if l.cut {
		l.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	l.conns[s] = true
	l.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
}

// setCut cuts the link (closing what is open through it) or restores it.
func (l *link) setCut(cut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = cut
	if cut {
		for c := range l.conns {
			c.Close()
		}
		clear(l.conns)
	}
}

func (n *node) offline() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.offlineLocked()
}

func (n *node) free(network string) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pool(network).Free()
}

// holder is the pod the server records at addr ("" for none).
func (e *env) holder(addr netip.Addr) string {
	e.t.Helper()
	ex, err := e.admin.Explain(context.Background(), addr)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, h := range ex.Holders {
		out = append(out, h.Pod)
	}
	return strings.Join(out, ",")
}

// TestAgentServesWhileServerUnreachable: with the server out of reach,
// ADDs are served from the host's blocks (routed, recorded) until they
// are full, then fail at once with CNI code 11 naming the cause and the
// fix; DELs release locally and free room. Once the server is reachable
// again the agent reports every pod made and none deleted while it was
// not, claims ahead again, the server's check is clean, and ADDs go on.
func TestAgentServesWhileServerUnreachable(t *testing.T) {
	e := newEnv(t, flatTopology)
	l, u := startLink(t, e.srv.URL)
	c, err := client.New(client.Config{Server: u, CAFile: e.srv.PKI.CA.Cert, CertFile: e.srv.PKI.Admin.Cert, KeyFile: e.srv.PKI.Admin.Key, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	e.server = c
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	addrs := map[string]netip.Addr{}
	add := func(id string) error {
		r, err := n.Add(ctx, addReq(id))
		if err == nil {
			addrs[id] = r.Addr.Addr()
		}
		return err
	}
	for _, id := range []string{"before-1", "before-2"} {
		if err := add(id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the first pods reported", func() bool { return e.usedOn("n1") == 2 })
	waitFor(t, "room kept ahead", func() bool { return n.free("pods") >= n.keep("pods") })

	l.setCut(true)
	waitFor(t, "the agent to see the server unreachable", n.offline)
	room := n.free("pods")
	var made []string
	var full error
	for i := 0; full == nil; i++ {
		if i > int(room) {
			t.Fatalf("%d ADDs succeeded offline with %d free addresses", i, room)
		}
		id := fmt.Sprintf("off-%02d", i)
		start := time.Now()
		if full = add(id); full == nil {
			made = append(made, id)
		} else if d := time.Since(start); d > time.Second {
			t.Errorf("the ADD that found the blocks full took %s: it should fail at once", d)
		}
	}
	if uint64(len(made)) != room {
		t.Errorf("%d ADDs succeeded offline, want the host's %d free addresses", len(made), room)
	}
	var ce *cniapi.Error
	if !errors.As(full, &ce) || ce.Code != cniapi.CodeTryAgainLater ||
		!strings.Contains(ce.Message, "try again later: the server is unreachable and this host's blocks are full") ||
		!strings.Contains(ce.Message, "--claim-ahead") {
		t.Errorf("ADD with the blocks full and the server unreachable: %v; want code 11 saying so and naming --claim-ahead", full)
	}
	rs := n.routes()
	for _, id := range made {
		if want := addrs[id].String() + "/32 dev " + cniapi.HostVeth(id, "eth0"); !slices.Contains(rs, want) {
			t.Errorf("no route %s while offline: %v", want, rs)
		}
	}
	// DELs free room locally; an ADD takes it.
	gone := made[:2]
	for _, id := range gone {
		if err := n.Del(ctx, cniapi.Attachment{ContainerID: id, IfName: "eth0"}); err != nil {
			t.Fatalf("DEL offline: %v", err)
		}
	}
	if err := add("off-again"); err != nil {
		t.Fatalf("ADD into room a DEL freed offline: %v", err)
	}
	made = append(made[2:], "off-again")
	if got := e.usedOn("n1"); got != 2 {
		t.Errorf("the server counts %d addresses on n1 while it is out of reach, want the 2 reported before", got)
	}

	l.setCut(false)
	want := 2 + len(made)
	waitFor(t, "the pods made offline reported", func() bool { return e.usedOn("n1") == want })
	for _, id := range append([]string{"before-1", "before-2"}, made...) {
		if h := e.holder(addrs[id]); h != "default/"+id {
			t.Errorf("the server records %s as held by %q, want default/%s", addrs[id], h, id)
		}
	}
	for _, id := range gone {
		if h := e.holder(addrs[id]); h != "" && !strings.Contains(h, "off-again") {
			t.Errorf("the server records %s (deleted offline) as held by %q", addrs[id], h)
		}
	}
	waitFor(t, "room claimed ahead again", func() bool { return !n.offline() && n.free("pods") >= n.keep("pods") })
	chk, err := e.admin.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !chk.Clean {
		t.Errorf("check after the catch-up: %+v", chk.Findings)
	}
	if err := add("after"); err != nil {
		t.Fatalf("ADD after the server returned: %v", err)
	}
}
