package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// untar reads an archive into name → content.
func untar(t *testing.T, b []byte) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	files, heads := map[string][]byte{}, map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, heads
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], heads[h.Name] = data, h
	}
}

// TestWriteArchive: the archive is what docker load and ctr import read —
// a manifest naming the tag, a config whose diff_id is the layer's digest
// and whose entrypoint is set, a layer holding the files with their modes
// and parent directories — and the same input gives the same bytes.
func TestWriteArchive(t *testing.T) {
	o := Options{Tag: "terrane:test", Entrypoint: []string{"/terrane"}, Env: []string{"PATH=/"},
		Files: []File{{Path: "/terrane", Mode: 0o755, Data: []byte("one")}, {Path: "/opt/cni/bin/terrane-cni", Mode: 0o755, Data: []byte("two")}}}
	var a, b bytes.Buffer
	if err := Write(&a, o); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same image written twice differs")
	}
	files, _ := untar(t, a.Bytes())
	var man []manifestEntry
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil || len(man) != 1 || len(man[0].RepoTags) != 1 || man[0].RepoTags[0] != "terrane:test" || len(man[0].Layers) != 1 {
		t.Fatalf("manifest.json %s: %v", files["manifest.json"], err)
	}
	var cfg imageConfig
	if err := json.Unmarshal(files[man[0].Config], &cfg); err != nil {
		t.Fatalf("config %s: %v", man[0].Config, err)
	}
	if sum := sha256.Sum256(files[man[0].Config]); man[0].Config != hex.EncodeToString(sum[:])+".json" {
		t.Errorf("config name %s is not its digest", man[0].Config)
	}
	layer := files[man[0].Layers[0]]
	sum := sha256.Sum256(layer)
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("diff_ids %v, layer digest %x", cfg.RootFS.DiffIDs, sum)
	}
	if cfg.OS != "linux" || cfg.Architecture == "" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/terrane" {
		t.Errorf("config %+v", cfg)
	}
	lf, lh := untar(t, layer)
	for name, want := range map[string]string{"terrane": "one", "opt/cni/bin/terrane-cni": "two"} {
		if string(lf[name]) != want || lh[name].Mode != 0o755 {
			t.Errorf("layer file %s: %q mode %o", name, lf[name], lh[name].Mode)
		}
	}
	for _, d := range []string{"opt/", "opt/cni/", "opt/cni/bin/"} {
		if h := lh[d]; h == nil || h.Typeflag != tar.TypeDir {
			t.Errorf("layer lacks directory %s", d)
		}
	}
}

func TestValidate(t *testing.T) {
	file := File{Path: "/terrane", Mode: 0o755, Data: []byte("x")}
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"no tag", Options{Files: []File{file}, Entrypoint: []string{"/terrane"}}, "tag"},
		{"tag without version", Options{Tag: "terrane", Files: []File{file}, Entrypoint: []string{"/terrane"}}, "want name:tag"},
		{"no files", Options{Tag: "t:1", Entrypoint: []string{"/terrane"}}, "at least one file"},
		{"relative path", Options{Tag: "t:1", Files: []File{{Path: "terrane"}}, Entrypoint: []string{"terrane"}}, "clean absolute path"},
		{"twice", Options{Tag: "t:1", Files: []File{file, file}, Entrypoint: []string{"/terrane"}}, "given twice"},
		{"entrypoint not in the image", Options{Tag: "t:1", Files: []File{file}, Entrypoint: []string{"/bin/sh"}}, "not a file of the image"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) || buf.Len() != 0 {
				t.Errorf("Write: %v (%d bytes written), want an error saying %q and nothing written", err, buf.Len(), tt.want)
			}
		})
	}
}

// TestStaticBinary: a CGO_ENABLED=0 build is accepted; a dynamically
// linked executable and a file that is no ELF are refused with the fix.
func TestStaticBinary(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	static := filepath.Join(dir, "static")
	cmd := exec.Command("go", "build", "-o", static, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if _, err := StaticBinary(static); err != nil {
		t.Errorf("a static build: %v", err)
	}
	dynamic, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StaticBinary(dynamic); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("%s (dynamically linked): %v, want the fix named", dynamic, err)
	}
	if _, err := StaticBinary(src); err == nil || !strings.Contains(err.Error(), "not an ELF executable") {
		t.Errorf("a source file: %v", err)
	}
}
