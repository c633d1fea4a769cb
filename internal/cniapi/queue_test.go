package cniapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQueueRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "queue") // created by WriteQueued
	a := Attachment{ContainerID: "c1", IfName: "eth0"}
	b := Attachment{ContainerID: "c2", IfName: "net1"}
	for _, at := range []Attachment{a, b, a} { // a twice: one file
		if err := WriteQueued(dir, at); err != nil {
			t.Fatal(err)
		}
	}
	// Leftovers a reader must skip: a temp file from a crashed writer and
	// an unrelated file.
	for _, name := range []string{QueueTempPrefix + "123", "README"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadQueued(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("ReadQueued = %+v, want a and b once each", got)
	}
	seen := map[Attachment]bool{}
	for _, q := range got {
		seen[q.Attachment] = true
		if q.File != QueueFile(q.Attachment) {
			t.Errorf("file %s, want %s", q.File, QueueFile(q.Attachment))
		}
		if q.Queued.IsZero() {
			t.Errorf("%s: no queue time", q.File)
		}
	}
	if !seen[a] || !seen[b] {
		t.Fatalf("ReadQueued = %+v, want %v and %v", got, a, b)
	}
	if got[0].File > got[1].File {
		t.Errorf("not sorted by file name: %s, %s", got[0].File, got[1].File)
	}
	data, err := os.ReadFile(filepath.Join(dir, QueueFile(a)))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"containerID":"c1","ifName":"eth0"}` + "\n"; string(data) != want {
		t.Errorf("file content %q, want %q", data, want)
	}
	for _, q := range got {
		if err := RemoveQueued(dir, q); err != nil {
			t.Fatal(err)
		}
		if err := RemoveQueued(dir, q); err != nil {
			t.Fatalf("second remove: %v", err)
		}
	}
	if got, err := ReadQueued(dir); err != nil || len(got) != 0 {
		t.Fatalf("after remove: %+v, %v", got, err)
	}
}

func TestQueueFileNames(t *testing.T) {
	a := Attachment{ContainerID: "c1", IfName: "eth0"}
	name := QueueFile(a)
	if !strings.HasPrefix(name, QueueFilePrefix) || !strings.HasSuffix(name, QueueFileSuffix) || len(name) != len(QueueFilePrefix)+24+len(QueueFileSuffix) {
		t.Errorf("QueueFile = %q", name)
	}
	// The separator is part of the key: c1/eth0 and c1e/th0 differ.
	if QueueFile(Attachment{ContainerID: "c1e", IfName: "th0"}) == name {
		t.Error("different attachments share a file name")
	}
	if err := RemoveQueued(t.TempDir(), QueuedRelease{File: "../etc/passwd"}); err == nil {
		t.Error("RemoveQueued accepted a path outside the queue")
	}
}

func TestReadQueuedMissingDirAndBadFiles(t *testing.T) {
	got, err := ReadQueued(filepath.Join(t.TempDir(), "nope"))
	if err != nil || got != nil {
		t.Fatalf("missing dir: %v, %v", got, err)
	}
	dir := t.TempDir()
	good := Attachment{ContainerID: "c1", IfName: "eth0"}
	if err := WriteQueued(dir, good); err != nil {
		t.Fatal(err)
	}
	bad := QueueFilePrefix + "bad" + QueueFileSuffix
	empty := QueueFilePrefix + "empty" + QueueFileSuffix
	os.WriteFile(filepath.Join(dir, bad), []byte("{not json"), 0o600)
	os.WriteFile(filepath.Join(dir, empty), []byte(`{"containerID":""}`), 0o600)
	got, err = ReadQueued(dir)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), empty) {
		t.Errorf("error %v, want it to name %s and %s", err, bad, empty)
	}
	if len(got) != 1 || got[0].Attachment != good {
		t.Errorf("good releases = %+v, want %v", got, good)
	}
	if err := WriteQueued(dir, Attachment{ContainerID: "c"}); err == nil {
		t.Error("WriteQueued accepted an attachment without an interface name")
	}
}
