package main

import (
	"errors"
	"strings"
	"testing"
)

// Bad flags of bench cni and bench throughput are refused with exit status
// 2 before anything is built (no root needed).
func TestBenchLabFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cni", "-o", "xml"}, `-o "xml": use table or json`},
		{[]string{"cni", "--n", "0"}, "--n 0: want at least 1"},
		{[]string{"cni", "--concurrency", "0,300"}, "--concurrency 0: want 1 to 256\n--concurrency 300: want 1 to 256"},
		{[]string{"cni", "--name", "bench-cni"}, `lab name "bench-cni"`},
		{[]string{"throughput", "--seconds", "0", "--rounds", "0"}, "--seconds 0: want 1 to 600\n--rounds 0: want 1 to 100"},
		{[]string{"throughput", "-o", "yaml"}, `-o "yaml": use table or json`},
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
