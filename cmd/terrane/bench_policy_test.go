package main

import (
	"errors"
	"strings"
	"testing"
)

// Bad flags of bench policy are refused with exit status 2 before anything
// is made.
func TestBenchPolicyFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "--rules", "10"}, "--rules [10]: want two numbers, LOW,HIGH"},
		{[]string{"policy", "--rules", "100,10"}, "--rules 100,10: want LOW,HIGH with 1 <= LOW < HIGH <= 65536"},
		{[]string{"policy", "--duration", "500ms", "--rounds", "0"}, "--duration 500ms: want whole seconds, at least 1s (iperf3 -t takes seconds)\n--rounds 0: want at least 1"},
		{[]string{"policy", "--iptables", "nft"}, `--iptables "nft": use iptables-legacy, iptables-nft or iptables`},
		{[]string{"policy", "-o", "yaml"}, `-o "yaml": use table or json`},
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
