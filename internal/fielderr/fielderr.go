// Package fielderr is the one shape of a validation error in Terrane: every
// problem found in one input, each anchored at the path of its field
// ("topologies[0].groups[2].prefix", "routes[3].via"), reported at once.
package fielderr

import (
	"fmt"
	"strings"
)

// FieldError is one problem, at the path of the field that has it.
type FieldError struct {
	Path string
	Msg  string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// ValidationError carries every problem found in one input.
type ValidationError struct {
	// Subject names the input for the message: "topology", "dataplane state".
	Subject string
	Errors  []FieldError
}

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	if len(lines) == 1 {
		return "invalid " + e.Subject + ": " + lines[0]
	}
	return fmt.Sprintf("invalid %s (%d problems):\n  %s", e.Subject, len(lines), strings.Join(lines, "\n  "))
}
