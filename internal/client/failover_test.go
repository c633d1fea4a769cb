package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
)

// adminOf is an admin client of the servers listed.
func adminOf(t *testing.T, srvs ...*clienttest.Server) *client.Client {
	t.Helper()
	var urls []string
	for _, s := range srvs {
		urls = append(urls, s.URL)
	}
	return newClient(t, client.Config{Server: strings.Join(urls, ","), CAFile: srvs[0].PKI.CA.Cert,
		CertFile: srvs[0].PKI.Admin.Cert, KeyFile: srvs[0].PKI.Admin.Key, Timeout: 5 * time.Second})
}

// TestFailoverToTheNextServer: two real servers on one store. With the
// first killed (TCP: its listener closed; unix: its socket removed), calls
// succeed on the second and the client names it; with both killed, the
// error names each server's failure and is Unreachable.
func TestFailoverToTheNextServer(t *testing.T) {
	for _, tc := range []struct {
		name string
		unix bool
		gone error // what dialling a killed server gives
	}{
		{"tcp", false, syscall.ECONNREFUSED},
		{"unix", true, syscall.ENOENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvs := clienttest.Cluster(t, 2, tc.unix)
			c := adminOf(t, srvs...)
			ctx := context.Background()
			if got := c.Servers(); len(got) != 2 || got[0] != srvs[0].URL || got[1] != srvs[1].URL {
				t.Fatalf("Servers() = %v, want %s and %s", got, srvs[0].URL, srvs[1].URL)
			}
			if _, err := c.ApplyTopology(ctx, api.TopologyRequest{Topology: clienttest.Topology}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.RegisterHost(ctx, "n1", api.HostRequest{Labels: map[string]string{"rack": "1"}}); err != nil {
				t.Fatal(err)
			}
			if c.Server() != srvs[0].URL {
				t.Fatalf("Server() = %s while the first answers, want %s", c.Server(), srvs[0].URL)
			}

			srvs[0].Kill()
			hosts, err := c.Hosts(ctx)
			if err != nil || len(hosts) != 1 || hosts[0].Name != "n1" {
				t.Fatalf("hosts with the first server killed: %+v %v; want n1 from the second", hosts, err)
			}
			if c.Server() != srvs[1].URL {
				t.Errorf("Server() = %s after failing over, want %s", c.Server(), srvs[1].URL)
			}
			if _, err := c.ClaimBlock(ctx, "n1", "pods"); err != nil {
				t.Fatalf("claim through the second server: %v", err)
			}

			srvs[1].Kill()
			_, err = c.Hosts(ctx)
			var ue *client.UnreachableError
			if !errors.As(err, &ue) || len(ue.Errs) != 2 || ue.Servers[0] != srvs[1].URL || ue.Servers[1] != srvs[0].URL {
				t.Fatalf("both killed: %v (%T); want an UnreachableError asking the second, then the first", err, err)
			}
			for _, s := range srvs {
				if !strings.Contains(err.Error(), s.URL+": ") {
					t.Errorf("the error does not name %s: %v", s.URL, err)
				}
			}
			if !client.Unreachable(err) || !errors.Is(err, tc.gone) {
				t.Errorf("both killed: Unreachable %v, errors.Is(%v) %v; want both true: %v", client.Unreachable(err), tc.gone, errors.Is(err, tc.gone), err)
			}
		})
	}
}

// TestFailoverLongPoll: an agent's watch through two servers. The long
// poll open on the first when it is killed goes on on the second, past the
// same revision, and is answered by a block claimed there.
func TestFailoverLongPoll(t *testing.T) {
	srvs := clienttest.Cluster(t, 2, true)
	admin := adminOf(t, srvs[1])
	ctx := context.Background()
	if _, err := admin.ApplyTopology(ctx, api.TopologyRequest{Topology: clienttest.Topology}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RegisterHost(ctx, "n1", api.HostRequest{Labels: map[string]string{"rack": "1"}}); err != nil {
		t.Fatal(err)
	}
	s0, err := admin.Snapshot(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	node := newClient(t, client.Config{Server: srvs[0].URL + "," + srvs[1].URL, CAFile: srvs[0].PKI.CA.Cert, Token: clienttest.NodeToken})
	type result struct {
		s   *api.Snapshot
		err error
	}
	polled := make(chan result, 1)
	accepted := srvs[0].Accepted()
	start := time.Now()
	go func() {
		s, err := node.SnapshotOf(ctx, "n1", s0.Revision, 20*time.Second)
		polled <- result{s, err}
	}()
	waitFor(t, "the poll to reach the first server", func() bool { return srvs[0].Accepted() > accepted })
	srvs[0].Kill()
	claim, err := admin.ClaimBlock(ctx, "n1", "pods")
	if err != nil {
		t.Fatal(err)
	}
	r := <-polled
	if r.err != nil {
		t.Fatalf("the long poll with its server killed: %v", r.err)
	}
	if r.s.Revision <= s0.Revision || len(r.s.Blocks["pods"]) != 1 || r.s.Blocks["pods"][0].Prefix != claim.Block {
		t.Fatalf("long poll answered revision %d (was %d) with blocks %+v, want the claimed %s", r.s.Revision, s0.Revision, r.s.Blocks["pods"], claim.Block)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the poll took %s: it waited out its wait instead of failing over", d)
	}
	if node.Server() != srvs[1].URL {
		t.Errorf("Server() = %s after the poll failed over, want %s", node.Server(), srvs[1].URL)
	}
}

// TestAllocateEndpointRepeatedOnAnotherServer: what a call repeated after
// a lost answer does. An endpoint allocation repeated with the same ID and
// host through another server of the store answers the same address, not
// created; a block claim repeated claims one block more for the host.
func TestAllocateEndpointRepeatedOnAnotherServer(t *testing.T) {
	srvs := clienttest.Cluster(t, 2, false)
	a, b := adminOf(t, srvs[0]), adminOf(t, srvs[1])
	ctx := context.Background()
	if _, err := a.ApplyTopology(ctx, api.TopologyRequest{Topology: clienttest.Topology}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RegisterHost(ctx, "n1", api.HostRequest{Labels: map[string]string{"rack": "1"}}); err != nil {
		t.Fatal(err)
	}
	req := api.EndpointRequest{ID: "port.1", Host: "n1", Network: "vms", Namespace: "openstack"}
	first, err := a.AllocateEndpoint(ctx, req)
	if err != nil || !first.Created {
		t.Fatalf("allocate: %+v %v", first, err)
	}
	again, err := b.AllocateEndpoint(ctx, req)
	if err != nil || again.Created || again.Endpoint.Addr != first.Endpoint.Addr {
		t.Fatalf("allocate again through the other server: %+v %v; want %s, not created", again, err, first.Endpoint.Addr)
	}
	eps, err := b.Endpoints(ctx)
	if err != nil || len(eps) != 1 {
		t.Fatalf("endpoints after the repeat: %+v %v; want port.1 once", eps, err)
	}

	c1, err := a.ClaimBlock(ctx, "n1", "pods")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := b.ClaimBlock(ctx, "n1", "pods")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := a.Blocks(ctx, "pods")
	if err != nil || c1.Block == c2.Block || len(blocks["pods"]) != 2 {
		t.Fatalf("a repeated claim: %s then %s, blocks %+v %v; want two blocks of n1", c1.Block, c2.Block, blocks, err)
	}
}

// counted is an httptest server that counts the requests it serves and
// answers them with answer.
func counted(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int64)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, n.Add(1))
	}))
	t.Cleanup(hs.Close)
	return hs, &n
}

func answerHosts(w http.ResponseWriter, _ *http.Request, _ int64) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"hosts": [{"name": "n1"}]}`))
}

// TestFailoverOnlyWithoutAnAnswer: a server's answer — a 4xx, a 409, a 500
// with the API's error — is returned without asking the next server; a
// proxy's 502/503/504 and a closed server are not answers.
func TestFailoverOnlyWithoutAnAnswer(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name   string
		first  func(w http.ResponseWriter, r *http.Request, n int64)
		status int // of the error returned; 0: the second answers
	}{
		{"404", func(w http.ResponseWriter, _ *http.Request, _ int64) {
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"error": "host n9 not found"}`))
		}, 404},
		{"403", func(w http.ResponseWriter, _ *http.Request, _ int64) {
			w.WriteHeader(403)
			_, _ = w.Write([]byte(`{"error": "admin only"}`))
		}, 403},
		{"409", func(w http.ResponseWriter, _ *http.Request, _ int64) {
			w.WriteHeader(409)
			_, _ = w.Write([]byte(`{"error": "no topology applied yet"}`))
		}, 409},
		{"500", func(w http.ResponseWriter, _ *http.Request, _ int64) {
			w.WriteHeader(500)
			_, _ = w.Write([]byte(`{"error": "decode record"}`))
		}, 500},
		{"502", func(w http.ResponseWriter, _ *http.Request, _ int64) {
			http.Error(w, "bad gateway", http.StatusBadGateway)
		}, 0},
		{"503", func(w http.ResponseWriter, _ *http.Request, _ int64) { w.WriteHeader(503) }, 0},
		{"504", func(w http.ResponseWriter, _ *http.Request, _ int64) { w.WriteHeader(504) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, firstN := counted(t, tc.first)
			second, secondN := counted(t, answerHosts)
			c := newClient(t, client.Config{Server: first.URL + "," + second.URL})
			hosts, err := c.Hosts(context.Background())
			if tc.status != 0 {
				apiError(t, err, tc.status, "")
				if secondN.Load() != 0 {
					t.Errorf("the second server was asked after the first answered %d", tc.status)
				}
				return
			}
			if err != nil || len(hosts) != 1 || firstN.Load() != 1 || secondN.Load() != 1 {
				t.Fatalf("hosts: %+v %v, asked first %d second %d times; want the second's answer after one try of the first", hosts, err, firstN.Load(), secondN.Load())
			}
		})
	}
	t.Run("closed", func(t *testing.T) {
		second, secondN := counted(t, answerHosts)
		c := newClient(t, client.Config{Server: closed.URL + "," + second.URL})
		if hosts, err := c.Hosts(context.Background()); err != nil || len(hosts) != 1 || secondN.Load() != 1 {
			t.Fatalf("hosts with the first server closed: %+v %v", hosts, err)
		}
	})
}

// TestFailoverSticksToTheServerThatAnswered: once a call fails over, the
// next calls go to the server that answered, not back to the first; when
// that one stops answering, they go on to the next in the list.
func TestFailoverSticksToTheServerThatAnswered(t *testing.T) {
	first, firstN := counted(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			w.WriteHeader(503) // a proxy in front of it, once
			return
		}
		answerHosts(w, r, n)
	})
	second, secondN := counted(t, answerHosts)
	c := newClient(t, client.Config{Server: first.URL + ", " + second.URL})
	ctx := context.Background()
	for range 5 {
		if _, err := c.Hosts(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if firstN.Load() != 1 || secondN.Load() != 5 || c.Server() != second.URL {
		t.Fatalf("asked first %d, second %d times, calling %s; want 1 and 5, calling the second", firstN.Load(), secondN.Load(), c.Server())
	}
	second.Close()
	if _, err := c.Hosts(ctx); err != nil {
		t.Fatalf("with the second closed: %v", err)
	}
	if firstN.Load() != 2 || c.Server() != first.URL {
		t.Fatalf("with the second closed: first asked %d times, calling %s; want 2, calling the first", firstN.Load(), c.Server())
	}
}

// TestFailoverStopsWithTheCaller: a call whose context is cancelled or
// expires while the first server holds it ends at once, asking no other.
func TestFailoverStopsWithTheCaller(t *testing.T) {
	// The first server accepts connections and never answers.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		hung.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	second, secondN := counted(t, answerHosts)
	c := newClient(t, client.Config{Server: "http://" + hung.Addr().String() + "," + second.URL, Timeout: time.Minute})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := c.Hosts(ctx); done <- err }()
	waitFor(t, "the call to reach the first server", func() bool { mu.Lock(); defer mu.Unlock(); return len(conns) > 0 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || client.Unreachable(err) {
			t.Errorf("cancelled call: %v; want context.Canceled, not Unreachable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled call did not end")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Hosts(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired call: %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the expired call took %s", d)
	}
	if secondN.Load() != 0 {
		t.Errorf("the second server was asked %d times for calls whose caller gave up", secondN.Load())
	}
	if c.Server() != "http://"+hung.Addr().String() {
		t.Errorf("Server() = %s; a call the caller gave up on moves nothing", c.Server())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
