package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/ui"
)

func (s *testServer) getText(token, path string) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The page, its refresh, its events and its search need the API's read
// credentials; with them the page shows the state's groups, hosts and
// blocks, and the search answers an address as GET /v1/addresses does.
func TestUIPageAndSearch(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	for _, p := range []string{"/ui/", "/ui/view", "/ui/events", "/ui/search?q=n1"} {
		if code, body := s.getText("", p); code != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: %d %s", p, code, body)
		}
	}
	if code, body := s.getText(adminToken, "/ui/"); code != 200 || !strings.Contains(body, "no topology applied yet") {
		t.Errorf("page before a topology: %d %s", code, body)
	}
	s.setup()
	s.must(n1Token, "POST", "/v1/hosts/n1/blocks", map[string]any{"network": "pods"}, 201)
	out := s.must(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "port-1", "host": "n2", "network": "vms", "namespace": "openstack"}, 201)
	addr := out["endpoint"].(map[string]any)["addr"].(string)

	code, body := s.getText(n1Token, "/ui/")
	if code != 200 {
		t.Fatalf("page: %d %s", code, body)
	}
	for _, want := range []string{`data-key="pods/rack-1"`, `data-key="vms/rack-2"`, `"n":"n1"`, `10.0.0.0/28`, `id="bgp"`, `id="vpc"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}

	search := func(q string) ui.Answer {
		t.Helper()
		code, body := s.getText(n1Token, "/ui/search?q="+q)
		var a ui.Answer
		if code != 200 || json.Unmarshal([]byte(body), &a) != nil {
			t.Fatalf("search %s: %d %s", q, code, body)
		}
		return a
	}
	a := search(addr)
	explained := s.must(adminToken, "GET", "/v1/addresses/"+addr, nil, 200)
	got, _ := json.Marshal(a.Explanation)
	var gotMap map[string]any
	_ = json.Unmarshal(got, &gotMap)
	if a.Kind != "address" || jsonString(gotMap) != jsonString(explained) {
		t.Errorf("search %s: %+v\nwant the explanation %v", addr, a, explained)
	}
	if a := search("port-1"); a.Kind != "vm-port" || a.Explanation == nil || a.Explanation.Addr.String() != addr || len(a.Explanation.Holders) != 1 {
		t.Errorf("search port-1: %+v", a)
	}
	if a := search("n1"); a.Kind != "host" || a.Host == nil || len(a.Host.Blocks) != 1 || a.Host.Groups["pods"] != "rack-1" {
		t.Errorf("search n1: %+v", a)
	}
	if a := search("nosuch"); a.Kind != "none" || !strings.Contains(a.Message, "nosuch") {
		t.Errorf("search nosuch: %+v", a)
	}
	if code, _ := s.getText(n1Token, "/ui/search?q="); code != http.StatusBadRequest {
		t.Errorf("empty search: %d", code)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// The event stream says "change" after a write to the state, without a
// reload of the page and long before the status poll would.
func TestUIEventsFollowTheState(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.setup()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/ui/events", nil)
	req.Header.Set("Authorization", "Bearer "+n1Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- ev
			}
		}
	}()
	if ev := <-events; ev != "hello" {
		t.Fatalf("first event %q, want hello", ev)
	}
	start := time.Now()
	s.must(n1Token, "POST", "/v1/hosts/n1/blocks", map[string]any{"network": "pods"}, 201)
	select {
	case ev := <-events:
		if ev != "change" {
			t.Fatalf("event %q after a claim, want change", ev)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("change came %s after the claim, want within a second", d)
		}
	case <-ctx.Done():
		t.Fatal("no change event after a block claim")
	}
}

// StopStreams (the server's shutdown hook) ends open event streams, so a
// shutdown is not held by open pages.
func TestUIStopStreamsEndsEvents(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	state, err := NewState(context.Background(), openBolt(t, t.TempDir()), log)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := ParseTokens([]byte(adminToken + " admin ops\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := NewAPI(state, auth, log)
	hs := httptest.NewServer(a)
	defer hs.Close()
	req, _ := http.NewRequest("GET", hs.URL+"/ui/events", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		close(ended)
	}()
	a.StopStreams()
	a.StopStreams() // twice is harmless
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the event stream is still open after StopStreams")
	}
}
