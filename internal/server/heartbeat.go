package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/store"
)

// Heartbeats: an agent calls PUT /v1/hosts/{host}/heartbeat every few
// seconds; a host is healthy while its record is recent. The record
// heartbeats/<host> holds the time it was written and lives outside v1/
// on purpose: Follow and the snapshot long polls watch v1/, so a heartbeat
// never makes a server reload its state or wake every agent. It is written
// at most once per heartbeatWriteInterval, whatever the agents' rate, so a
// cluster of N hosts costs about N / 15 s store writes; every server reads
// it with one List.
const (
	keyHeartbeats          = "heartbeats/"
	heartbeatWriteInterval = 15 * time.Second
)

type heartbeatRecord struct {
	At time.Time `json:"at"`
}

func heartbeatKey(host string) string { return keyHeartbeats + host }

func (a *API) heartbeat(w http.ResponseWriter, r *http.Request, id Identity) error {
	host := r.PathValue("host")
	if err := mayActOnHost(id, host); err != nil {
		return &apiError{http.StatusForbidden, "", err.Error()}
	}
	if err := a.requireRegistered(r.Context(), host); err != nil {
		return err
	}
	res, err := a.state.Heartbeat(r.Context(), host, time.Now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// requireRegistered refuses a report from a host the state does not hold.
func (a *API) requireRegistered(ctx context.Context, host string) error {
	registered := false
	if err := a.state.View(ctx, func(al *ipam.Allocator, _ *topologyRecord) error {
		if al != nil {
			_, registered = al.Host(host)
		}
		return nil
	}); err != nil {
		return err
	}
	if !registered {
		return &apiError{http.StatusNotFound, "host", fmt.Sprintf("host %s is not registered; register it first (PUT /v1/hosts/%s)", host, host)}
	}
	return nil
}

// Heartbeat records that host's agent checked in at now, writing its
// record only when the stored one is older than heartbeatWriteInterval.
func (s *State) Heartbeat(ctx context.Context, host string, now time.Time) (api.HeartbeatResult, error) {
	res := api.HeartbeatResult{Host: host}
	// An address report is a sign of life too: while the agent's reports
	// are recent, its heartbeats cost no write.
	if at, err := s.reportedAt(ctx, host); err != nil {
		return res, err
	} else if now.Sub(at) < heartbeatWriteInterval && !now.Before(at) {
		res.Stored = at
		return res, nil
	}
	key := heartbeatKey(host)
	for attempt := range maxConflictRetries {
		kv, err := s.st.Get(ctx, key)
		var rec heartbeatRecord
		switch {
		case errors.Is(err, store.ErrNotFound):
			kv = store.KV{}
		case err != nil:
			return res, fmt.Errorf("read heartbeat of %s: %w", host, err)
		default:
			if err := json.Unmarshal(kv.Value, &rec); err == nil && now.Sub(rec.At) < heartbeatWriteInterval && !now.Before(rec.At) {
				res.Stored = rec.At
				return res, nil
			}
		}
		value, _ := json.Marshal(heartbeatRecord{At: now.UTC()})
		op := store.Create(key, value)
		if kv.Revision != 0 {
			op = store.Update(key, value, kv.Revision)
		}
		rev, err := s.st.Txn(ctx, op)
		if errors.Is(err, store.ErrConflict) {
			backoff(attempt + 1) // another server wrote it: read again
			continue
		}
		if err != nil {
			return res, fmt.Errorf("write heartbeat of %s: %w", host, err)
		}
		s.wroteOutsideState(rev)
		res.Stored, res.Written = now.UTC(), true
		return res, nil
	}
	return res, fmt.Errorf("write heartbeat of %s: %w", host, store.ErrConflict)
}

// wroteOutsideState notes a commit of ours outside v1/ (heartbeats,
// leases): it changes nothing the state holds, so the state stays
// contiguous through it and the next commit does not mistake the revision
// it skipped for another writer's.
func (s *State) wroteOutsideState(rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.otherWrites++
	if rev == s.contiguous+1 {
		s.contiguous = rev
	}
}

// Heartbeats reads the last sign of life of every host that has one: its
// last heartbeat or address report, whichever is newer.
func (s *State) Heartbeats(ctx context.Context) (map[string]time.Time, error) {
	out, err := s.heartbeatRecords(ctx)
	if err != nil {
		return nil, err
	}
	reports, err := s.Reports(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range reports {
		if r.At.After(out[r.Host]) {
			out[r.Host] = r.At
		}
	}
	return out, nil
}

// heartbeatRecords reads every stored heartbeat, reports left aside.
func (s *State) heartbeatRecords(ctx context.Context) (map[string]time.Time, error) {
	kvs, _, err := s.st.List(ctx, keyHeartbeats)
	if err != nil {
		return nil, fmt.Errorf("list heartbeats: %w", err)
	}
	out := make(map[string]time.Time, len(kvs))
	for _, kv := range kvs {
		var rec heartbeatRecord
		if json.Unmarshal(kv.Value, &rec) == nil {
			out[strings.TrimPrefix(kv.Key, keyHeartbeats)] = rec.At
		}
	}
	return out, nil
}

// reportedAt is when host's last address report was stored (zero: never).
func (s *State) reportedAt(ctx context.Context, host string) (time.Time, error) {
	kv, err := s.st.Get(ctx, addressesKey(host))
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read the address report of %s: %w", host, err)
	}
	var r struct {
		At time.Time `json:"at"`
	}
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return time.Time{}, nil // unreadable: the heartbeat is written
	}
	return r.At, nil
}
