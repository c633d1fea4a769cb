// Package progress shows a long run to the person waiting for it: on a
// terminal one line redrawn in place (a bar, done of total, the rate, an
// estimate of the time left and the current step), elsewhere plain lines at
// each step and at a bounded rate in between. It writes to the writer it is
// given (the commands give it stderr, so stdout stays the result's); it
// never touches the run it follows.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Redraw bounds on a terminal and lines in plain mode.
const (
	// MinRedraw is the least time between two redraws of the bar (10/s).
	MinRedraw = 100 * time.Millisecond
	// PlainEvery is the longest a plain run stays silent while counting.
	PlainEvery = 5 * time.Second
	// PlainShare is the share of the total that earns a plain line.
	PlainShare = 0.10
	// PlainGap is the least time between a plain count line and the line
	// before it: a quick run prints its steps and nothing more.
	PlainGap = time.Second
	// TransientDelay is how long a Transient bar waits before it shows.
	TransientDelay = time.Second
)

// Options configure a Bar.
type Options struct {
	// Mode is ModeAuto, ModeBar, ModePlain or ModeNone; ModeAuto
	// decides by the writer (Resolve).
	Mode Mode
	// Title leads the bar (e.g. "lab up").
	Title string
	// Width is the terminal's width (0: Width(w)).
	Width int
	// Unicode draws the bar with block characters (default: ASCII).
	Unicode bool
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
	// Refresh redraws the bar this often while nothing happens, so the
	// clock and the estimate move (0: only on events). Ignored outside
	// Bar mode.
	Refresh time.Duration
	// Transient is for a command that is usually quick (plan): in Bar
	// mode the steps show in the bar alone, with no line each, and
	// nothing is drawn before TransientDelay — a quick run leaves no trace.
	Transient bool
}

// Bar follows a run of a known number of units (steps, pods, rounds). Its
// methods are safe for concurrent use; a nil *Bar does nothing.
type Bar struct {
	mu    sync.Mutex
	w     io.Writer
	o     Options
	mode  Mode
	start time.Time // New: the clock the lines show
	count time.Time // the last SetTotal: what the rate and the estimate measure

	total, done int
	step        string

	shown    bool      // the bar is on screen (Bar mode)
	lastDraw time.Time // last redraw (Bar) or count line (Plain)
	lastLine int       // done at the last plain count line
	stop     chan struct{}
	finished bool
}

// New starts a Bar writing to w. Call Done when the run ends.
func New(w io.Writer, o Options) *Bar {
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &Bar{w: w, o: o, mode: Resolve(o.Mode, w)}
	if b.o.Width <= 0 {
		b.o.Width = Width(w)
	}
	b.start = o.Now()
	b.count, b.lastDraw = b.start, b.start
	if b.mode == ModeBar && o.Refresh > 0 {
		b.stop = make(chan struct{})
		go b.refresh(o.Refresh)
	}
	return b
}

// Mode is the mode the Bar runs in (Auto resolved).
func (b *Bar) Mode() Mode {
	if b == nil {
		return ModeNone
	}
	return b.mode
}

func (b *Bar) refresh(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.mu.Lock()
			b.draw(false)
			b.mu.Unlock()
		}
	}
}

// SetTotal starts a count of n units (0: unknown): done goes back to 0,
// and the rate and the estimate are measured from now. A command of two
// phases (a lab up, then a benchmark's rounds) calls it once for each.
func (b *Bar) SetTotal(n int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total, b.done, b.lastLine = max(n, 0), 0, 0
	b.count = b.o.Now()
	b.draw(true)
}

// Step names what the run does now and prints it as a line: above the bar
// on a terminal; in plain mode with the count and the estimate.
func (b *Bar) Step(format string, args ...any) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.step = fmt.Sprintf(format, args...)
	if b.mode == ModeNone {
		return
	}
	now := b.o.Now()
	line := fmt.Sprintf("[%5.1fs] %s", now.Sub(b.start).Seconds(), b.step)
	if b.mode == ModePlain {
		if b.total > 0 {
			line += fmt.Sprintf("  (%d/%d done, ETA %s)", b.done, b.total, b.eta(now))
		}
		b.lastDraw, b.lastLine = now, b.done
	}
	if b.mode == ModeBar && b.o.Transient {
		b.draw(false)
		return
	}
	b.println(line)
}

// Logf prints a line as it is: above the bar on a terminal, as a line in
// plain mode.
func (b *Bar) Logf(format string, args ...any) {
	if b == nil || b.mode == ModeNone {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.println(fmt.Sprintf(format, args...))
}

// Add counts n more units done.
func (b *Bar) Add(n int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	if b.total > 0 && b.done > b.total {
		b.total = b.done // an estimate short of the truth grows, never shows >100 %
	}
	switch b.mode {
	case ModeBar:
		b.draw(false)
	case ModePlain:
		b.plainCount()
	}
}

// Done ends the run: the bar is erased (the lines above it stay), and the
// refresh stops. Later calls print nothing.
func (b *Bar) Done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	if b.stop != nil {
		close(b.stop)
	}
	b.clear()
}

// println writes a whole line, keeping the bar below it.
func (b *Bar) println(line string) {
	if b.finished {
		fmt.Fprintln(b.w, line)
		return
	}
	b.clear()
	fmt.Fprintln(b.w, line)
	b.draw(true)
}

// clear erases the bar from the terminal.
func (b *Bar) clear() {
	if b.shown {
		io.WriteString(b.w, "\r\x1b[K")
		b.shown = false
	}
}

// draw redraws the bar on a terminal, at most once per MinRedraw unless
// forced (after a line printed over it).
func (b *Bar) draw(force bool) {
	if b.mode != ModeBar || b.finished {
		return
	}
	now := b.o.Now()
	if !force && b.shown && now.Sub(b.lastDraw) < MinRedraw {
		return
	}
	if b.o.Transient && now.Sub(b.start) < TransientDelay {
		return
	}
	b.lastDraw = now
	io.WriteString(b.w, "\r"+b.render(now)+"\x1b[K")
	b.shown = true
}

// plainCount prints a count line when the run has gone another PlainShare
// of its total, or PlainEvery has passed, since the last line — but never
// within PlainGap of the line before.
func (b *Bar) plainCount() {
	if b.done == b.lastLine {
		return
	}
	now := b.o.Now()
	share := max(1, int(PlainShare*float64(b.total)))
	crossed := b.total > 0 && (b.done/share != b.lastLine/share || b.done == b.total)
	if since := now.Sub(b.lastDraw); since < PlainGap || (!crossed && since < PlainEvery) {
		return
	}
	b.lastDraw, b.lastLine = now, b.done
	fmt.Fprintln(b.w, b.countLine(now))
}

// countLine is a plain mode count line.
func (b *Bar) countLine(now time.Time) string {
	s := fmt.Sprintf("[%5.1fs] ", now.Sub(b.start).Seconds())
	if b.total > 0 {
		s += fmt.Sprintf("%d/%d (%d%%)", b.done, b.total, b.percent())
	} else {
		s += fmt.Sprintf("%d done", b.done)
	}
	if r := b.rate(now); r != "" {
		s += ", " + r
	}
	if b.total > 0 {
		s += ", ETA " + b.eta(now)
	}
	if b.step != "" {
		s += ": " + b.step
	}
	return s
}

// render is the bar's line, cut to the terminal's width:
//
//	lab up   12s [#######.............] 5/12  41% 0.4/s ETA 17s  starting agents
func (b *Bar) render(now time.Time) string {
	var s strings.Builder
	if b.o.Title != "" {
		s.WriteString(b.o.Title + " ")
	}
	s.WriteString(formatDuration(now.Sub(b.start)))
	if b.total > 0 {
		cells := 20
		if b.o.Width < 60 {
			cells = 10
		}
		fmt.Fprintf(&s, " %s %d/%d %3d%%", Meter(float64(b.done)/float64(b.total), cells, b.o.Unicode), b.done, b.total, b.percent())
		if r := b.rate(now); r != "" {
			s.WriteString(" " + r)
		}
		s.WriteString(" ETA " + b.eta(now))
	} else if b.done > 0 {
		fmt.Fprintf(&s, " %d done", b.done)
	}
	// The figures stay whole; the step's name is cut to what is left.
	head := truncate(s.String(), b.o.Width-1, b.o.Unicode)
	if left := b.o.Width - 1 - utf8.RuneCountInString(head) - 2; b.step != "" && left >= 4 {
		head += "  " + truncate(b.step, left, b.o.Unicode)
	}
	return head
}

func (b *Bar) percent() int {
	if b.total <= 0 {
		return 0
	}
	return 100 * b.done / b.total
}

// rate is units per second, or seconds per unit when slower than one a
// second; empty before the first unit.
func (b *Bar) rate(now time.Time) string {
	el := now.Sub(b.count).Seconds()
	if b.done <= 0 || el <= 0 {
		return ""
	}
	r := float64(b.done) / el
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f/s", r)
	case r >= 1:
		return fmt.Sprintf("%.1f/s", r)
	}
	return fmt.Sprintf("%.1fs each", 1/r)
}

// eta is the time left at the average rate so far: (total-done) × elapsed
// ÷ done; "?" before the first unit.
func (b *Bar) eta(now time.Time) string {
	d, ok := ETA(b.done, b.total, now.Sub(b.count))
	if !ok {
		return "?"
	}
	return formatDuration(d)
}

// ETA estimates the time left when done of total units took elapsed, at
// the average rate so far. ok is false before the first unit.
func ETA(done, total int, elapsed time.Duration) (d time.Duration, ok bool) {
	if done <= 0 || total <= 0 {
		return 0, false
	}
	if done >= total {
		return 0, true
	}
	return time.Duration(float64(elapsed) * float64(total-done) / float64(done)), true
}

// formatDuration is 9s, 1m05s or 1h02m.
func formatDuration(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
}

// truncate cuts s to n runes, ending in … (or ~ without unicode) when cut.
func truncate(s string, n int, unicode bool) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	mark := "~"
	if unicode {
		mark = "…"
	}
	r := []rune(s)
	return string(r[:n-1]) + mark
}
