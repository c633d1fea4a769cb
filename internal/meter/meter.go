// Package meter is how a long run reports its progress: done of a known
// total, step by step. internal/progress draws a Meter for a person (a bar
// on a terminal, plain lines elsewhere); the runs — lab up, the benches,
// the planner's fill — only count. Pure: no I/O.
package meter

// Meter follows a long run as done of a known total. A run calls it from
// its own goroutine.
type Meter interface {
	// SetTotal says how many units the run does.
	SetTotal(n int)
	// Step names what the run does now.
	Step(format string, args ...any)
	// Add counts n units done.
	Add(n int)
}

// Or is m, or Nop when m is nil.
func Or(m Meter) Meter {
	if m == nil {
		return Nop
	}
	return m
}

// Nop counts nothing.
var Nop Meter = nop{}

type nop struct{}

func (nop) SetTotal(int)        {}
func (nop) Step(string, ...any) {}
func (nop) Add(int)             {}
