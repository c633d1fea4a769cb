package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/etcd"
	"github.com/terrane-net/terrane/internal/store/etcd/embedded"
)

// benchCmd runs `terrane bench args...` in-process.
func benchCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"bench"}, args...))
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// benchJSON runs bench store with -o json and checks the result is sane.
func benchJSON(t *testing.T, args ...string) (map[string]float64, string) {
	t.Helper()
	out, stderr, err := benchCmd(t, append([]string{"store", "-o", "json", "--data-dir", t.TempDir()}, args...)...)
	if err != nil {
		t.Fatalf("terrane bench store %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, out)
	}
	nums := map[string]float64{}
	for _, k := range []string{"claims_per_second", "claim_p50_ms", "claim_p99_ms", "writes_per_endpoint", "duplicates",
		"hosts", "clients", "endpoints", "claims", "wall_seconds", "peak_rss_mb"} {
		v, ok := raw[k].(float64)
		if !ok {
			t.Fatalf("-o json: %q is %v, want a number\n%s", k, raw[k], out)
		}
		nums[k] = v
	}
	if nums["duplicates"] != 0 || nums["writes_per_endpoint"] <= 0 || nums["claims"] <= 0 || nums["claims_per_second"] <= 0 ||
		nums["claim_p99_ms"] < nums["claim_p50_ms"] || nums["peak_rss_mb"] <= 0 {
		t.Errorf("implausible result:\n%s", out)
	}
	return nums, raw["backend"].(string) + "\n" + stderr
}

func TestBenchStoreBolt(t *testing.T) {
	nums, info := benchJSON(t, "--backend", "bolt", "--hosts", "30", "--clients", "5", "--endpoints-per-host", "130", "--no-fsync")
	if !strings.HasPrefix(info, "bolt\n") || !strings.Contains(info, "bolt store in ") {
		t.Errorf("backend and stderr:\n%s", info)
	}
	// 130 endpoints in /26 blocks: 3 claims per host.
	if nums["hosts"] != 30 || nums["clients"] != 5 || nums["endpoints"] != 30*130 || nums["claims"] != 30*3 {
		t.Errorf("result: %v", nums)
	}
	// The data directory holds nothing afterwards.
	dir := t.TempDir()
	if _, _, err := benchCmd(t, "store", "--data-dir", dir, "--hosts", "3", "--clients", "1", "--progress", "0"); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("--data-dir holds %d entries after the run; want it cleaned up", len(left))
	}
}

func TestBenchStoreEmbeddedEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded etcd; skipped with -short")
	}
	nums, info := benchJSON(t, "--backend", "etcd", "--hosts", "8", "--clients", "3", "--endpoints-per-host", "2", "--no-fsync")
	if !strings.HasPrefix(info, "etcd\n") || !strings.Contains(info, "started an embedded single-member etcd") {
		t.Errorf("backend and stderr:\n%s", info)
	}
	if nums["claims"] != 8 || nums["endpoints"] != 16 {
		t.Errorf("result: %v", nums)
	}

	// With --etcd-endpoints the run writes under a fresh prefix and
	// deletes it afterwards; a non-empty prefix is refused.
	ctx := context.Background()
	eps, _, stop, err := embedded.Start(ctx, embedded.Options{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	_, info = benchJSON(t, "--backend", "etcd", "--etcd-endpoints", strings.Join(eps, ","), "--hosts", "5", "--clients", "2")
	if !strings.Contains(info, "under prefix /terrane-bench/") {
		t.Errorf("stderr:\n%s", info)
	}
	st, err := etcd.New(ctx, etcd.Config{Endpoints: eps, Prefix: "/"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if kvs, _, err := st.List(ctx, ""); err != nil || len(kvs) != 0 {
		t.Errorf("etcd after the run: %d keys (%v), want none", len(kvs), err)
	}
	if _, err := st.Txn(ctx, store.Create("taken/x", []byte("1"))); err != nil {
		t.Fatal(err)
	}
	_, _, err = benchCmd(t, "store", "--backend", "etcd", "--etcd-endpoints", strings.Join(eps, ","), "--etcd-prefix", "/taken/", "--hosts", "2")
	if err == nil || !strings.Contains(err.Error(), "needs an empty one") {
		t.Errorf("run under a used prefix: %v, want a refusal", err)
	}
	if _, err := st.Get(ctx, "taken/x"); err != nil {
		t.Errorf("the refused run touched the existing record: %v", err)
	}
}

func TestBenchStoreBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--backend", "mysql"}, []string{`--backend "mysql"`, "bolt, etcd or kubernetes"}},
		{[]string{"--backend", "kubernetes", "--no-fsync"}, []string{"--no-fsync does not apply to --backend kubernetes"}},
		{[]string{"-o", "yaml"}, []string{`-o "yaml"`, "table or json"}},
		{[]string{"--hosts", "0", "--clients", "-1"}, []string{"--hosts 0", "--clients -1"}},
		{[]string{"--block-size", "8"}, []string{"--block-size 8"}},
		{[]string{"--hosts", "1000000", "--endpoints-per-host", "1000"}, []string{"10.0.0.0/8"}},
		{[]string{"--etcd-endpoints", "http://127.0.0.1:1"}, []string{"--etcd-endpoints is for --backend etcd"}},
		{[]string{"--data-dir", "/nonexistent/terrane"}, []string{"--data-dir"}},
		{[]string{"--hosts", "many"}, []string{"--hosts"}},
	} {
		_, _, err := benchCmd(t, append([]string{"store"}, tc.args...)...)
		if err == nil {
			t.Errorf("bench store %v succeeded, want an error", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("bench store %v: %v, want it to mention %q", tc.args, err, w)
			}
		}
	}
	if _, _, err := benchCmd(t); err == nil || !strings.Contains(err.Error(), "store") {
		t.Errorf("bench without a subcommand: %v", err)
	}
}
