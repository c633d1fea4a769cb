// Command terrane is Terrane's one binary: the planner today; the server,
// agent and lab as they land. main only wires flags to the packages.
package main

import (
	"errors"
	"fmt"
	"os"
)

// exitError carries an exit code chosen by a subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func main() {
	cmd := newRootCommand()
	if err := cmd.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintln(os.Stderr, "terrane:", ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "terrane:", err)
		os.Exit(2)
	}
}
