package main

import (
	"errors"
	"strings"
	"testing"
)

// Bad flags of bench chaos are refused with exit status 2 before anything
// is built (no root needed); lab etcd-member names its missing flags.
func TestBenchChaosFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"chaos", "--servers", "1", "--live", "0"}, "--servers 1: want 2 or 3\n--live 0: want 1 to 1000"},
		{[]string{"chaos", "--duration", "0"}, "--duration or --allocations"},
		{[]string{"chaos", "--fault-every", "1s"}, "--fault-every 1s"},
		{[]string{"chaos", "-o", "yaml"}, `-o "yaml": use table or json`},
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

func TestLabEtcdMemberFlags(t *testing.T) {
	cmd := newLabEtcdMemberCommand()
	cmd.SetArgs([]string{"--name", "m0", "--listen-client", "10.0.0.1:2379"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.Execute()
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("error %v, want exit status 2", err)
	}
	for _, want := range []string{"--data-dir is required", "--listen-peer is required", "--initial-cluster is required", `--listen-client "10.0.0.1:2379": want http://IP:PORT`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
