package server

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestHeartbeat(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	if code, body := s.call(adminToken, "POST", "/v1/topology", map[string]any{"topology": testTopology}); code != http.StatusOK {
		t.Fatalf("apply: %d %v", code, body)
	}
	if code, _ := s.call(n1Token, "PUT", "/v1/hosts/n1/heartbeat", nil); code != http.StatusNotFound {
		t.Errorf("unregistered host: %d, want 404", code)
	}
	if code, body := s.call(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "labels": map[string]string{"rack": "1"}}); code != http.StatusOK {
		t.Fatalf("register: %d %v", code, body)
	}
	if code, _ := s.call(adminToken, "PUT", "/v1/hosts/n2", map[string]any{"ip": "192.0.2.2", "labels": map[string]string{"rack": "2"}}); code != http.StatusOK {
		t.Fatal("register n2")
	}
	if code, _ := s.call(n1Token, "PUT", "/v1/hosts/n2/heartbeat", nil); code != http.StatusForbidden {
		t.Errorf("a node beating for another host: %d, want 403", code)
	}
	before, reloads := s.state.Stats().Revision, s.state.Stats().Reloads
	code, body := s.call(n1Token, "PUT", "/v1/hosts/n1/heartbeat", nil)
	if code != http.StatusOK || body["written"] != true {
		t.Fatalf("first heartbeat: %d %v", code, body)
	}
	// Within the write interval the record is not written again.
	if _, body := s.call(n1Token, "PUT", "/v1/hosts/n1/heartbeat", nil); body["written"] != false {
		t.Errorf("second heartbeat wrote: %v", body)
	}
	beats, err := s.state.Heartbeats(context.Background())
	if err != nil || time.Since(beats["n1"]) > time.Minute || len(beats) != 1 {
		t.Errorf("heartbeats = %v, %v", beats, err)
	}
	// Heartbeats live outside v1/: the state does not move or go stale,
	// and the next commit is still contiguous with the last reload.
	if got := s.state.Stats().Revision; got != before {
		t.Errorf("state revision moved from %d to %d on a heartbeat", before, got)
	}
	if code, _ := s.call(adminToken, "PUT", "/v1/hosts/n3", map[string]any{"ip": "192.0.2.3", "labels": map[string]string{"rack": "1"}}); code != http.StatusOK {
		t.Fatal("register n3")
	}
	if got := s.state.Stats().Reloads; got != reloads {
		t.Errorf("the state was reloaded %d times after a heartbeat and a registration, want 0", got-reloads)
	}
	// An old record is rewritten.
	res, err := s.state.Heartbeat(context.Background(), "n1", time.Now().Add(heartbeatWriteInterval+time.Second))
	if err != nil || !res.Written {
		t.Errorf("heartbeat after the interval: %+v, %v", res, err)
	}
}
