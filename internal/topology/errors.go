package topology

import (
	"fmt"
	"sort"
	"strings"

	"github.com/terrane-net/terrane/internal/fielderr"
)

// FieldError is one problem, at the path of the field that has it, e.g.
// "topologies[0].groups[2].prefix".
type FieldError = fielderr.FieldError

// ValidationError carries every problem found in one topology at once.
type ValidationError = fielderr.ValidationError

// errorList accumulates field errors.
type errorList []FieldError

func (l *errorList) add(path, format string, args ...any) {
	*l = append(*l, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (l errorList) err() error {
	if len(l) == 0 {
		return nil
	}
	out := make([]FieldError, len(l))
	copy(out, l)
	sort.SliceStable(out, func(i, j int) bool { return pathLess(out[i].Path, out[j].Path) })
	return &ValidationError{Subject: "topology", Errors: out}
}

// pathLess orders paths as they appear in a file: numerically inside brackets.
func pathLess(a, b string) bool {
	for a != "" && b != "" {
		ia, ib := strings.IndexByte(a, '['), strings.IndexByte(b, '[')
		if ia < 0 || ib < 0 || a[:ia] != b[:ib] {
			return a < b
		}
		a, b = a[ia+1:], b[ib+1:]
		var na, nb int
		ea, eb := strings.IndexByte(a, ']'), strings.IndexByte(b, ']')
		if ea < 0 || eb < 0 {
			return a < b
		}
		fmt.Sscanf(a[:ea], "%d", &na)
		fmt.Sscanf(b[:eb], "%d", &nb)
		if na != nb {
			return na < nb
		}
		a, b = a[ea+1:], b[eb+1:]
	}
	return len(a) < len(b)
}
