package api

import (
	"strings"
	"testing"
)

func TestVMPortDevice(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"vm-1", "vm-2", "3f1e1c0a-7a6b-4c53-9d1d-6c4a9f1e2b3c", "a/b", strings.Repeat("x", 300)} {
		d := VMPortDevice(id)
		if len(d) != 14 || !strings.HasPrefix(d, "tap") {
			t.Errorf("VMPortDevice(%q) = %q: want tap + 11 hex digits", id, d)
		}
		if VMPortDevice(id) != d {
			t.Errorf("VMPortDevice(%q) is not stable", id)
		}
		if o, dup := seen[d]; dup {
			t.Errorf("VMPortDevice(%q) = VMPortDevice(%q) = %q", id, o, d)
		}
		seen[d] = id
	}
}
