package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the terrane binary: with
// TERRANE_RUN_MAIN set it runs main with the given arguments, so tests can
// start real server processes and kill them.
func TestMain(m *testing.M) {
	if args := os.Getenv("TERRANE_RUN_MAIN"); args != "" {
		os.Args = append([]string{"terrane"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serverProcess is `terrane server --insecure` in a child process.
type serverProcess struct {
	cmd  *exec.Cmd
	url  string
	logs *bytes.Buffer
}

var addrRe = regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)

func startServerProcess(t *testing.T, dataDir string) *serverProcess {
	return startServerWith(t, "server --insecure --listen 127.0.0.1:0 --data-dir "+dataDir, "http://")
}

// startServerWith runs `terrane ARGS` and waits until it listens.
func startServerWith(t *testing.T, args, scheme string) *serverProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TERRANE_RUN_MAIN="+args)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, logs: &bytes.Buffer{}}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.logs.WriteString(sc.Text() + "\n")
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case addr := <-found:
		p.url = scheme + addr
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not start: %s", p.logs)
	}
	return p
}

func post(url, method string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	err = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, err
}

// TestServerZeroSetup: with no TLS flags the server creates its CA and
// certificates in the data directory and serves mTLS; the admin certificate
// works, a caller without one is refused.
func TestServerZeroSetup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process; skipped with -short")
	}
	dir := t.TempDir()
	p := startServerWith(t, "server --listen 127.0.0.1:0 --data-dir "+dir, "https://")
	pkiDir := filepath.Join(dir, "pki")
	out, code, err := runCLI(t, "ctl", "--server", p.url, "--ca", filepath.Join(pkiDir, "ca.crt"),
		"--cert", filepath.Join(pkiDir, "admin.crt"), "--key", filepath.Join(pkiDir, "admin.key"), "hosts", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("ctl with the admin certificate: exit %d %v\n%s\n%s", code, err, out, p.logs)
	}
	if !strings.Contains(out, `"hosts"`) {
		t.Fatalf("hosts list -o json printed %q", out)
	}
	out, code, err = runCLI(t, "ctl", "--server", p.url, "--ca", filepath.Join(pkiDir, "ca.crt"), "hosts", "list")
	if msg := fmt.Sprint(out, err); code == 0 || !strings.Contains(msg, "401") && !strings.Contains(msg, "--cert") {
		t.Fatalf("ctl without credentials: exit %d, %s", code, msg)
	}
	if _, err := os.Stat(filepath.Join(pkiDir, "ca.key")); err != nil {
		t.Fatal(err)
	}
}

// TestCrashDuringWrites kills the server with SIGKILL while 8 clients
// allocate and release endpoints, restarts it on the same data, and checks
// that the store is consistent and every acknowledged allocation survived.
func TestCrashDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	dir := t.TempDir()
	p := startServerProcess(t, dir)
	topo, err := os.ReadFile(filepath.Join("..", "..", "examples", "l3-fabric-4rack.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if code, out, err := post(p.url+"/v1/topology", "POST", map[string]any{"topology": string(topo)}); err != nil || code != 200 {
		t.Fatalf("apply topology: %d %v %v", code, out, err)
	}
	for r := 1; r <= 4; r++ {
		if code, out, err := post(fmt.Sprintf("%s/v1/hosts/h%d", p.url, r), "PUT", map[string]any{"labels": map[string]string{"rack": fmt.Sprint(r)}}); err != nil || code != 200 {
			t.Fatalf("register: %d %v %v", code, out, err)
		}
	}
	var (
		mu    sync.Mutex
		acked = map[string]string{} // endpoint id → address, acknowledged and not released
		count atomic.Int64
	)
	killAt := int64(300)
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("vm-%d-%d", c, i)
				code, out, err := post(p.url+"/v1/endpoints", "POST", map[string]any{"id": id, "host": fmt.Sprintf("h%d", c%4+1)})
				if err != nil {
					return // the server is gone
				}
				if code == 201 {
					mu.Lock()
					acked[id] = out["endpoint"].(map[string]any)["addr"].(string)
					mu.Unlock()
					if count.Add(1) == killAt {
						close(killed)
					}
				}
				if i%3 == 2 { // release one in three
					old := fmt.Sprintf("vm-%d-%d", c, i-1)
					code, _, err := post(p.url+"/v1/endpoints/"+old, "DELETE", nil)
					if err != nil || code == 200 {
						// Released, or cut off by the kill: a release
						// may have committed without its answer.
						mu.Lock()
						delete(acked, old)
						mu.Unlock()
					}
				}
			}
		}(c)
	}
	<-killed
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	wg.Wait()

	p2 := startServerProcess(t, dir)
	code, check, err := post(p2.url+"/v1/check", "GET", nil)
	if err != nil || code != 200 || check["clean"] != true {
		t.Fatalf("check after the crash: %d %v %v", code, check, err)
	}
	_, list, err := post(p2.url+"/v1/endpoints", "GET", nil)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	seen := map[string]string{}
	for _, e := range list["endpoints"].([]any) {
		m := e.(map[string]any)
		id, addr := m["id"].(string), m["addr"].(string)
		if prev, dup := seen[addr]; dup {
			t.Errorf("address %s is held by %s and %s", addr, prev, id)
		}
		seen[addr], have[id] = id, addr
	}
	mu.Lock()
	defer mu.Unlock()
	for id, addr := range acked {
		if have[id] != addr {
			t.Errorf("acknowledged endpoint %s (%s) is %q after the crash", id, addr, have[id])
		}
	}
	t.Logf("%d acknowledged allocations before SIGKILL, %d live after restart", count.Load(), len(have))
}
