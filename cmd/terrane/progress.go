package main

import (
	"io"
	"time"

	"github.com/terrane-net/terrane/internal/progress"
)

// newProgress starts the progress of a long command on stderr, as
// TERRANE_PROGRESS asks: auto (a bar on a terminal, plain lines
// elsewhere), bar, plain or none. Stdout stays the result's. Call Done
// before printing the result.
func newProgress(stderr io.Writer, title string) (*progress.Bar, error) {
	mode, err := progress.ModeFromEnv()
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return progress.New(stderr, progress.Options{
		Mode:    mode,
		Title:   title,
		Unicode: progress.IsTerminal(stderr) && progress.UTF8(),
		Refresh: 500 * time.Millisecond, // the clock and the estimate move while a step waits
	}), nil
}

// newPlanProgress is plan's progress: a transient bar on a terminal (a
// fill of a large network takes seconds; a quick plan shows nothing), and
// nothing elsewhere unless TERRANE_PROGRESS asks for plain lines — plan's
// stderr in scripts stays as it was.
func newPlanProgress(stderr io.Writer) (*progress.Bar, error) {
	mode, err := progress.ModeFromEnv()
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	if mode == progress.ModeAuto && progress.Resolve(mode, stderr) != progress.ModeBar {
		mode = progress.ModeNone
	}
	return progress.New(stderr, progress.Options{
		Mode:      mode,
		Title:     "plan",
		Unicode:   progress.IsTerminal(stderr) && progress.UTF8(),
		Refresh:   500 * time.Millisecond,
		Transient: true,
	}), nil
}
