package lab

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingMeter records what Up tells its Meter.
type countingMeter struct {
	mu          sync.Mutex
	total, done int
	totals      int // SetTotal calls
	steps       []string
	over        string // the first step at which done passed total
}

func (m *countingMeter) SetTotal(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.total = n
	m.totals++
}

func (m *countingMeter) Step(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.steps = append(m.steps, fmt.Sprintf(format, args...))
}

func (m *countingMeter) Add(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done += n
	if m.done > m.total && m.over == "" {
		m.over = fmt.Sprintf("%d of %d during %q", m.done, m.total, m.steps[len(m.steps)-1])
	}
}

// check fails unless the run set its total once and ended exactly there.
func (m *countingMeter) check(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.totals != 1 || m.over != "" || m.done != m.total {
		t.Errorf("meter: total set %d times, ended at %d of %d (passed the total: %q); steps:\n%s",
			m.totals, m.done, m.total, m.over, strings.Join(m.steps, "\n"))
	}
}

// TestUpMeterSteps: a step finishes the one before it, finish the last,
// pods count between steps; without a Meter a step is a progress line.
func TestUpMeterSteps(t *testing.T) {
	m := &countingMeter{total: 5, totals: 1}
	var lines []string
	u := &upMeter{m: m, progress: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }}
	u.step("one")
	u.step("pods")
	u.add(1)
	u.add(1)
	u.note("a line within a step")
	u.step("last")
	u.finish()
	u.finish()
	m.check(t)
	if len(m.steps) != 3 || len(lines) != 1 || !strings.HasSuffix(lines[0], "] a line within a step") {
		t.Errorf("steps %q, lines %q", m.steps, lines)
	}

	lines = nil
	u = &upMeter{progress: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }, start: time.Now()}
	u.step("starting %d agents", 3)
	u.add(1)
	u.finish()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "[  0.0s] starting 3 agents") {
		t.Errorf("without a meter: lines %q", lines)
	}
}
