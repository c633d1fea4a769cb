package cniapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The release queue: when a DEL cannot reach the agent, the plugin writes the
// attachment to a file in the queue directory and reports success (a DEL must
// not fail because the agent is down); the agent replays the directory when
// it starts, before it serves ADDs, and removes each file once the release
// is done. Both sides use these helpers, so the format lives in one place.
//
// One file per attachment, named QueueFilePrefix + 24 hex digits of
// SHA-256(containerID "/" ifName) + ".json", holding the Attachment as JSON.
// A file is written under a temporary name (QueueTempPrefix...) and renamed
// into place, so a reader never sees half a file. Queuing the same
// attachment twice rewrites the same file.

// Queue file names.
const (
	QueueFilePrefix = "del-"
	QueueFileSuffix = ".json"
	QueueTempPrefix = ".tmp-"
)

// QueuedRelease is one queued release read back from the queue directory.
type QueuedRelease struct {
	Attachment
	// File is the file's name inside the queue directory.
	File string
	// Queued is when the file was written (its modification time): an
	// agent may skip a release queued before the attachment's current ADD.
	Queued time.Time
}

// QueueFile is the file name that holds a's queued release.
func QueueFile(a Attachment) string {
	sum := sha256.Sum256([]byte(a.ID()))
	return QueueFilePrefix + hex.EncodeToString(sum[:])[:24] + QueueFileSuffix
}

// WriteQueued records a release of a in dir, creating dir (0700) if needed.
// The file appears atomically and is synced before WriteQueued returns.
func WriteQueued(dir string, a Attachment) error {
	if a.ContainerID == "" || a.IfName == "" {
		return fmt.Errorf("queue release in %s: attachment %q has an empty container ID or interface name", dir, a.ID())
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("queue release of %s: %w", a.ID(), err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("queue release of %s: %w", a.ID(), err)
	}
	tmp, err := os.CreateTemp(dir, QueueTempPrefix+"*")
	if err != nil {
		return fmt.Errorf("queue release of %s: %w", a.ID(), err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("queue release of %s: %w", a.ID(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("queue release of %s: %w", a.ID(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("queue release of %s: %w", a.ID(), err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, QueueFile(a))); err != nil {
		return fmt.Errorf("queue release of %s: %w", a.ID(), err)
	}
	committed = true
	// The rename is durable only once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// ReadQueued returns the releases queued in dir, sorted by file name. A
// missing directory is an empty queue. Temporary files are skipped. A file
// that cannot be read or decoded is left out and named in the returned error,
// together with every good release.
func ReadQueued(dir string) ([]QueuedRelease, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read release queue: %w", err)
	}
	var out []QueuedRelease
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, QueueFilePrefix) || !strings.HasSuffix(name, QueueFileSuffix) {
			continue
		}
		q, err := readQueuedFile(dir, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, q)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out, errors.Join(errs...)
}

func readQueuedFile(dir, name string) (QueuedRelease, error) {
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return QueuedRelease{}, fmt.Errorf("queued release %s: %w", path, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return QueuedRelease{}, fmt.Errorf("queued release %s: %w", path, err)
	}
	var a Attachment
	if err := json.Unmarshal(data, &a); err != nil {
		return QueuedRelease{}, fmt.Errorf("queued release %s: %w", path, err)
	}
	if a.ContainerID == "" || a.IfName == "" {
		return QueuedRelease{}, fmt.Errorf("queued release %s: empty container ID or interface name", path)
	}
	return QueuedRelease{Attachment: a, File: name, Queued: info.ModTime()}, nil
}

// RemoveQueued deletes a queued release once the agent has done it.
// Removing one that is already gone succeeds.
func RemoveQueued(dir string, q QueuedRelease) error {
	name := q.File
	if name == "" {
		name = QueueFile(q.Attachment)
	}
	if filepath.Base(name) != name || !strings.HasPrefix(name, QueueFilePrefix) {
		return fmt.Errorf("remove queued release: %q is not a queue file name", name)
	}
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove queued release of %s: %w", q.ID(), err)
	}
	return nil
}
