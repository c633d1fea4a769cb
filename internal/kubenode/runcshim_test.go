package kubenode

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestSpecFile(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--root", "/r", "--log", "/l.json", "--log-format", "json", "create", "--bundle", "/b", "--pid-file", "/p", "id"}, "/b/config.json"},
		{[]string{"create", "--bundle=/b2", "id"}, "/b2/config.json"},
		{[]string{"--root", "/r", "run", "-b", "/b3", "id"}, "/b3/config.json"},
		{[]string{"--root", "/r", "exec", "--process", "/tmp/p.json", "--detach", "id"}, "/tmp/p.json"},
		{[]string{"--root", "/r", "start", "id"}, ""},
		{[]string{"--root", "/r", "delete", "--force", "id"}, ""},
		{[]string{"create", "id"}, "config.json"},
	} {
		if got := specFile(tc.args); got != tc.want {
			t.Errorf("specFile(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestClampOOMScoreAdj(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, in string
		want     int
		same     bool
	}{
		{"bundle negative", `{"ociVersion":"1.0.2","process":{"args":["/pause"],"oomScoreAdj":-998},"root":{"path":"rootfs"}}`, 0, false},
		{"bundle positive", `{"process":{"oomScoreAdj":1000}}`, 1000, true},
		{"bundle none", `{"process":{"args":["/x"]}}`, 0, true},
		{"process file", `{"args":["/bin/sh"],"oomScoreAdj":-5}`, 0, false},
	} {
		p := filepath.Join(dir, tc.name+".json")
		if err := os.WriteFile(p, []byte(tc.in), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := clampOOMScoreAdj(p); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		out, _ := os.ReadFile(p)
		if tc.same {
			if string(out) != tc.in {
				t.Errorf("%s: rewritten to %s, want it unchanged", tc.name, out)
			}
			continue
		}
		var doc map[string]any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatal(err)
		}
		obj := doc
		if proc, ok := doc["process"].(map[string]any); ok {
			obj = proc
			if doc["root"] == nil && tc.name == "bundle negative" {
				t.Errorf("%s: other fields lost: %s", tc.name, out)
			}
		}
		if got := obj["oomScoreAdj"].(float64); int(got) != tc.want {
			t.Errorf("%s: oomScoreAdj %v, want %d (%s)", tc.name, got, tc.want, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"process":{"oomScoreAdj":"x"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := clampOOMScoreAdj(filepath.Join(dir, "bad.json")); err == nil {
		t.Error("a non-numeric oomScoreAdj was accepted")
	}
}
