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
