package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/fielderr"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"n1", true},
		{"host-1.rack_2", true},
		{"3f1e1c0a-7a6b-4c53-9d1d-6c4a9f1e2b3c", true},
		{strings.Repeat("a", MaxNameLen), true},
		{"", false},
		{strings.Repeat("a", MaxNameLen+1), false},
		{strings.Repeat("a", 5000), false},
		{"..%2F..%2Fetc", false},
		{"../etc", false},
		{"a/b", false},
		{"-x", false},
		{".x", false},
		{"a b", false},
		{"a\nb", false},
		{"a\x00", false},
		{"h\xffst", false},
		{"hôst", false},
		{"a:b", false},
	} {
		err := ValidateName("host", tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%.80q) = %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if err == nil {
			continue
		}
		var fe fielderr.FieldError
		if !errors.As(err, &fe) || fe.Path != "host" {
			t.Errorf("ValidateName(%.80q) = %#v: want a FieldError at host", tc.name, err)
		}
		if len(err.Error()) > 300 || strings.ContainsAny(err.Error(), "\n\x00") {
			t.Errorf("ValidateName(%.80q): message %q is not one short line", tc.name, err)
		}
	}
}

func FuzzValidateName(f *testing.F) {
	f.Add("n1")
	f.Add("..%2F..%2Fetc")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateName("id", s) != nil {
			return
		}
		if strings.ContainsAny(s, "/%\\ \n:") || len(s) > MaxNameLen || s == "" || s[0] == '.' || s[0] == '-' {
			t.Fatalf("ValidateName accepted %q", s)
		}
	})
}
