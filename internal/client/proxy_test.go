package client_test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/client"
)

// The proxy sends the client's token in place of whatever the browser
// sent, keeps the path and query, and passes server-sent events on as they
// come, not when the stream ends.
func TestProxyAuthenticatesAsTheClient(t *testing.T) {
	events := make(chan string)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui/events" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			for ev := range events {
				fmt.Fprintf(w, "event: %s\n\n", ev)
				w.(http.Flusher).Flush()
			}
			return
		}
		fmt.Fprintf(w, "%s %s %s cookie=%q", r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("Cookie"))
	}))
	defer srv.Close()
	c := newClient(t, client.Config{Server: srv.URL, Token: "caller-token"})
	proxy := httptest.NewServer(c.Proxy())
	defer proxy.Close()

	req, _ := http.NewRequest("GET", proxy.URL+"/ui/search?q=10.0.0.1", nil)
	req.Header.Set("Authorization", "Bearer browser-token")
	req.Header.Set("Cookie", "session=x")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&got)
	resp.Body.Close()
	if want := `GET /ui/search?q=10.0.0.1 Bearer caller-token cookie=""`; got.String() != want {
		t.Errorf("the server saw %q, want %q", got.String(), want)
	}

	resp, err = http.Get(proxy.URL + "/ui/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for _, ev := range []string{"hello", "change"} {
		events <- ev
		select {
		case l := <-lines:
			if l != "event: "+ev {
				t.Fatalf("through the proxy: %q, want event %s", l, ev)
			}
			<-lines // the blank line ending the event
		case <-time.After(10 * time.Second):
			t.Fatalf("event %s did not come through the proxy while the stream was open", ev)
		}
	}
	close(events)
}

// With several servers the proxy sends a read to the next when the first
// gives no answer, and passes on the answer of the one that answers.
func TestProxyFailsOver(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "live %s", r.URL.RequestURI())
	}))
	defer live.Close()
	c := newClient(t, client.Config{Server: dead.URL + "," + live.URL})
	proxy := httptest.NewServer(c.Proxy())
	defer proxy.Close()
	resp, err := http.Get(proxy.URL + "/ui/search?q=n1")
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&got)
	resp.Body.Close()
	if resp.StatusCode != 200 || got.String() != "live /ui/search?q=n1" {
		t.Fatalf("through the proxy: %d %q, want the live server's answer", resp.StatusCode, got.String())
	}
	if c.Server() != live.URL {
		t.Errorf("Server() = %s, want %s", c.Server(), live.URL)
	}
}
