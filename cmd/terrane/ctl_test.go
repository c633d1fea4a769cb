package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/client/clienttest"
	"github.com/terrane-net/terrane/internal/pki"
)

// ctl runs `terrane ctl args...` in-process.
func ctl(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"ctl"}, args...))
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// mustCtl runs ctl and fails the test on an error.
func mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := ctl(t, args...)
	if err != nil {
		t.Fatalf("terrane ctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// failCtl runs ctl, wants an error containing every one of want, and
// returns its message.
func failCtl(t *testing.T, args []string, want ...string) string {
	t.Helper()
	out, _, err := ctl(t, args...)
	if err == nil {
		t.Fatalf("terrane ctl %s succeeded, want an error\n%s", strings.Join(args, " "), out)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("terrane ctl %s: error %q, want it to contain %q", strings.Join(args, " "), err, w)
		}
	}
	return err.Error()
}

func jsonOf(t *testing.T, out string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("-o json output is not JSON: %v\n%s", err, out)
	}
	return v
}

// isolate keeps the caller's environment out of the flags.
func isolate(t *testing.T) {
	t.Setenv(envServer, "")
	t.Setenv(envToken, "")
}

func writeTopology(t *testing.T, text string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "topology.yaml")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

const rack3 = `      - {name: rack-3, assignment: {matchLabels: {rack: "3"}}}
`

// TestCtlAdminWorkflow drives every command through mTLS with the admin
// certificate of `certs init`.
func TestCtlAdminWorkflow(t *testing.T) {
	isolate(t)
	srv := clienttest.Start(t)
	l := srv.PKI
	a := []string{"--server", srv.URL, "--ca", l.CA.Cert, "--cert", l.Admin.Cert, "--key", l.Admin.Key}
	cmd := func(args ...string) []string { return append(append([]string{}, a...), args...) }
	topo := writeTopology(t, clienttest.Topology)

	failCtl(t, cmd("topology", "get"), "no topology applied yet", "topology apply")

	// diff is a dry run: a diff, nothing applied.
	out := mustCtl(t, cmd("topology", "diff", topo)...)
	if !strings.Contains(out, "+ groups of pods: rack-1") || !strings.Contains(out, "dry run") {
		t.Fatalf("diff:\n%s", out)
	}
	failCtl(t, cmd("topology", "get"), "no topology applied yet")

	out = mustCtl(t, cmd("topology", "apply", topo, "--route-budget", "vpc=50")...)
	if !strings.Contains(out, "+ topology") || !strings.Contains(out, "applied topology revision") {
		t.Fatalf("apply:\n%s", out)
	}
	out = mustCtl(t, cmd("topology", "apply", topo)...)
	if !strings.Contains(out, "no changes") {
		t.Fatalf("applying the same file again:\n%s", out)
	}
	stdout, stderr, err := ctl(t, cmd("topology", "get")...)
	if err != nil || stdout != clienttest.Topology || !strings.Contains(stderr, "vpc=50") {
		t.Fatalf("get: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	got := jsonOf(t, mustCtl(t, cmd("topology", "get", "-o", "json")...))
	rev := got["revision"].(float64)
	if rev == 0 || got["mode"] != "elastic" {
		t.Fatalf("get -o json: %v", got)
	}

	// A topology with another rack: diff shows it and keeps the budget.
	bigger := writeTopology(t, clienttest.Topology+rack3)
	out = mustCtl(t, cmd("topology", "diff", bigger)...)
	if !strings.Contains(out, "rack-3") {
		t.Fatalf("diff of an added rack:\n%s", out)
	}
	if again := jsonOf(t, mustCtl(t, cmd("topology", "get", "-o", "json")...)); again["revision"] != rev {
		t.Fatalf("diff changed the topology: %v", again)
	}
	res := jsonOf(t, mustCtl(t, cmd("topology", "apply", bigger, "-o", "json")...))
	if res["replaces"] != rev || res["revision"].(float64) <= rev || res["dry_run"] != false {
		t.Fatalf("apply -o json: %v (previous revision %v)", res, rev)
	}
	if _, stderr, _ := ctl(t, cmd("topology", "get")...); !strings.Contains(stderr, "vpc=50") {
		t.Fatalf("an apply without --route-budget dropped the applied budget: %s", stderr)
	}

	mustCtl(t, cmd("hosts", "register", "n1", "--ip", "192.0.2.1", "--label", "rack=1")...)
	out = mustCtl(t, cmd("hosts", "register", "n2", "--label", "rack=2")...)
	if !strings.Contains(out, "registered host n2 in pods:rack-2") {
		t.Fatalf("register:\n%s", out)
	}
	out = mustCtl(t, cmd("hosts", "list")...)
	if !strings.Contains(out, "n1    192.0.2.1  rack=1  pods:rack-1,vms:rack-1") {
		t.Fatalf("hosts list:\n%s", out)
	}
	if hosts := jsonOf(t, mustCtl(t, cmd("hosts", "list", "-o", "json")...))["hosts"].([]any); len(hosts) != 2 {
		t.Fatalf("hosts list -o json: %v", hosts)
	}

	claim := jsonOf(t, mustCtl(t, cmd("blocks", "claim", "n2", "--network", "pods", "-o", "json")...))
	block := claim["block"].(string)
	out = mustCtl(t, cmd("blocks", "list", "--network", "pods")...)
	if !strings.Contains(out, block) || !strings.Contains(out, "n2") {
		t.Fatalf("blocks list:\n%s", out)
	}
	blocks := jsonOf(t, mustCtl(t, cmd("blocks", "list", "-o", "json")...))["blocks"].(map[string]any)
	if len(blocks["pods"].([]any)) != 1 {
		t.Fatalf("blocks list -o json: %v", blocks)
	}
	failCtl(t, cmd("blocks", "list", "--network", "nope"), `no network "nope"`)
	failCtl(t, cmd("blocks", "release", "n2", "pods", strings.Replace(block, ".0/", ".5/", 1)), "did you mean "+block)
	out = mustCtl(t, cmd("blocks", "release", "n2", "pods", block)...)
	if !strings.Contains(out, "released block "+block) {
		t.Fatalf("release:\n%s", out)
	}

	ep := jsonOf(t, mustCtl(t, cmd("endpoints", "allocate", "--id", "port-1", "--host", "n1", "--network", "vms", "--namespace", "openstack", "-o", "json")...))
	addr := ep["endpoint"].(map[string]any)["addr"].(string)
	if ep["created"] != true || !strings.HasPrefix(addr, "10.1.") {
		t.Fatalf("allocate -o json: %v", ep)
	}
	out = mustCtl(t, cmd("endpoints", "allocate", "--id", "port-1", "--host", "n1", "--network", "vms", "--namespace", "openstack")...)
	if !strings.Contains(out, "already allocated: "+addr) {
		t.Fatalf("allocating again:\n%s", out)
	}
	out = mustCtl(t, cmd("endpoints", "list")...)
	if !strings.Contains(out, "port-1  vms      n1    openstack  "+addr) {
		t.Fatalf("endpoints list:\n%s", out)
	}
	eps := jsonOf(t, mustCtl(t, cmd("endpoints", "list", "-o", "json")...))["endpoints"].([]any)
	if len(eps) != 1 {
		t.Fatalf("endpoints list -o json: %v", eps)
	}
	failCtl(t, cmd("endpoints", "allocate", "--host", "n1"), `"id" not set`)

	out = mustCtl(t, cmd("utilisation")...)
	if !strings.Contains(out, "vms      10.1.0.0/16  2      1       1") || !strings.Contains(out, "rack-3") {
		t.Fatalf("utilisation:\n%s", out)
	}
	util := jsonOf(t, mustCtl(t, cmd("utilisation", "-o", "json")...))
	if len(util["networks"].([]any)) != 2 {
		t.Fatalf("utilisation -o json: %v", util)
	}
	if out := mustCtl(t, cmd("check")...); !strings.HasPrefix(out, "clean") {
		t.Fatalf("check:\n%s", out)
	}
	if check := jsonOf(t, mustCtl(t, cmd("check", "-o", "json")...)); check["clean"] != true {
		t.Fatalf("check -o json: %v", check)
	}

	// Dropping rack-1 under n1's live endpoint is refused, one conflict a line.
	without := writeTopology(t, strings.Replace(clienttest.Topology, `      - {name: rack-1, assignment: {matchLabels: {rack: "1"}}}
`, "", 1))
	msg := failCtl(t, cmd("topology", "apply", without), "would orphan live state", "nothing was changed")
	lines := strings.Split(msg, "\n")
	if len(lines) < 3 || !strings.Contains(msg, "\n  endpoint-orphaned vms port-1: ") {
		t.Fatalf("conflicts not one per line:\n%s", msg)
	}

	if out := mustCtl(t, cmd("endpoints", "release", "port-1")...); out != "released endpoint port-1\n" {
		t.Fatalf("release:\n%s", out)
	}
	if out := mustCtl(t, cmd("endpoints", "release", "port-1")...); !strings.Contains(out, "nothing to release") {
		t.Fatalf("releasing again:\n%s", out)
	}
	mustCtl(t, cmd("hosts", "remove", "n2")...)
	if out := mustCtl(t, cmd("hosts", "list")...); strings.Contains(out, "n2") {
		t.Fatalf("removed host listed:\n%s", out)
	}
}

// TestCtlNodeIdentity: a node certificate from `certs issue` may act on its
// own host only.
func TestCtlNodeIdentity(t *testing.T) {
	isolate(t)
	srv := clienttest.Start(t)
	admin := []string{"--server", srv.URL, "--ca", srv.PKI.CA.Cert, "--token", clienttest.AdminToken}
	mustCtl(t, append(admin, "topology", "apply", writeTopology(t, clienttest.Topology))...)
	mustCtl(t, append(admin, "hosts", "register", "n2", "--label", "rack=2")...)

	out := mustCtl(t, "certs", "issue", "--dir", srv.PKIDir, "--role", "node", "--name", "n1")
	p := pki.PairIn(srv.PKIDir, "n1")
	if !strings.Contains(out, p.Cert) {
		t.Fatalf("certs issue:\n%s", out)
	}
	node := []string{"--server", srv.URL, "--ca", srv.PKI.CA.Cert, "--cert", p.Cert, "--key", p.Key}
	mustCtl(t, append(node, "hosts", "register", "n1", "--label", "rack=1")...)
	block := jsonOf(t, mustCtl(t, append(node, "blocks", "claim", "n1", "--network", "pods", "-o", "json")...))["block"].(string)
	mustCtl(t, append(node, "endpoints", "allocate", "--id", "pod-a", "--host", "n1")...)

	failCtl(t, append(node, "blocks", "claim", "n2", "--network", "pods"), "forbidden", "may act only on host n1, not n2", "use an admin")
	failCtl(t, append(node, "hosts", "register", "n3", "--label", "rack=1"), "forbidden", "not n3")
	failCtl(t, append(node, "endpoints", "allocate", "--id", "pod-b", "--host", "n2"), "forbidden")
	failCtl(t, append(node, "topology", "apply", writeTopology(t, clienttest.Topology+rack3)), "forbidden", "needs an admin identity")
	failCtl(t, append(node, "check"), "forbidden")
	// The admin's block on n2 is not the node's to release; its own is.
	n2block := jsonOf(t, mustCtl(t, append(admin, "blocks", "claim", "n2", "--network", "pods", "-o", "json")...))["block"].(string)
	failCtl(t, append(node, "blocks", "release", "n2", "pods", n2block), "forbidden")
	mustCtl(t, append(node, "endpoints", "release", "pod-a")...)
	mustCtl(t, append(node, "blocks", "release", "n1", "pods", block)...)
	// Reading is allowed.
	if out := mustCtl(t, append(node, "blocks", "list")...); !strings.Contains(out, n2block) {
		t.Fatalf("blocks list as a node:\n%s", out)
	}
}

// TestCtlTokens: bearer tokens from --token or the environment, the server
// from the environment.
func TestCtlTokens(t *testing.T) {
	isolate(t)
	srv := clienttest.Start(t)
	ca := []string{"--server", srv.URL, "--ca", srv.PKI.CA.Cert}
	mustCtl(t, append(ca, "--token", clienttest.AdminToken, "topology", "apply", writeTopology(t, clienttest.Topology))...)

	t.Setenv(envServer, srv.URL)
	t.Setenv(envToken, clienttest.NodeToken)
	mustCtl(t, "--ca", srv.PKI.CA.Cert, "hosts", "register", "n1", "--label", "rack=1")
	failCtl(t, []string{"--ca", srv.PKI.CA.Cert, "hosts", "register", "n2", "--label", "rack=2"}, "forbidden", "not n2")
	// A flag beats the environment.
	mustCtl(t, "--ca", srv.PKI.CA.Cert, "--token", clienttest.AdminToken, "hosts", "register", "n2", "--label", "rack=2")
	if out := mustCtl(t, "--ca", srv.PKI.CA.Cert, "hosts", "list"); !strings.Contains(out, "n2") {
		t.Fatalf("hosts list:\n%s", out)
	}
}

// TestCtlErrorsSayWhatToDo: failures come back as advice.
func TestCtlErrorsSayWhatToDo(t *testing.T) {
	isolate(t)
	srv := clienttest.Start(t)
	ca := []string{"--server", srv.URL, "--ca", srv.PKI.CA.Cert}

	failCtl(t, append(ca, "hosts", "list"), "not authenticated", "give --token", "--cert and --key")
	failCtl(t, append(ca, "--token", "wrong-token-0123456789abcdef", "hosts", "list"), "did not accept your credentials")
	failCtl(t, []string{"--server", srv.URL, "--token", clienttest.AdminToken, "hosts", "list"}, "give --ca")
	failCtl(t, append(ca, "-o", "yaml", "hosts", "list"), "use table or json")
	failCtl(t, append(ca, "--cert", srv.PKI.Admin.Cert, "hosts", "list"), "both")
	failCtl(t, append(ca, "--token", clienttest.AdminToken, "topology", "apply", writeTopology(t, "networks: []")), "at least one network")
	failCtl(t, append(ca, "--token", clienttest.AdminToken, "topology", "apply", "/nonexistent.yaml"), "nonexistent.yaml")
	failCtl(t, append(ca, "--token", clienttest.AdminToken, "topology", "apply", writeTopology(t, clienttest.Topology), "--mode", "fixed"), "--mode", "use elastic or static")
	failCtl(t, append(ca, "--token", clienttest.AdminToken, "hosts", "register", "n1", "--label", "rack"), "want KEY=VALUE")
	failCtl(t, append(ca, "--token", clienttest.AdminToken, "blocks", "claim", "n1", "--network", "pods"), "no topology applied yet")

	// A client certificate from another CA.
	other, err := pki.Init(t.TempDir(), pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	failCtl(t, append(ca, "--cert", other.Admin.Cert, "--key", other.Admin.Key, "hosts", "list"), "was --cert issued by the CA the server trusts")
	// A server name its certificate does not list: httptest's certificate
	// names 127.0.0.1 and example.com, not localhost.
	hs := httptest.NewTLSServer(http.NotFoundHandler())
	defer hs.Close()
	hsCA := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(hsCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	failCtl(t, []string{"--server", strings.Replace(hs.URL, "127.0.0.1", "localhost", 1), "--ca", hsCA, "hosts", "list"}, "not valid for localhost", "127.0.0.1", "--server-host")

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + ln.Addr().String()
	ln.Close()
	failCtl(t, []string{"--server", dead, "hosts", "list"}, "connection refused", "is `terrane server` running", "--server")
}

// TestCtlFailsOver: with two servers of one store in --server (or
// $TERRANE_SERVER), ctl goes on with the first killed; with both, it says
// what each failed with; a bad entry is named.
func TestCtlFailsOver(t *testing.T) {
	isolate(t)
	srvs := clienttest.Cluster(t, 2, true)
	l := srvs[0].PKI
	list := srvs[0].URL + "," + srvs[1].URL
	a := []string{"--server", list, "--ca", l.CA.Cert, "--cert", l.Admin.Cert, "--key", l.Admin.Key}
	cmd := func(args ...string) []string { return append(append([]string{}, a...), args...) }
	mustCtl(t, cmd("topology", "apply", writeTopology(t, clienttest.Topology))...)
	mustCtl(t, cmd("hosts", "register", "n1", "--label", "rack=1")...)

	srvs[0].Kill()
	if out := mustCtl(t, cmd("hosts", "list")...); !strings.Contains(out, "n1") {
		t.Fatalf("hosts list with the first server killed:\n%s", out)
	}
	t.Setenv(envServer, list)
	if out := mustCtl(t, append(a[2:], "hosts", "list")...); !strings.Contains(out, "n1") {
		t.Fatalf("hosts list through $%s with the first server killed:\n%s", envServer, out)
	}
	srvs[1].Kill()
	failCtl(t, cmd("hosts", "list"), "no server answered", "no socket at "+strings.TrimPrefix(srvs[0].URL, "unix://"), "no socket at "+strings.TrimPrefix(srvs[1].URL, "unix://"))
	failCtl(t, []string{"--server", "https://a:1,ftp://b", "hosts", "list"}, `--server "https://a:1,ftp://b": entry 2 "ftp://b": want a URL`)
	t.Setenv(envServer, "https://a:1,,https://b:1")
	failCtl(t, []string{"hosts", "list"}, `$TERRANE_SERVER "https://a:1,,https://b:1": entry 2 is empty`)
}

// TestCtlCheckExitStatus: findings exit 1, listed one per line; a plain
// HTTP server is recognised.
func TestCtlCheckExitStatus(t *testing.T) {
	isolate(t)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"clean": false, "findings": [
			{"kind": "block-outside-group", "network": "pods", "subject": "10.0.9.0/28", "detail": "block of n1 is outside rack-1"},
			{"kind": "orphan-block", "network": "pods", "subject": "10.0.8.0/28", "detail": "no host owns it"}]}`))
	}))
	defer hs.Close()
	out, _, err := ctl(t, "--server", hs.URL, "check")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), "2 problems") {
		t.Fatalf("check with findings: %v, want exit status 1", err)
	}
	if want := "block-outside-group pods 10.0.9.0/28: block of n1 is outside rack-1\norphan-block pods 10.0.8.0/28: no host owns it\n"; out != want {
		t.Fatalf("check output:\n%s\nwant:\n%s", out, want)
	}
	out, _, err = ctl(t, "--server", hs.URL, "check", "-o", "json")
	if !errors.As(err, &ee) || ee.code != 1 || jsonOf(t, out)["clean"] != false {
		t.Fatalf("check -o json: %v\n%s", err, out)
	}
	failCtl(t, []string{"--server", strings.Replace(hs.URL, "http://", "https://", 1), "check"}, "plain HTTP", "--server "+hs.URL)
}

func TestCtlCerts(t *testing.T) {
	isolate(t)
	dir := filepath.Join(t.TempDir(), "pki")
	out := mustCtl(t, "certs", "init", "--dir", dir, "--server-host", "terrane.example,10.0.0.5")
	if !strings.Contains(out, "valid for terrane.example, 10.0.0.5") || !strings.Contains(out, "--client-ca "+filepath.Join(dir, "ca.crt")) {
		t.Fatalf("certs init:\n%s", out)
	}
	failCtl(t, []string{"certs", "init", "--dir", dir}, "already exists", "force")
	l := jsonOf(t, mustCtl(t, "certs", "init", "--dir", dir, "--force", "-o", "json"))
	if l["admin"].(map[string]any)["key"] != filepath.Join(dir, "admin.key") {
		t.Fatalf("certs init -o json: %v", l)
	}
	mustCtl(t, "certs", "issue", "--dir", dir, "--name", "n1")
	failCtl(t, []string{"certs", "issue", "--dir", dir, "--name", "n1"}, "already exists", "remove it")
	failCtl(t, []string{"certs", "issue", "--dir", dir, "--role", "root", "--name", "x"}, "use admin or node")
	failCtl(t, []string{"certs", "issue", "--dir", t.TempDir(), "--name", "x"}, "certs init")
	p := jsonOf(t, mustCtl(t, "certs", "issue", "--dir", dir, "--role", "admin", "--name", "ops", "-o", "json"))
	if p["cert"] != filepath.Join(dir, "ops.crt") {
		t.Fatalf("certs issue -o json: %v", p)
	}
}
