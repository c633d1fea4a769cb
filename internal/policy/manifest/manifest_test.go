package manifest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/fielderr"
)

const np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n"
const cnp = "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\nspec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Deny, to: [{networks: [10.0.0.0/8]}]}]\n"

// TestParse: documents in order, empty ones skipped, a NetworkPolicy's
// namespace defaulted in the object and its JSON, and errors that name the
// document and the field.
func TestParse(t *testing.T) {
	objs, err := Parse([]byte("---\n" + np + "---\n\n---\n" + cnp))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0].String() != "NetworkPolicy default/a" || objs[1].String() != "ClusterNetworkPolicy c" {
		t.Fatalf("objects: %v", objs)
	}
	var raw struct {
		Metadata struct{ Namespace string } `json:"metadata"`
	}
	if err := json.Unmarshal(objs[0].Raw, &raw); err != nil || raw.Metadata.Namespace != "default" {
		t.Errorf("raw NetworkPolicy: namespace %q (%v), want default", raw.Metadata.Namespace, err)
	}
	for _, tt := range []struct{ in, doc, field string }{
		{np + "---\n" + strings.Replace(np, "pod: a", "pod: -a", 1), "document 2", "spec.podSelector.matchLabels[pod]"},
		{"kind: Pod\n", "document 1", "kind"},
		{"kind: [\n", "document 1", ""},
		{"---\n", "no policy", ""},
	} {
		_, err := Parse([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.doc) {
			t.Errorf("Parse(%q): %v, want an error naming %q", tt.in, err, tt.doc)
			continue
		}
		var ve *fielderr.ValidationError
		if tt.field != "" && (!errors.As(err, &ve) || ve.Errors[0].Path != tt.field) {
			t.Errorf("Parse(%q): %v, want the field %s", tt.in, err, tt.field)
		}
	}
}

// FuzzParse: any input parses or is refused, never a panic, and what
// parses decodes again from its own JSON to the same object.
func FuzzParse(f *testing.F) {
	f.Add([]byte(np))
	f.Add([]byte(cnp))
	f.Add([]byte(np + "---\n" + cnp))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Parse(data)
		if err != nil {
			return
		}
		for _, o := range objs {
			again, err := Decode(o.Raw)
			if err != nil {
				t.Fatalf("%s does not decode from its own JSON: %v\n%s", o, err, o.Raw)
			}
			if again.String() != o.String() {
				t.Fatalf("decoded again: %s, was %s", again, o)
			}
		}
	})
}
