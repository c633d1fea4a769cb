package kubernetes

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzObjectName: every key maps to a valid object name and label value,
// and a "k-" name decodes back to exactly its key, so two keys never share
// a name unless both are hashed.
func FuzzObjectName(f *testing.F) {
	for _, k := range []string{"a", "v1/hosts/h1", "a/\xff", "", strings.Repeat("x", 300), "v1/blocks/net1/10.0.0.0_28"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if key == "" {
			return // store.CheckKey rejects it before any name is made
		}
		name := objectName(key)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Fatalf("objectName(%q) = %q: not an object name: %v", key, name, errs)
		}
		if name == headName {
			t.Fatalf("objectName(%q) is the head's name", key)
		}
		if errs := validation.IsValidLabelValue(labelFor(key)); len(errs) > 0 {
			t.Fatalf("labelFor(%q) = %q: not a label value: %v", key, labelFor(key), errs)
		}
		if rest, ok := strings.CutPrefix(name, "k-"); ok {
			raw, err := nameEncoding.DecodeString(strings.ToUpper(rest))
			if err != nil || string(raw) != key {
				t.Fatalf("objectName(%q) = %q decodes to %q, %v", key, name, raw, err)
			}
		} else if !strings.HasPrefix(name, "h-") || len(key) < 100 {
			t.Fatalf("objectName(%q) = %q: a short key must get a reversible k- name", key, name)
		}
	})
}
