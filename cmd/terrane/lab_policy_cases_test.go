package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lab policy cases checks its file, --run and -o before it looks for a
// lab: a bad file is named field by field, without a lab.
func TestLabPolicyCasesArgs(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("scenario: netpol\ncases: [{name: a, pods: [xa], steps: [{probes: [{port: 80/TCP, expect: [block * -> *]}]}]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{bad}, `cases[0].pods[0]: "xa": give NAMESPACE/POD`},
		{[]string{bad}, `cases[0].steps[0].probes[0].expect[0]: "block * -> *"`},
		{[]string{filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"--run", "no case has this name"}, `--run "no case has this name" matches no case`},
		{[]string{"--run", "("}, `--run "("`},
		{[]string{"-o", "yaml"}, `-o "yaml": use text or json`},
		{[]string{"--name", "nosuchlab", "--dir", dir, "--run", "named port"}, "nosuchlab"},
	} {
		root := newRootCommand()
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(append([]string{"lab", "policy", "cases"}, c.args...))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error containing %q", c.args, err, c.want)
		}
	}
}
