package fielderr

import "testing"

func TestMessages(t *testing.T) {
	one := &ValidationError{Subject: "topology", Errors: []FieldError{{"networks[0].cidr", "bad"}}}
	if got := one.Error(); got != "invalid topology: networks[0].cidr: bad" {
		t.Errorf("one: %q", got)
	}
	two := &ValidationError{Subject: "dataplane state", Errors: []FieldError{{"", "empty"}, {"routes[1].via", "bad"}}}
	if got := two.Error(); got != "invalid dataplane state (2 problems):\n  empty\n  routes[1].via: bad" {
		t.Errorf("two: %q", got)
	}
}
