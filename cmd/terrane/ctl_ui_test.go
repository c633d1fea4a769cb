package main

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/terrane-net/terrane/internal/lab"
	"github.com/terrane-net/terrane/internal/uitest"
)

// startCtlUI runs `terrane ctl … ui --port 0` as the lab's admin and
// returns the URL it prints; the listener is stopped at the end of the
// test.
func startCtlUI(t *testing.T, bin string, n lab.Names) string {
	t.Helper()
	args := strings.Fields(lab.UICommand(n))[1:] // without "terrane"
	cmd := exec.Command(filepath.Join(bin, "terrane"), append(args, "--port", "0")...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u := regexp.MustCompile(`http://127\.0\.0\.1:\d+/ui/\?key=[0-9a-f]{32}`).FindString(sc.Text()); u != "" {
				urls <- u
			}
		}
		close(urls)
	}()
	select {
	case u, ok := <-urls:
		if !ok {
			t.Fatalf("terrane ctl ui printed no URL: %s", stderr.String())
		}
		return u
	case <-time.After(30 * time.Second):
		t.Fatalf("terrane ctl ui printed no URL within 30 s: %s", stderr.String())
	}
	return ""
}

// The topology page of a running lab in a real browser, through `terrane
// ctl ui`: the three-racks lab's tree, ToR gauges, BGP sessions and a
// search; then the lab changes — a pod is added, a host's agent is killed
// — and the page follows without a reload. Screenshots go to
// $TERRANE_ARTIFACTS (or the test's temporary directory).
func TestPrivilegedUILab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create network namespaces; run `go test` as root")
	}
	for _, tool := range []string{"ip", "bird"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("privileged test: needs %s (iproute2, bird2)", tool)
		}
	}
	ctx := uitest.Browser(t, 1280, 1000)
	artifacts := uitest.Artifacts(t)
	bin := buildLabBinaries(t)
	name, dir, run := labCLI(t, bin, "u")
	r := run("lab", "up", "--scenario", "three-racks")
	if r.code != 0 {
		t.Fatalf("lab up: exit %d\n%s\n%s", r.code, r.stderr, r.stdout)
	}
	names := lab.Names{Lab: name, Dir: dir}
	if hint := "topology page in a browser: " + lab.UICommand(names); !strings.Contains(r.stdout, hint) {
		t.Errorf("the lab's report does not say how to open the page (%q):\n%s", hint, r.stdout)
	}

	url := startCtlUI(t, bin, names)
	wait := func(what, expr string, timeout time.Duration) {
		t.Helper()
		if err := uitest.WaitFor(ctx, expr, timeout); err != nil {
			html, _ := uitest.Eval[string](ctx, `document.querySelector("main").innerText`)
			uitest.Screenshot(ctx, t, artifacts, "lab-failed")
			t.Fatalf("%s: %v (waited for %s)\npage:\n%s", what, err, expr, html)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	wait("the page", `document.body.dataset.ready === "1"`, 30*time.Second)

	// The tree: three racks of two hosts and two blocks each; a ToR gauge
	// per rack with its hosts' two announcements; six sessions up.
	for i := 1; i <= 3; i++ {
		wait(fmt.Sprintf("rack-%d in the tree", i), fmt.Sprintf(`(d => d && d.dataset.hosts === "2" && d.dataset.blocks === "2")(document.querySelector('details[data-key="fabric/rack-%d"]'))`, i), 10*time.Second)
		wait(fmt.Sprintf("the ToR gauge of rack-%d", i), fmt.Sprintf(`(g => g && g.dataset.used === "2" && g.dataset.budget === "0")(document.querySelector('.gauge[data-kind="bgp"][data-name="ToR of rack-%d"]'))`, i), 10*time.Second)
	}
	wait("six established BGP sessions", `document.querySelectorAll('.bgprow[data-state="established"]').length === 6`, 60*time.Second)

	// Search a pod: the same answer as ctl endpoints explain.
	if _, err := uitest.Eval[bool](ctx, `(() => { document.getElementById("search").value = "c1"; document.getElementById("search-form").requestSubmit(); return true; })()`); err != nil {
		t.Fatal(err)
	}
	wait("the search answer for pod c1", `(a => !a.hidden && a.dataset.kind === "pod" && a.textContent.includes("is held by pod default/c1") && a.textContent.includes("group rack-3") && a.textContent.includes("host r3-host-1's, issued by the agent"))(document.getElementById("answer"))`, 10*time.Second)
	wait("rack-3's hosts", `(() => { const d = document.querySelector('details[data-key="fabric/rack-3"]'); d.open = true;
		return d.querySelectorAll(".hrow").length === 2 && d.querySelector('.hrow[data-host="r3-host-1"]').textContent.includes("1/16"); })()`, 10*time.Second)
	uitest.Screenshot(ctx, t, artifacts, "ui-lab-three-racks")

	// A new pod: rack-3's count and r3-host-1's block follow, no reload.
	if _, err := uitest.Eval[bool](ctx, `window.noReload = true`); err != nil {
		t.Fatal(err)
	}
	before, err := uitest.Eval[string](ctx, `document.querySelector('details[data-key="fabric/rack-3"]').dataset.allocated`)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if r := run("lab", "add-pod", "c3", "--host", "r3-host-1"); r.code != 0 {
		t.Fatalf("lab add-pod: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	added := time.Now()
	wait("the new pod on the page", fmt.Sprintf(`document.querySelector('details[data-key="fabric/rack-3"]').dataset.allocated !== %q &&
		document.querySelector('.hrow[data-host="r3-host-1"]').textContent.includes("2/16") && window.noReload === true`, before), 30*time.Second)
	t.Logf("the page showed the new pod %s after add-pod returned (%s after it started)", time.Since(added).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// A failed host: its agent killed, the page marks it silent once its
	// last sign of life is older than ui.SilentAfter.
	st, err := lab.LoadState(name, dir)
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	for _, p := range st.Processes {
		if p.Role == "agent" && p.Node == "r2-host-2" {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
				t.Fatalf("kill the agent of r2-host-2: %v", err)
			}
			killed = true
		}
	}
	if !killed {
		t.Fatalf("no agent process of r2-host-2 in the lab's state: %+v", st.Processes)
	}
	if _, err := uitest.Eval[bool](ctx, `(() => { document.querySelector('details[data-key="fabric/rack-2"]').open = true; return true; })()`); err != nil {
		t.Fatal(err)
	}
	wait("r2-host-2 silent", `document.getElementById("silentcount").textContent === "1" &&
		document.querySelector('.hrow[data-host="r2-host-2"]').classList.contains("silent") &&
		document.querySelector('.bgprow[data-host="r2-host-2"]').hasAttribute("data-stale") &&
		document.getElementById("bgpup").textContent === "5" && window.noReload === true`, 120*time.Second)
	refreshes, _ := uitest.Eval[int](ctx, `terrane.refreshes`)
	t.Logf("the page marked r2-host-2 silent; %d live refreshes, no reload", refreshes)
	uitest.Screenshot(ctx, t, artifacts, "ui-lab-host-failed")
}

// ctl ui's listener forwards the page's reads only, only for a loopback
// Host and only to the holder of the run's key: no write to the API, no
// read outside /ui/, no rebound DNS name, nothing for another local user.
func TestCtlUIForwardsOnlyThePagesReads(t *testing.T) {
	var seen []string
	const key = "0123456789abcdef0123456789abcdef"
	h := uiProxy(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = append(seen, r.Method+" "+r.URL.Path) }), key)

	// The printed URL: a cookie and a redirect to the page without the key.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:8001/ui/?key="+key, nil))
	cookies := rec.Result().Cookies()
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/ui/" || len(cookies) != 1 || cookies[0].Value != key || !cookies[0].HttpOnly {
		t.Fatalf("the printed URL: %d, Location %q, cookies %v; want 302 to /ui/ with the key as an HttpOnly cookie", rec.Code, rec.Header().Get("Location"), cookies)
	}
	for _, c := range []struct {
		name, value string
		query       string
		want        int
	}{
		{"", "", "", http.StatusUnauthorized},                                          // no key
		{uiKeyCookie, "ffffffffffffffffffffffffffffffff", "", http.StatusUnauthorized}, // another key
		{"", "", "?key=ffffffffffffffffffffffffffffffff", http.StatusUnauthorized},
	} {
		req := httptest.NewRequest("GET", "http://127.0.0.1:8001/ui/"+c.query, nil)
		if c.name != "" {
			req.AddCookie(&http.Cookie{Name: c.name, Value: c.value})
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("cookie %q query %q: %d, want %d", c.value, c.query, rec.Code, c.want)
		}
	}
	if len(seen) != 0 {
		t.Fatalf("forwarded %q without the key", seen)
	}

	for _, c := range []struct {
		method, host, path string
		want               int
	}{
		{"GET", "127.0.0.1:8001", "/ui/", 200},
		{"GET", "localhost:8001", "/ui/events", 200},
		{"GET", "[::1]:8001", "/ui/search", 200},
		{"HEAD", "127.0.0.1:8001", "/ui/view", 200},
		{"GET", "127.0.0.1:8001", "/", http.StatusFound},
		{"POST", "127.0.0.1:8001", "/v1/topology", http.StatusForbidden},
		{"GET", "127.0.0.1:8001", "/v1/hosts", http.StatusForbidden},
		{"DELETE", "127.0.0.1:8001", "/ui/", http.StatusForbidden},
		{"GET", "evil.example:8001", "/ui/", http.StatusForbidden},
		{"GET", "10.0.0.1:8001", "/ui/", http.StatusForbidden},
	} {
		req := httptest.NewRequest(c.method, "http://"+c.host+c.path, nil)
		req.AddCookie(cookies[0])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s (Host %s): %d, want %d", c.method, c.path, c.host, rec.Code, c.want)
		}
	}
	if want := []string{"GET /ui/", "GET /ui/events", "GET /ui/search", "HEAD /ui/view"}; !slices.Equal(seen, want) {
		t.Errorf("forwarded %q, want %q", seen, want)
	}
}
