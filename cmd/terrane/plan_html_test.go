package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/terrane-net/terrane/internal/uitest"
)

// plan --html writes the page of the simulated state, also when the plan
// does not fit (exit 1), and nothing when the input is invalid (exit 2).
func TestPlanHTML(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "aws.html")
	out, code, _ := runCLI(t, "plan", "--topology", example("aws-3zone.yaml"), "--html", page)
	if code != 0 || !strings.Contains(out, "wrote the topology page to "+page) {
		t.Fatalf("plan --html: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<title>Terrane — plan of aws-3zone.yaml</title>", `data-key="vpc/us-east-1a/subnet-1"`, `data-kind="vpc"`, "the plan fits", `"n":"us-east-1a.subnet-1"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(string(b), "http://") || strings.Contains(string(b), "https://") {
		t.Errorf("the page refers to something outside itself")
	}

	over := filepath.Join(dir, "over.html")
	if out, code, _ := runCLI(t, "plan", "--topology", example("aws-3zone.yaml"), "--route-budget", "vpc=2", "--html", over); code != 1 {
		t.Fatalf("plan over budget: exit %d\n%s", code, out)
	}
	if b, err := os.ReadFile(over); err != nil || !strings.Contains(string(b), "the plan does NOT fit") {
		t.Errorf("page of a plan that does not fit: %v", err)
	}
	bad := filepath.Join(dir, "bad.html")
	if _, code, _ := runCLI(t, "plan", "--topology", example("aws-3zone.yaml"), "--skew", "2", "--html", bad); code != 2 {
		t.Errorf("invalid plan: exit %d", code)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("an invalid plan wrote a page: %v", err)
	}
}

// bigPlan writes a topology of 10 zones × 10 racks (bgp) and 5,000 hosts:
// 1,000 in zone-1/rack-1, the rest spread over the other racks.
func bigPlan(t *testing.T, dir string) (topo, hosts string) {
	var tb strings.Builder
	tb.WriteString("apiVersion: terrane.io/v1\nkind: Topology\nnetworks:\n  - {name: dc, cidr: 10.0.0.0/8, blockSize: 26}\ntopologies:\n  - networks: [dc]\n    groups:\n")
	for z := 1; z <= 10; z++ {
		fmt.Fprintf(&tb, "      - name: zone-%d\n        assignment: {matchLabels: {zone: \"%d\"}}\n        routing: bgp\n        groups:\n", z, z)
		for r := 1; r <= 10; r++ {
			fmt.Fprintf(&tb, "          - {name: rack-%d, assignment: {matchLabels: {rack: \"%d\"}}}\n", r, r)
		}
	}
	var hb strings.Builder
	n := 0
	add := func(z, r, i int) {
		n++
		fmt.Fprintf(&hb, "- {name: z%d-r%d-h%d, ip: 172.%d.%d.%d, labels: {zone: \"%d\", rack: \"%d\"}}\n", z, r, i, 16+z, r*4+i/250, i%250+1, z, r)
	}
	for i := range 1000 {
		add(1, 1, i)
	}
	for k := 0; n < 5000; k++ {
		z, r := k%10+1, (k/10)%10+1
		if z == 1 && r == 1 {
			continue
		}
		add(z, r, 1000+k)
	}
	topo, hosts = filepath.Join(dir, "dc.yaml"), filepath.Join(dir, "hosts.yaml")
	if err := os.WriteFile(topo, []byte(tb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hosts, []byte(hb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return topo, hosts
}

// The page of a 5,000-host plan in a real browser: it becomes interactive
// within bounds, opening the group of 1,000 hosts draws only the rows in
// view, a search answers from the page, and no task of the page's own
// blocks the tab for long (long tasks as the browser measures them).
func TestPlanHTMLBrowser5000Hosts(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	dir := t.TempDir()
	topo, hosts := bigPlan(t, dir)
	page := filepath.Join(dir, "plan.html")
	start := time.Now()
	if out, code, _ := runCLI(t, "plan", "--topology", topo, "--hosts", hosts, "--pods-per-host", "10", "--html", page); code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}
	st, _ := os.Stat(page)
	t.Logf("plan of 5,000 hosts and its page (%d KiB): %s", st.Size()>>10, time.Since(start).Round(time.Millisecond))

	ctx := uitest.Browser(t, 1280, 900)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page)); err != nil {
		t.Fatal(err)
	}
	if err := uitest.WaitFor(ctx, `document.body.dataset.ready === "1"`, 30*time.Second); err != nil {
		t.Fatalf("the page never became ready: %v", err)
	}
	type timing struct {
		Interactive, Ready float64
		Tasks              int
	}
	load, err := uitest.Eval[timing](ctx, `({interactive: performance.getEntriesByType("navigation")[0].domInteractive, ready: terrane.readyAt, tasks: terrane.longTasks.length})`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("load: DOM interactive %.0f ms, script ready %.0f ms", load.Interactive, load.Ready)
	if load.Ready > 10000 {
		t.Errorf("the page took %.0f ms to become interactive, want under 10 s", load.Ready)
	}
	if n, err := uitest.Eval[int](ctx, `document.querySelectorAll("details.group").length`); err != nil || n != 110 {
		t.Errorf("groups drawn: %d (%v), want 110", n, err)
	}
	if n, err := uitest.Eval[int](ctx, `document.querySelectorAll("details.group[open]").length`); err != nil || n != 0 {
		t.Errorf("groups open at first: %d (%v), want none (collapsed by default)", n, err)
	}

	type expanded struct {
		MS          float64
		Rows, Count int
		Last        string
	}
	exp, err := uitest.Eval[expanded](ctx, `new Promise(res => {
		document.querySelector('details[data-key="dc/zone-1"]').open = true;
		const d = document.querySelector('details[data-key="dc/zone-1/rack-1"]');
		const t0 = performance.now();
		d.addEventListener("toggle", () => requestAnimationFrame(() => {
			const box = d.querySelector(".hosts");
			const ms = performance.now() - t0;
			box.scrollTop = box.scrollHeight;
			requestAnimationFrame(() => requestAnimationFrame(() => {
				const rows = box.querySelectorAll(".hrow");
				res({ms, rows: rows.length, count: +box.dataset.count, last: rows[rows.length - 1].dataset.host});
			}));
		}), {once: true});
		d.open = true;
	})`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("open the group of %d hosts: %.0f ms, %d rows drawn; scrolled to the end: %s", exp.Count, exp.MS, exp.Rows, exp.Last)
	if exp.Count != 1000 || exp.Rows == 0 || exp.Rows > 60 {
		t.Errorf("the group of 1,000 hosts drew %d rows of %d; want only those in view (a virtualised list)", exp.Rows, exp.Count)
	}
	if exp.Last != "z1-r1-h999" {
		t.Errorf("scrolled to the end, the last row drawn is %q, want z1-r1-h999", exp.Last)
	}
	if exp.MS > 1000 {
		t.Errorf("opening the group took %.0f ms, want under 1 s", exp.MS)
	}

	type answer struct {
		MS         float64
		Kind, Text string
		Want       string
	}
	ans, err := uitest.Eval[answer](ctx, `(() => {
		const hs = JSON.parse(document.getElementById("hosts-data").textContent);
		const h = hs[hs.length - 1], addr = h.b[0].p.split("/")[0];
		document.getElementById("search").value = addr;
		const t0 = performance.now();
		document.getElementById("search-form").requestSubmit();
		const a = document.getElementById("answer");
		return {ms: performance.now() - t0, kind: a.dataset.kind, text: a.textContent, want: h.n};
	})()`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("search an address of host %s: %.0f ms: %s", ans.Want, ans.MS, ans.Text)
	if ans.Kind != "address" || !strings.Contains(ans.Text, "host "+ans.Want+"'s") {
		t.Errorf("search answer %q (%s), want the block of host %s", ans.Text, ans.Kind, ans.Want)
	}
	if ans.MS > 1000 {
		t.Errorf("the search took %.0f ms, want under 1 s", ans.MS)
	}
	hostAns, err := uitest.Eval[string](ctx, `(() => { document.getElementById("search").value = "z7-r3-h1026";
		document.getElementById("search-form").requestSubmit(); return document.getElementById("answer").textContent; })()`)
	if err != nil || !strings.Contains(hostAns, "host z7-r3-h1026") || !strings.Contains(hostAns, "network dc: group zone-7/rack-3") {
		t.Errorf("search a host: %q %v", hostAns, err)
	}
	// The host's name in the answer leads to its row.
	row, err := uitest.Eval[string](ctx, `(() => { document.querySelector('#answer [data-reveal="z7-r3-h1026"]').click();
		return new Promise(res => requestAnimationFrame(() => { const r = document.querySelector('.hrow.flash');
			res(location.hash + " " + (r ? r.dataset.host : "none") + " " + (r && r.offsetParent !== null)); })); })()`)
	if want := "#zoom=dc%2Fzone-7%2Frack-3 z7-r3-h1026 true"; err != nil || row != want {
		t.Errorf("following the host's link: %q %v", row, err)
	}

	// Zoom into one rack: only it and the way to it stay; the zoom is in
	// the URL's fragment.
	type zoomed struct {
		Visible []string
		Hash    string
		Open    bool
	}
	z, err := uitest.Eval[zoomed](ctx, `(() => {
		document.querySelector('[data-zoom="dc/zone-3/rack-4"]').click();
		return new Promise(res => requestAnimationFrame(() => res({
			visible: [...document.querySelectorAll("details.group")].filter(d => d.offsetParent !== null).map(d => d.dataset.key),
			hash: location.hash, open: document.querySelector('details[data-key="dc/zone-3/rack-4"]').open})));
	})()`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(z.Visible, " ") != "dc/zone-3 dc/zone-3/rack-4" || z.Hash != "#zoom="+strings.ReplaceAll("dc/zone-3/rack-4", "/", "%2F") || !z.Open {
		t.Errorf("zoomed into zone-3/rack-4: visible %q, fragment %q, open %v", z.Visible, z.Hash, z.Open)
	}

	// Tasks of 50 ms or more since the load, as the browser reports them.
	worst, err := uitest.Eval[float64](ctx, fmt.Sprintf(`Math.max(0, ...terrane.longTasks.slice(%d))`, load.Tasks))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("longest task after the load: %.0f ms", worst)
	if worst > 500 {
		t.Errorf("a task blocked the tab for %.0f ms after the load, want under 500 ms", worst)
	}
	uitest.Screenshot(ctx, t, uitest.Artifacts(t), "plan-5000-hosts")
}
