package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/bolt"
)

const (
	adminToken = "admin-token-0123456789abcdef"
	n1Token    = "node1-token-0123456789abcdef"
)

const testTopology = `
networks:
  - {name: pods, cidr: 10.0.0.0/16, blockSize: 28, default: true}
  - {name: vms, cidr: 10.1.0.0/16, blockSize: 28, namespaces: [openstack]}
topologies:
  - networks: [pods, vms]
    groups:
      - {name: rack-1, assignment: {matchLabels: {rack: "1"}}}
      - {name: rack-2, assignment: {matchLabels: {rack: "2"}}}
`

type testServer struct {
	t     *testing.T
	url   string
	st    store.Store
	state *State
}

func openBolt(t *testing.T, dir string) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(dir, "terrane.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newTestServer(t *testing.T, st store.Store) *testServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	state, err := NewState(context.Background(), st, log)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := ParseTokens([]byte(adminToken + " admin ops\n" + n1Token + " node n1\n"))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(NewAPI(state, auth, log))
	t.Cleanup(hs.Close)
	return &testServer{t: t, url: hs.URL, st: st, state: state}
}

// call sends a request and decodes the JSON answer.
func (s *testServer) call(token, method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		s.t.Fatalf("%s %s: answer is not JSON: %q", method, path, data)
	}
	return resp.StatusCode, out
}

func (s *testServer) must(token, method, path string, body any, want int) map[string]any {
	s.t.Helper()
	code, out := s.call(token, method, path, body)
	if code != want {
		s.t.Fatalf("%s %s: status %d, want %d: %v", method, path, code, want, out)
	}
	return out
}

func (s *testServer) setup() {
	s.must(adminToken, "POST", "/v1/topology", map[string]any{"topology": testTopology}, 200)
	s.must(adminToken, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "labels": map[string]string{"rack": "1"}}, 200)
	s.must(adminToken, "PUT", "/v1/hosts/n2", map[string]any{"ip": "192.0.2.2", "labels": map[string]string{"rack": "2"}}, 200)
}

func TestAPIEndToEnd(t *testing.T) {
	dir := t.TempDir()
	st := openBolt(t, dir)
	s := newTestServer(t, st)
	s.setup()

	// A VM port on the provider network, idempotent by ID.
	out := s.must(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "port-1", "host": "n1", "network": "vms", "namespace": "openstack"}, 201)
	addr := out["endpoint"].(map[string]any)["addr"].(string)
	again := s.must(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "port-1", "host": "n1", "network": "vms", "namespace": "openstack"}, 200)
	if got := again["endpoint"].(map[string]any)["addr"]; got != addr {
		t.Fatalf("same ID gave %v, then %v", addr, got)
	}
	// A node claims a block for itself...
	out = s.must(n1Token, "POST", "/v1/hosts/n1/blocks", map[string]any{"network": "pods"}, 201)
	block := out["block"].(string)
	// ...but not for another host, and cannot change the topology.
	s.must(n1Token, "POST", "/v1/hosts/n2/blocks", map[string]any{"network": "pods"}, 403)
	s.must(n1Token, "POST", "/v1/topology", map[string]any{"topology": testTopology}, 403)
	s.must("", "GET", "/v1/hosts", nil, 401)
	s.must("wrong-token-0123456789abcdef", "GET", "/v1/hosts", nil, 401)
	// Releasing someone else's block is refused; its owner may.
	parts := strings.Split(block, "/")
	s.must(n1Token, "DELETE", fmt.Sprintf("/v1/hosts/n2/blocks/pods/%s/%s", parts[0], parts[1]), nil, 403)
	s.must(n1Token, "DELETE", fmt.Sprintf("/v1/hosts/n1/blocks/pods/%s/%s", parts[0], parts[1]), nil, 200)

	check := s.must(adminToken, "GET", "/v1/check", nil, 200)
	if check["clean"] != true {
		t.Fatalf("check: %v", check)
	}
	// A restart reloads the same state from the store.
	before := s.must(adminToken, "GET", "/v1/endpoints", nil, 200)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := newTestServer(t, openBolt(t, dir))
	after := s2.must(adminToken, "GET", "/v1/endpoints", nil, 200)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("after restart:\n%v\nbefore:\n%v", after, before)
	}
	if check := s2.must(adminToken, "GET", "/v1/check", nil, 200); check["clean"] != true {
		t.Fatalf("check after restart: %v", check)
	}
}

func TestAPITopologyChanges(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.setup()
	s.must(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "vm-a", "host": "n2", "network": "pods"}, 201)
	cur := s.must(adminToken, "GET", "/v1/topology", nil, 200)
	rev := int64(cur["revision"].(float64))

	// Dry run of an added rack: a diff, nothing written.
	added := testTopology + `      - {name: rack-3, assignment: {matchLabels: {rack: "3"}}}
`
	dry := s.must(adminToken, "POST", "/v1/topology", map[string]any{"topology": added, "dry_run": true, "replaces": rev}, 200)
	if dry["revision"].(float64) != 0 || !strings.Contains(fmt.Sprint(dry["diff"]), "rack-3") {
		t.Fatalf("dry run: %v", dry)
	}
	if again := s.must(adminToken, "GET", "/v1/topology", nil, 200); again["revision"].(float64) != float64(rev) {
		t.Fatal("a dry run changed the topology")
	}
	// Removing rack-2 would orphan n2's live block: refused, with reasons.
	removed := strings.Replace(testTopology, `      - {name: rack-2, assignment: {matchLabels: {rack: "2"}}}
`, "", 1)
	code, out := s.call(adminToken, "POST", "/v1/topology", map[string]any{"topology": removed})
	if code != 409 || len(out["conflicts"].([]any)) == 0 {
		t.Fatalf("removing a live group: %d %v", code, out)
	}
	// The same refusals through State, as the ConfigMap controller sees
	// them: the reason whole, conflicts and field included.
	_, err := s.state.ApplyTopology(context.Background(), api.TopologyRequest{Topology: removed})
	if msg, refused := TopologyRefusal(err); !refused || !strings.Contains(msg, "orphan") || !strings.Contains(msg, "n2") {
		t.Fatalf("TopologyRefusal of an orphaning change: %q %v (err %v)", msg, refused, err)
	}
	_, err = s.state.ApplyTopology(context.Background(), api.TopologyRequest{Topology: "networks: [{name: pods, cidr: 10.0.0.0/33}]"})
	if msg, refused := TopologyRefusal(err); !refused || !strings.Contains(msg, "cidr") {
		t.Fatalf("TopologyRefusal of an invalid topology: %q %v (err %v)", msg, refused, err)
	}
	if _, refused := TopologyRefusal(errTopologyBusy); refused {
		t.Fatal("TopologyRefusal: a busy state is worth a retry, not a refusal")
	}
	if cur, err := s.state.Topology(context.Background()); err != nil || cur.Revision != rev {
		t.Fatalf("State.Topology after refusals: %+v %v, want revision %d", cur, err, rev)
	}
	// Applying with a stale revision is refused; with the current one it works.
	s.must(adminToken, "POST", "/v1/topology", map[string]any{"topology": added, "replaces": rev - 1}, 409)
	applied := s.must(adminToken, "POST", "/v1/topology", map[string]any{"topology": added, "replaces": rev}, 200)
	if applied["revision"].(float64) <= float64(rev) {
		t.Fatalf("apply: %v", applied)
	}
	eps := s.must(adminToken, "GET", "/v1/endpoints", nil, 200)
	if !strings.Contains(fmt.Sprint(eps), "vm-a") {
		t.Fatalf("live endpoint lost across a topology change: %v", eps)
	}
}

// TestAPIBadInput: malformed bodies, wrong types, oversize payloads and
// unknown fields get a 4xx naming the problem, and change nothing.
func TestAPIBadInput(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.setup()
	before := s.state.Stats().Revision
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		want         string
	}{
		{"POST", "/v1/endpoints", "{", 400, "malformed JSON"},
		{"POST", "/v1/endpoints", "", 400, "empty request body"},
		{"POST", "/v1/endpoints", `{"id": 5, "host": "n1"}`, 400, "field id"},
		{"POST", "/v1/endpoints", `{"id": "x", "host": "n1", "colour": "red"}`, 400, "unknown field"},
		{"POST", "/v1/endpoints", `{"id": "x", "host": "n1"} {}`, 400, "more than one JSON value"},
		{"POST", "/v1/endpoints", `{"host": "n1"}`, 400, "id is required"},
		{"POST", "/v1/endpoints", `{"id": "x", "host": "n1", "addr": "10.0.0.300"}`, 400, "field addr: ParseAddr"},
		{"POST", "/v1/endpoints", `{"id": "x", "host": "n1", "addr": "10.0.200.1"}`, 400, "outside group"},
		{"POST", "/v1/endpoints", `{"id": "x", "host": "ghost"}`, 404, "has not joined"},
		{"POST", "/v1/endpoints", `{"id": "x", "host": "n1", "network": "vms", "namespace": "default"}`, 400, "does not admit namespace"},
		{"POST", "/v1/endpoints", `{"id": "x", "host": "n1", "pad": "` + strings.Repeat("a", maxBody) + `"}`, 413, "larger than"},
		{"PUT", "/v1/hosts/n3", `{"ip": "nope"}`, 400, "field ip: ParseAddr"},
		{"PUT", "/v1/hosts/n3", `{"labels": {"rack": "9"}}`, 400, "no group admits"},
		{"PUT", "/v1/hosts/n3", `{"labels": ["rack"]}`, 400, "field labels"},
		{"POST", "/v1/hosts/n1/blocks", `{}`, 400, "network is required"},
		{"POST", "/v1/hosts/n1/blocks", `{"network": "nope"}`, 404, "nope"},
		{"DELETE", "/v1/hosts/n1/blocks/pods/10.0.0.5/28", nil, 400, "not a block prefix"},
		{"DELETE", "/v1/hosts/n1/blocks/pods/x/28", nil, 400, "address and prefix length"},
		{"POST", "/v1/topology", `{"topology": "networks: []"}`, 400, "at least one network"},
		{"POST", "/v1/topology", `{"topology": "` + testTopologyJSONEscaped() + `", "mode": "fixed"}`, 400, "use elastic or static"},
		{"POST", "/v1/topology", `{"topology": "` + testTopologyJSONEscaped() + `", "budgets": {"vpc": -1}}`, 400, "negative"},
	} {
		t.Run(tc.method+" "+tc.path+" "+fmt.Sprint(tc.want), func(t *testing.T) {
			code, out := s.call(adminToken, tc.method, tc.path, tc.body)
			if code != tc.status || !strings.Contains(fmt.Sprint(out["error"]), tc.want) {
				t.Fatalf("status %d, want %d; error %q, want it to contain %q", code, tc.status, out["error"], tc.want)
			}
		})
	}
	if after := s.state.Stats().Revision; after != before {
		t.Fatalf("bad input changed the store: revision %d → %d", before, after)
	}
}

func testTopologyJSONEscaped() string {
	b, _ := json.Marshal(testTopology)
	return string(b[1 : len(b)-1])
}

func FuzzDecodeEndpointBody(f *testing.F) {
	f.Add([]byte(`{"id": "x", "host": "n1", "network": "pods"}`))
	f.Add([]byte(`{"id": 1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b api.EndpointRequest
		if err := decodeBytes(data, &b); err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("decode error %T is not an apiError", err)
			}
		}
		var tb api.TopologyRequest
		_ = decodeBytes(data, &tb)
		var hb api.HostRequest
		_ = decodeBytes(data, &hb)
	})
}

// TestAPIEveryRouteAuthenticates: every /v1/ route refuses a caller without
// credentials, admin routes refuse a node, and nothing changes.
func TestAPIEveryRouteAuthenticates(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.setup()
	before := s.state.Stats().Revision
	routes := []struct {
		method, path string
		admin        bool
	}{
		{"GET", "/v1/topology", false}, {"POST", "/v1/topology", true}, {"GET", "/v1/plan", false},
		{"GET", "/v1/utilisation", false}, {"GET", "/v1/check", true}, {"GET", "/v1/hosts", false},
		{"PUT", "/v1/hosts/n1", false}, {"DELETE", "/v1/hosts/n1", true}, {"GET", "/v1/blocks", false},
		{"POST", "/v1/hosts/n1/blocks", false}, {"DELETE", "/v1/hosts/n1/blocks/pods/10.0.0.0/28", false},
		{"GET", "/v1/endpoints", false}, {"POST", "/v1/endpoints", false}, {"DELETE", "/v1/endpoints/x", false},
		{"GET", "/v1/hosts/n1/releases", false},
	}
	for _, r := range routes {
		body := `{"topology": "x", "network": "pods", "id": "x", "host": "n1"}`
		if code, out := s.call("", r.method, r.path, body); code != 401 {
			t.Errorf("%s %s without credentials: %d %v", r.method, r.path, code, out)
		}
		if r.admin {
			if code, out := s.call(n1Token, r.method, r.path, body); code != 403 || !strings.Contains(fmt.Sprint(out["error"]), "admin") {
				t.Errorf("%s %s as a node: %d %v", r.method, r.path, code, out)
			}
		}
	}
	if after := s.state.Stats().Revision; after != before {
		t.Fatalf("refused callers changed the store: revision %d → %d", before, after)
	}
}

// TestTopologyApplySeesOtherServersWrites: a topology change planned on a
// server that has not heard of another server's writes must still see them
// (it plans on a fresh listing, committed under a guard): removing the group
// of a host that joined through the other server is refused, not orphaned.
func TestTopologyApplySeesOtherServersWrites(t *testing.T) {
	st := openBolt(t, t.TempDir())
	a := newTestServer(t, st) // no Follow: a never hears of b's writes
	b := newTestServer(t, st)
	a.must(adminToken, "POST", "/v1/topology", map[string]any{"topology": testTopology}, 200)
	b.must(adminToken, "PUT", "/v1/hosts/n2", map[string]any{"ip": "192.0.2.2", "labels": map[string]string{"rack": "2"}}, 200)
	b.must(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "vm-b", "host": "n2"}, 201)
	removed := strings.Replace(testTopology, `      - {name: rack-2, assignment: {matchLabels: {rack: "2"}}}
`, "", 1)
	code, out := a.call(adminToken, "POST", "/v1/topology", map[string]any{"topology": removed})
	if code != 409 || !strings.Contains(fmt.Sprint(out["conflicts"]), "n2") {
		t.Fatalf("removing the live rack through the other server: %d %v", code, out)
	}
	if check := b.must(adminToken, "GET", "/v1/check", nil, 200); check["clean"] != true {
		t.Fatalf("check: %v", check)
	}
}

// TestNodeAuthorisation: what a node identity may not do to other hosts, nor
// to its own registration.
func TestNodeAuthorisation(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.setup()
	s.must(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "vm-n2", "host": "n2"}, 201)
	s.must(n1Token, "DELETE", "/v1/endpoints/vm-n2", nil, 403)
	s.must(n1Token, "PUT", "/v1/hosts/n2", map[string]any{"labels": map[string]string{"rack": "2"}}, 403)
	s.must(n1Token, "POST", "/v1/endpoints", map[string]any{"id": "x", "host": "n2"}, 403)
	// Re-registering with the same labels is fine; moving itself is not.
	s.must(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "labels": map[string]string{"rack": "1"}}, 200)
	code, out := s.call(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "labels": map[string]string{"rack": "2"}})
	if code != 403 || !strings.Contains(fmt.Sprint(out["error"]), "only an admin") {
		t.Fatalf("a node relabelling itself: %d %v", code, out)
	}
	if _, err := ParseTokens([]byte(adminToken + " admin a\n" + adminToken + " node b\n")); err == nil {
		t.Fatal("a token given to two identities was accepted")
	}
}

// TestHealthReportsLoadFailure: a store holding records the server cannot
// load makes /healthz say so (503) instead of "ok".
func TestHealthReportsLoadFailure(t *testing.T) {
	st := openBolt(t, t.TempDir())
	s := newTestServer(t, st)
	s.setup()
	s.must("", "GET", "/healthz", nil, 200)
	s.must("", "GET", "/readyz", nil, 200)
	s.must("", "GET", "/livez", nil, 200)
	// Corrupt a host record behind the server's back, and make it reload.
	kv, err := st.Get(context.Background(), hostKey("n1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Txn(context.Background(), store.Update(hostKey("n1"), []byte(`{"groups": {"pods": "no-such-group"}}`), kv.Revision)); err != nil {
		t.Fatal(err)
	}
	s.state.mu.Lock()
	s.state.stale = true
	s.state.mu.Unlock()
	s.call(adminToken, "GET", "/v1/hosts", nil) // triggers the reload
	code, out := s.call("", "GET", "/healthz", nil)
	if code != 503 || !strings.Contains(fmt.Sprint(out["error"]), "no-such-group") {
		t.Fatalf("healthz after a failed reload: %d %v", code, out)
	}
	// Readiness follows health; liveness does not (a restart would not
	// repair the records).
	if code, _ := s.call("", "GET", "/readyz", nil); code != 503 {
		t.Fatalf("readyz after a failed reload: %d, want 503", code)
	}
	s.must("", "GET", "/livez", nil, 200)
}

// Host names and endpoint IDs follow the API's name rule: names that would
// break store keys, URL paths or `terrane ctl` tables are refused with the
// field and the rule, and nothing is written.
func TestAPIRefusesBadNames(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.setup()
	before := s.state.Stats().Revision
	bad := []string{"..%2F..%2Fetc", "a\nb", strings.Repeat("h", 5000), "h\xffst", "-x", "a b"}
	for _, name := range bad {
		t.Run(fmt.Sprintf("%.20q", name), func(t *testing.T) {
			code, out := s.call(adminToken, "PUT", "/v1/hosts/"+url.PathEscape(name), map[string]any{"labels": map[string]string{"rack": "1"}})
			if code != 400 || out["field"] != "host" || !strings.Contains(fmt.Sprint(out["error"]), "letters, digits") {
				t.Errorf("PUT /v1/hosts/%.20q: %d %v; want 400 at field host", name, code, out)
			}
			code, out = s.call(adminToken, "POST", "/v1/endpoints", map[string]any{"id": name, "host": "n1"})
			if code != 400 || out["field"] != "id" {
				t.Errorf("POST /v1/endpoints id %.20q: %d %v; want 400 at field id", name, code, out)
			}
			code, out = s.call(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "port-1", "host": name})
			if code != 400 || out["field"] != "host" {
				t.Errorf("POST /v1/endpoints host %.20q: %d %v; want 400 at field host", name, code, out)
			}
		})
	}
	if after := s.state.Stats().Revision; after != before {
		t.Fatalf("bad names changed the store: revision %d → %d", before, after)
	}
	// A VM port's UUID is a valid ID.
	s.must(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "3f1e1c0a-7a6b-4c53-9d1d-6c4a9f1e2b3c", "host": "n1"}, 201)
}

// Every error is the API's JSON, with the field where one applies: unknown
// paths and methods too (not the mux's plain text), and an unknown
// network in GET /v1/blocks is 404 as documented.
func TestAPIErrorsAreJSON(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.setup()
	for _, tc := range []struct {
		method, path string
		status       int
		field, want  string
	}{
		{"GET", "/v1/nope", 404, "", "no such path: GET /v1/nope"},
		{"GET", "/", 404, "", "the API is under /v1/"},
		{"PATCH", "/v1/hosts", 405, "", "PATCH is not allowed on /v1/hosts; use GET"},
		{"POST", "/healthz", 405, "", "use GET"},
		{"GET", "/v1/blocks?network=nope", 404, "network", `the topology has no network "nope"`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, out := s.call(adminToken, tc.method, tc.path, nil) // fails the test if the body is not JSON
			field, _ := out["field"].(string)
			if code != tc.status || field != tc.field || !strings.Contains(fmt.Sprint(out["error"]), tc.want) {
				t.Fatalf("%d %v; want %d, field %q, error containing %q", code, out, tc.status, tc.field, tc.want)
			}
		})
	}
	s.must(adminToken, "GET", "/v1/blocks?network=pods", nil, 200)
}

// The Authorization scheme is case-insensitive.
func TestAuthSchemeCaseInsensitive(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	for _, h := range []string{"Bearer " + adminToken, "bearer " + adminToken, "BEARER  " + adminToken, "  Bearer " + adminToken + " "} {
		req, _ := http.NewRequest("GET", s.url+"/v1/hosts", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("Authorization %q: %d, want 200", h, resp.StatusCode)
		}
	}
	for _, h := range []string{"Basic " + adminToken, adminToken, "Bearer", "Bearer x" + adminToken} {
		req, _ := http.NewRequest("GET", s.url+"/v1/hosts", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("Authorization %q: %d, want 401", h, resp.StatusCode)
		}
	}
}

// An address the request's type does not take is refused at its field,
// although encoding/json does not name it.
func TestAPIBadAddressNamesField(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.setup()
	for _, tc := range []struct {
		method, path, body, field string
	}{
		{"PUT", "/v1/hosts/n3", `{"ip": "nope", "labels": {"rack": "1"}}`, "ip"},
		{"POST", "/v1/endpoints", `{"id": "x", "host": "n1", "addr": "10.0.0.300"}`, "addr"},
	} {
		code, out := s.call(adminToken, tc.method, tc.path, tc.body)
		if code != 400 || out["field"] != tc.field || !strings.Contains(fmt.Sprint(out["error"]), "ParseAddr") {
			t.Errorf("%s %s %s: %d %v; want 400 at field %s", tc.method, tc.path, tc.body, code, out, tc.field)
		}
	}
}
