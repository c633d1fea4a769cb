package progress

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"golang.org/x/term"
)

// Mode says how a Bar shows itself.
type Mode int

const (
	// ModeAuto is ModeBar on a terminal and ModePlain otherwise.
	ModeAuto Mode = iota
	// ModeBar redraws one line in place: a bar, the count, the rate, the
	// estimate and the step.
	ModeBar
	// ModePlain prints whole lines (no carriage returns, no escapes) at each
	// step and at a bounded rate in between: for logs and CI.
	ModePlain
	// ModeNone prints nothing.
	ModeNone
)

// EnvVar names the environment variable that sets the mode for every
// command that shows progress (lab, bench, plan --fill).
const EnvVar = "TERRANE_PROGRESS"

func (m Mode) String() string {
	switch m {
	case ModeBar:
		return "bar"
	case ModePlain:
		return "plain"
	case ModeNone:
		return "none"
	}
	return "auto"
}

// ParseMode parses auto, bar, plain or none; the empty string is auto.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return ModeAuto, nil
	case "bar":
		return ModeBar, nil
	case "plain":
		return ModePlain, nil
	case "none", "off":
		return ModeNone, nil
	}
	return ModeAuto, fmt.Errorf("%s=%q: use auto, bar, plain or none", EnvVar, s)
}

// ModeFromEnv is the mode TERRANE_PROGRESS asks for (auto when unset).
func ModeFromEnv() (Mode, error) { return ParseMode(os.Getenv(EnvVar)) }

// Resolve turns ModeAuto into ModeBar or ModePlain for w: ModeBar when w is a terminal
// (and TERM is not dumb).
func Resolve(m Mode, w io.Writer) Mode {
	if m != ModeAuto {
		return m
	}
	if IsTerminal(w) && os.Getenv("TERM") != "dumb" {
		return ModeBar
	}
	return ModePlain
}

// fder is what *os.File offers to find its descriptor.
type fder interface{ Fd() uintptr }

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(fder)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Width is the number of columns to draw in on w: the terminal's width,
// else $COLUMNS, else 80.
func Width(w io.Writer) int {
	if f, ok := w.(fder); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return 80
}

// UTF8 reports whether the locale (LC_ALL, else LC_CTYPE, else LANG) is
// UTF-8, so block characters draw.
func UTF8() bool {
	for _, k := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		if v := os.Getenv(k); v != "" {
			v = strings.ToLower(v)
			return strings.Contains(v, "utf-8") || strings.Contains(v, "utf8")
		}
	}
	return false
}

// Meter draws frac (0..1, clamped) as a bar of cells cells between its
// frame: ▕███░░░▏ with unicode, [###...] without. The filled cells are
// frac×cells rounded to the nearest, except that a non-zero share never
// draws empty and a share short of 1 never draws full.
func Meter(frac float64, cells int, unicode bool) string {
	if cells < 1 {
		cells = 1
	}
	if math.IsNaN(frac) || frac < 0 {
		frac = 0
	}
	frac = min(frac, 1)
	n := int(math.Round(frac * float64(cells)))
	if n == 0 && frac > 0 {
		n = 1
	}
	if n == cells && frac < 1 {
		n = cells - 1
	}
	if unicode {
		return "▕" + strings.Repeat("█", n) + strings.Repeat("░", cells-n) + "▏"
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", cells-n) + "]"
}
