package main

import (
	"errors"
	"strings"
	"testing"
)

// Bad flags of bench burst are refused with exit status 2 before anything
// is built (no root needed).
func TestBenchBurstFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"burst", "--pods", "0", "--rounds", "0"}, "--pods 0: want 1 to 1000\n--rounds 0: want at least 1"},
		{[]string{"burst", "-o", "yaml"}, `-o "yaml": use table or json`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := benchCmd(t, tc.args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want exit status 2 with %q", err, tc.want)
			}
		})
	}
}
