package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/store"
)

// Orphaned pod addresses (docs/design/kubernetes.md). The Kubernetes Pod
// controller, on the leader only, publishes two records per host:
//
//   - orphans/<host>: its marks and the releases it asked, for `terrane ctl
//     check` and explain on any server. Outside v1/ like address reports: a
//     mark wakes no agent and reloads no server's state.
//   - v1/releases/<host>: the releases the host's agent is to execute,
//     inside v1/ so that writing one wakes the agents' long polls; the
//     agent gets its own with its snapshot (?host=) within one round trip.
//
// No API route writes either: only a controller running inside the server
// does, through State.
const (
	keyOrphans  = "orphans/"
	keyReleases = "v1/releases/"
)

func orphansKey(host string) string  { return keyOrphans + host }
func releasesKey(host string) string { return keyReleases + host }

// releasesRecord is v1/releases/<host>.
type releasesRecord struct {
	Releases []ipam.OrphanedAddress `json:"releases"`
}

// loadReleases reads the release requests out of a state listing. s.mu is
// held.
func (s *State) loadReleases(kvs []store.KV) {
	s.releases = map[string][]ipam.OrphanedAddress{}
	for _, kv := range kvs {
		if !strings.HasPrefix(kv.Key, keyReleases) {
			continue
		}
		var r releasesRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			s.log.Warn("unreadable release requests; ignored until the leader writes them again", "key", kv.Key, "err", err)
			continue
		}
		s.releases[strings.TrimPrefix(kv.Key, keyReleases)] = r.Releases
	}
}

// Releases are the release requests of host's agent, as of the state's
// revision.
func (s *State) Releases(ctx context.Context, host string) ([]ipam.OrphanedAddress, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stale {
		if err := s.reload(ctx); err != nil {
			return nil, err
		}
	}
	return slices.Clone(s.releases[host]), nil
}

// SetReleases replaces host's release requests (none: the record is
// deleted), a compare-and-swap on the record's revision. Writing them wakes
// every long poll, so the host's agent gets them at once. It returns how
// many releases are new (for the metrics).
func (s *State) SetReleases(ctx context.Context, host string, rels []ipam.OrphanedAddress) (added int, err error) {
	key := releasesKey(host)
	for attempt := range maxConflictRetries {
		s.mu.Lock()
		added, done, err := s.setReleasesLocked(ctx, key, host, rels)
		s.mu.Unlock()
		if done || err != nil {
			return added, err
		}
		backoff(attempt + 1)
	}
	return 0, fmt.Errorf("write the release requests of %s: %w", host, store.ErrConflict)
}

// setReleasesLocked is one attempt of SetReleases; done is false after a
// conflict (the state is then stale and reloads). s.mu is held.
func (s *State) setReleasesLocked(ctx context.Context, key, host string, rels []ipam.OrphanedAddress) (added int, done bool, err error) {
	if s.stale {
		if err := s.reload(ctx); err != nil {
			return 0, false, err
		}
	}
	cur := s.releases[host]
	if slices.EqualFunc(cur, rels, func(x, y ipam.OrphanedAddress) bool { return x == y }) {
		return 0, true, nil
	}
	for _, r := range rels {
		if !slices.ContainsFunc(cur, func(c ipam.OrphanedAddress) bool { return c.Key() == r.Key() }) {
			added++
		}
	}
	rev := s.revs[key]
	var op store.Op
	switch {
	case len(rels) == 0 && rev == 0:
		delete(s.releases, host)
		return 0, true, nil
	case len(rels) == 0:
		op = store.Delete(key, rev)
	default:
		v, err := json.Marshal(releasesRecord{Releases: rels})
		if err != nil {
			return 0, false, err
		}
		op = store.Create(key, v)
		if rev != 0 {
			op = store.Update(key, v, rev)
		}
	}
	newRev, err := s.st.Txn(ctx, op)
	if errors.Is(err, store.ErrConflict) {
		s.stale = true
		s.retries++
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("write the release requests of %s: %w", host, err)
	}
	s.committed([]store.Op{op}, newRev)
	if len(rels) == 0 {
		delete(s.releases, host)
	} else {
		s.releases[host] = slices.Clone(rels)
	}
	s.orphanReleases += int64(added)
	return added, true, nil
}

// Orphans reads every host's published marks and requested releases.
func (s *State) Orphans(ctx context.Context) ([]ipam.HostOrphans, error) {
	kvs, _, err := s.st.List(ctx, keyOrphans)
	if err != nil {
		return nil, fmt.Errorf("list orphaned pod addresses: %w", err)
	}
	out := make([]ipam.HostOrphans, 0, len(kvs))
	for _, kv := range kvs {
		var h ipam.HostOrphans
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			return nil, fmt.Errorf("orphaned pod addresses %s: %w", kv.Key, err)
		}
		h.Host = strings.TrimPrefix(kv.Key, keyOrphans)
		out = append(out, h)
	}
	return out, nil
}

// PublishOrphans replaces host's published marks (none: the record is
// deleted); an unchanged set writes nothing.
func (s *State) PublishOrphans(ctx context.Context, host string, marks []ipam.OrphanedAddress) error {
	key := orphansKey(host)
	for attempt := range maxConflictRetries {
		kv, err := s.st.Get(ctx, key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			kv = store.KV{}
		case err != nil:
			return fmt.Errorf("read the orphaned pod addresses of %s: %w", host, err)
		}
		var op store.Op
		if len(marks) == 0 {
			if kv.Revision == 0 {
				return nil
			}
			op = store.Delete(key, kv.Revision)
		} else {
			v, err := json.Marshal(ipam.HostOrphans{Host: host, Addresses: marks})
			if err != nil {
				return err
			}
			if kv.Revision != 0 && string(v) == string(kv.Value) {
				return nil
			}
			op = store.Create(key, v)
			if kv.Revision != 0 {
				op = store.Update(key, v, kv.Revision)
			}
		}
		rev, err := s.st.Txn(ctx, op)
		if errors.Is(err, store.ErrConflict) {
			backoff(attempt + 1)
			continue
		}
		if err != nil {
			return fmt.Errorf("write the orphaned pod addresses of %s: %w", host, err)
		}
		s.wroteOutsideState(rev)
		return nil
	}
	return fmt.Errorf("write the orphaned pod addresses of %s: %w", host, store.ErrConflict)
}

// Report reads host's last address report (ok false: it has none).
func (s *State) Report(ctx context.Context, host string) (r ipam.HostReport, ok bool, err error) {
	kv, err := s.st.Get(ctx, addressesKey(host))
	if errors.Is(err, store.ErrNotFound) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("read the address report of %s: %w", host, err)
	}
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return r, false, fmt.Errorf("address report of %s: %w", host, err)
	}
	r.Host = host
	return r, true, nil
}

// getReleases answers GET /v1/hosts/{host}/releases: the releases the
// host's agent is to execute. A node identity reads only its own.
func (a *API) getReleases(w http.ResponseWriter, r *http.Request, id Identity) error {
	host := r.PathValue("host")
	if err := mayActOnHost(id, host); err != nil {
		return &apiError{http.StatusForbidden, "", err.Error()}
	}
	rels, err := a.state.Releases(r.Context(), host)
	if err != nil {
		return err
	}
	if rels == nil {
		rels = []ipam.OrphanedAddress{}
	}
	writeJSON(w, http.StatusOK, api.HostReleases{Host: host, Releases: rels})
	return nil
}
