package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a fake clock the test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time       { return c.t }
func (c *clock) tick(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func frames(out string) []string      { return strings.Split(out, "\r")[1:] }
func countRedraws(out string) int {
	return strings.Count(out, "\x1b[K") - strings.Count(out, "\r\x1b[K")
}
func lines(out string) []string { return strings.Split(strings.TrimSuffix(out, "\n"), "\n") }
func terminal(c *clock, w int) Options {
	return Options{Mode: ModeBar, Title: "lab up", Width: w, Now: c.now}
}
func lastFrame(t *testing.T, out string) string {
	t.Helper()
	f := frames(out)
	if len(f) == 0 {
		t.Fatalf("no frame drawn: %q", out)
	}
	return strings.TrimSuffix(f[len(f)-1], "\x1b[K")
}

func TestProgressBarFormat(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	b := New(&out, terminal(c, 100))
	b.SetTotal(12)
	b.Step("starting agents")
	c.tick(10 * time.Second)
	b.Add(5)
	want := "lab up 10s [########............] 5/12  41% 2.0s each ETA 14s  starting agents"
	if got := lastFrame(t, out.String()); got != want {
		t.Errorf("frame\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(out.String(), "[  0.0s] starting agents\n") {
		t.Errorf("the step is not printed as a line above the bar: %q", out.String())
	}

	// Unicode, a fast rate, and a narrow terminal cuts the line.
	c, out = newClock(), bytes.Buffer{}
	o := terminal(c, 59)
	o.Unicode = true
	b = New(&out, o)
	b.SetTotal(400)
	b.Step("creating 400 pods through libcni")
	c.tick(4 * time.Second)
	b.Add(100)
	got := lastFrame(t, out.String())
	if want := "lab up 4s ▕███░░░░░░░▏ 100/400  25% 25.0/s ETA 12s  creat…"; got != want {
		t.Errorf("narrow frame\n got %q\nwant %q", got, want)
	}
	if n := len([]rune(got)); n != 58 {
		t.Errorf("frame is %d runes on a 59-column terminal: want 58 (the cursor's column stays free)", n)
	}
}

func TestProgressETA(t *testing.T) {
	for _, tc := range []struct {
		done, total int
		elapsed     time.Duration
		want        time.Duration
		ok          bool
	}{
		{0, 10, time.Second, 0, false},
		{1, 10, time.Second, 9 * time.Second, true},
		{5, 10, 10 * time.Second, 10 * time.Second, true},
		{3, 4, 90 * time.Second, 30 * time.Second, true},
		{10, 10, time.Minute, 0, true},
		{12, 10, time.Minute, 0, true},
		{4, 0, time.Minute, 0, false},
	} {
		got, ok := ETA(tc.done, tc.total, tc.elapsed)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ETA(%d, %d, %s) = %s, %v; want %s, %v", tc.done, tc.total, tc.elapsed, got, ok, tc.want, tc.ok)
		}
	}
	for d, want := range map[time.Duration]string{9 * time.Second: "9s", 65 * time.Second: "1m05s", 3720 * time.Second: "1h02m", 1400 * time.Millisecond: "1s"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%s) = %q, want %q", d, got, want)
		}
	}
	// Before the first unit the bar says it does not know.
	c := newClock()
	var out bytes.Buffer
	b := New(&out, terminal(c, 100))
	b.SetTotal(3)
	if f := lastFrame(t, out.String()); !strings.HasSuffix(f, "0/3   0% ETA ?") {
		t.Errorf("frame before the first unit: %q", f)
	}
}

// TestProgressRedrawRate: a run adding a unit every 10 ms for 2 s redraws
// about 20 times (10 per second), not 200, and shows the last count.
func TestProgressRedrawRate(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	b := New(&out, terminal(c, 100))
	b.SetTotal(200)
	for range 200 {
		c.tick(10 * time.Millisecond)
		b.Add(1)
	}
	n := countRedraws(out.String())
	if n < 18 || n > 22 {
		t.Errorf("%d redraws in 2 s: want about 20 (at most 10 a second)", n)
	}
	if f := lastFrame(t, out.String()); !strings.Contains(f, "200/200 100%") {
		t.Errorf("the last frame does not show the end: %q", f)
	}
	b.Done()
	if !strings.HasSuffix(out.String(), "\r\x1b[K") {
		t.Errorf("Done does not erase the bar: %q", out.String()[max(0, out.Len()-40):])
	}
	before := out.Len()
	b.Add(1)
	b.Done()
	if out.Len() != before {
		t.Errorf("the bar drew after Done: %q", out.String()[before:])
	}
}

// TestProgressLogAboveBar: a line printed during the run erases the bar,
// stands on its own line, and the bar comes back below it.
func TestProgressLogAboveBar(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	b := New(&out, terminal(c, 100))
	b.SetTotal(2)
	b.Add(1)
	b.Logf("round %d/%d: %.2f Gbit/s", 1, 2, 16.2)
	s := out.String()
	i := strings.Index(s, "\r\x1b[Kround 1/2: 16.20 Gbit/s\n\r")
	if i < 0 {
		t.Fatalf("the line is not printed over an erased bar, with the bar redrawn after it: %q", s)
	}
	if f := lastFrame(t, s); !strings.Contains(f, "1/2") {
		t.Errorf("bar not redrawn after the line: %q", f)
	}
}

func TestProgressPlainHasNoCarriageReturns(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	b := New(&out, Options{Mode: ModePlain, Title: "bench", Width: 80, Now: c.now})
	b.SetTotal(1000)
	b.Step("round 1")
	for range 1000 {
		c.tick(10 * time.Millisecond)
		b.Add(1)
	}
	b.Logf("a result line")
	b.Done()
	s := out.String()
	if strings.ContainsAny(s, "\r\x1b") {
		t.Fatalf("plain output has a carriage return or an escape: %q", s)
	}
	ls := lines(s)
	// The step, one line per 10 %, the log line.
	if len(ls) != 12 {
		t.Errorf("%d lines, want 12 (a step, ten at each 10 %%, a log line):\n%s", len(ls), s)
	}
	if ls[0] != "[  0.0s] round 1  (0/1000 done, ETA ?)" {
		t.Errorf("step line %q", ls[0])
	}
	if ls[1] != "[  1.0s] 100/1000 (10%), 100/s, ETA 9s: round 1" {
		t.Errorf("first count line %q", ls[1])
	}
	if ls[10] != "[ 10.0s] 1000/1000 (100%), 100/s, ETA 0s: round 1" {
		t.Errorf("last count line %q", ls[10])
	}
}

// TestProgressPlainEveryFiveSeconds: a slow run prints a count line every 5
// s even between the 10 % marks, and no more often.
func TestProgressPlainEveryFiveSeconds(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	b := New(&out, Options{Mode: ModePlain, Now: c.now})
	b.SetTotal(100)
	for range 9 { // one unit a second: 9 % after 9 s
		c.tick(time.Second)
		b.Add(1)
	}
	ls := lines(out.String())
	if len(ls) != 1 || !strings.HasPrefix(ls[0], "[  5.0s] 5/100 (5%)") {
		t.Errorf("after 9 s of a slow run: want one line at 5 s, got %q", ls)
	}
}

func TestProgressNoneAndNil(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	b := New(&out, Options{Mode: ModeNone, Now: c.now})
	b.SetTotal(3)
	b.Step("x")
	b.Logf("y")
	b.Add(3)
	b.Done()
	if out.Len() != 0 {
		t.Errorf("none wrote %q", out.String())
	}
	var nb *Bar
	nb.SetTotal(1)
	nb.Step("x")
	nb.Add(1)
	nb.Logf("y")
	nb.Done()
	if nb.Mode() != ModeNone {
		t.Errorf("a nil bar's mode is %s", nb.Mode())
	}
}

func TestProgressModes(t *testing.T) {
	for s, want := range map[string]Mode{"": ModeAuto, "auto": ModeAuto, "BAR": ModeBar, "plain": ModePlain, "none": ModeNone, "off": ModeNone} {
		if m, err := ParseMode(s); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %s, %v; want %s", s, m, err, want)
		}
	}
	if _, err := ParseMode("fancy"); err == nil || !strings.Contains(err.Error(), `TERRANE_PROGRESS="fancy": use auto, bar, plain or none`) {
		t.Errorf("ParseMode(fancy) error %v: want it to name the variable and the choices", err)
	}
	if m := Resolve(ModeAuto, &bytes.Buffer{}); m != ModePlain {
		t.Errorf("auto on a buffer resolves to %s, want plain", m)
	}
	if m := Resolve(ModeBar, &bytes.Buffer{}); m != ModeBar {
		t.Errorf("bar asked for resolves to %s", m)
	}
	t.Setenv("COLUMNS", "132")
	if w := Width(&bytes.Buffer{}); w != 132 {
		t.Errorf("Width with COLUMNS=132 on a non-terminal = %d", w)
	}
	t.Setenv("COLUMNS", "")
	if w := Width(&bytes.Buffer{}); w != 80 {
		t.Errorf("Width by default = %d, want 80", w)
	}
	t.Setenv("LC_ALL", "")
	t.Setenv("LC_CTYPE", "")
	t.Setenv("LANG", "en_US.UTF-8")
	if !UTF8() {
		t.Error("LANG=en_US.UTF-8 is not UTF-8")
	}
	t.Setenv("LC_ALL", "C")
	if UTF8() {
		t.Error("LC_ALL=C overrides LANG and is not UTF-8")
	}
}

func TestMeter(t *testing.T) {
	for _, tc := range []struct {
		frac    float64
		cells   int
		unicode bool
		want    string
	}{
		{0, 10, false, "[..........]"},
		{0.62, 10, false, "[######....]"},
		{1, 10, false, "[##########]"},
		{0.001, 10, false, "[#.........]"},
		{0.999, 10, false, "[#########.]"},
		{1.7, 4, false, "[####]"},
		{-1, 4, false, "[....]"},
		{0.5, 4, true, "▕██░░▏"},
	} {
		if got := Meter(tc.frac, tc.cells, tc.unicode); got != tc.want {
			t.Errorf("Meter(%v, %d, %v) = %q, want %q", tc.frac, tc.cells, tc.unicode, got, tc.want)
		}
	}
}

// TestProgressPhases: a second SetTotal starts a new count; the rate and
// the estimate measure it alone, the clock shown runs on.
func TestProgressPhases(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	b := New(&out, terminal(c, 100))
	b.SetTotal(10)
	c.tick(100 * time.Second) // a slow first phase
	b.Add(10)
	b.SetTotal(4)
	c.tick(2 * time.Second)
	b.Add(1)
	want := "lab up 1m42s [#####...............] 1/4  25% 2.0s each ETA 6s"
	if got := lastFrame(t, out.String()); got != want {
		t.Errorf("second phase\n got %q\nwant %q", got, want)
	}
}

// TestProgressPlainQuickRun: a run whose units come faster than a second
// apart prints its steps and no count lines between them.
func TestProgressPlainQuickRun(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	b := New(&out, Options{Mode: ModePlain, Now: c.now})
	b.SetTotal(16)
	for i := range 8 {
		b.Step("step %d", i)
		c.tick(40 * time.Millisecond)
		b.Add(1)
		if i == 5 {
			for range 8 { // pods within a step
				c.tick(10 * time.Millisecond)
				b.Add(1)
			}
		}
	}
	if ls := lines(out.String()); len(ls) != 8 {
		t.Errorf("%d lines, want the 8 steps alone:\n%s", len(ls), out.String())
	}
}

// TestProgressTransient: a transient bar draws nothing for its first
// second, prints no step lines, and a run that ends before then writes
// nothing at all.
func TestProgressTransient(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	o := terminal(c, 100)
	o.Transient = true
	b := New(&out, o)
	b.SetTotal(100)
	b.Step("network vpc: filling 10.30.0.0/16")
	c.tick(500 * time.Millisecond)
	b.Add(50)
	if out.Len() != 0 {
		t.Fatalf("drew within the first second: %q", out.String())
	}
	c.tick(600 * time.Millisecond)
	b.Add(10)
	if f := lastFrame(t, out.String()); !strings.Contains(f, "60/100") || !strings.HasSuffix(f, "network vpc: filling 10.30.0.0/16") {
		t.Errorf("after a second: frame %q", f)
	}
	if strings.Contains(out.String(), "\n") {
		t.Errorf("a transient bar printed a line: %q", out.String())
	}
	b.Done()

	out.Reset()
	c = newClock()
	o.Now = c.now
	b = New(&out, o)
	b.SetTotal(3)
	b.Step("quick")
	b.Add(3)
	b.Done()
	if out.Len() != 0 {
		t.Errorf("a quick transient run wrote %q", out.String())
	}
}

// frameWriter signals every write that ends in a drawn frame.
type frameWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	frames chan struct{}
}

func (w *frameWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.HasSuffix(p, []byte("\x1b[K")) && !bytes.Equal(p, []byte("\r\x1b[K")) {
		select {
		case w.frames <- struct{}{}:
		default:
		}
	}
	return w.buf.Write(p)
}

// TestProgressRefresh: while a step waits, the bar is redrawn by itself
// (the clock moves); Done stops it and erases the bar.
func TestProgressRefresh(t *testing.T) {
	w := &frameWriter{frames: make(chan struct{}, 1)}
	b := New(w, Options{Mode: ModeBar, Width: 80, Refresh: time.Millisecond})
	b.SetTotal(2)
	<-w.frames // SetTotal's frame
	<-w.frames // a frame no event asked for
	b.Done()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !bytes.HasSuffix(w.buf.Bytes(), []byte("\r\x1b[K")) {
		t.Errorf("Done left the bar: %q", w.buf.String())
	}
}
