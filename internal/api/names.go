package api

import (
	"fmt"
	"regexp"

	"github.com/terrane-net/terrane/internal/fielderr"
)

// MaxNameLen bounds a name: a DNS name's length.
const MaxNameLen = 253

// nameRule is the one rule for the names Terrane keys records, paths and
// files by: host names, endpoint IDs, certificate names. It keeps them
// usable as host names, file names, store keys and URL path segments
// without escaping ("/", "%", spaces, control characters and non-ASCII are
// out), and printable in one table cell. VM port IDs (UUIDs) fit.
var nameRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

// ValidateName checks value against the name rule. The error is a
// fielderr.FieldError whose Path is field ("host", "id", "name") and whose
// message says what a valid name is.
func ValidateName(field, value string) error {
	if nameRule.MatchString(value) {
		return nil
	}
	shown := value
	if len(shown) > 64 {
		shown = shown[:64] + "…"
	}
	what := fmt.Sprintf("%q", shown)
	switch {
	case value == "":
		what = "is empty"
	case len(value) > MaxNameLen:
		what = fmt.Sprintf("%s is %d bytes long", what, len(value))
	}
	return fielderr.FieldError{Path: field, Msg: fmt.Sprintf("%s: use 1 to %d letters, digits, '.', '_' and '-', starting with a letter or digit", what, MaxNameLen)}
}
