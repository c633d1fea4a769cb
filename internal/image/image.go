// Package image writes container images as docker-save archives (the
// format `docker load` and `ctr images import` read), so Terrane's image
// can be built and shipped without a registry or a container engine: one
// layer holding static binaries, a config with the entrypoint, a manifest
// with the tag.
package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"
)

// File is one file of the image's layer.
type File struct {
	// Path is where it lies in the image, absolute ("/terrane").
	Path string
	Mode os.FileMode
	Data []byte
}

// Options describe an image.
type Options struct {
	// Tag names the image, "name:tag" (e.g. "terrane:v0.4.0").
	Tag        string
	Files      []File
	Entrypoint []string
	Env        []string
	// Arch is the GOARCH the binaries are for (default: this one).
	Arch string
	// Created stamps the config (zero: the Unix epoch, so the same files
	// make the same image).
	Created time.Time
}

// Validate checks the options before anything is written.
func (o *Options) Validate() error {
	var errs []error
	name, tag, ok := strings.Cut(o.Tag, ":")
	if !ok || name == "" || tag == "" || strings.ContainsAny(o.Tag, " \t\n") {
		errs = append(errs, fmt.Errorf("tag %q: want name:tag, e.g. terrane:dev", o.Tag))
	}
	if len(o.Files) == 0 {
		errs = append(errs, errors.New("files: the image needs at least one file"))
	}
	seen := map[string]bool{}
	for i, f := range o.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			errs = append(errs, fmt.Errorf("files[%d].path %q: want a clean absolute path such as /terrane", i, f.Path))
		}
		if seen[f.Path] {
			errs = append(errs, fmt.Errorf("files[%d].path %q: given twice", i, f.Path))
		}
		seen[f.Path] = true
	}
	if len(o.Entrypoint) == 0 {
		errs = append(errs, errors.New("entrypoint: required, e.g. [/terrane]"))
	} else if !seen[o.Entrypoint[0]] {
		errs = append(errs, fmt.Errorf("entrypoint %q: not a file of the image", o.Entrypoint[0]))
	}
	return errors.Join(errs...)
}

// Write writes the image as a docker-save archive to w.
func Write(w io.Writer, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0).UTC()
	}
	layer, err := layerTar(o.Files, o.Created)
	if err != nil {
		return err
	}
	diffID := digest(layer)
	config, err := json.Marshal(imageConfig{
		Architecture: o.Arch, OS: "linux", Created: o.Created,
		Config: containerConfig{Entrypoint: o.Entrypoint, Env: o.Env},
		RootFS: rootFS{Type: "layers", DiffIDs: []string{"sha256:" + diffID}},
	})
	if err != nil {
		return err
	}
	configName := digest(config) + ".json"
	layerName := diffID + "/layer.tar"
	manifest, err := json.Marshal([]manifestEntry{{Config: configName, RepoTags: []string{o.Tag}, Layers: []string{layerName}}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, e := range []struct {
		name string
		data []byte
	}{{diffID + "/", nil}, {layerName, layer}, {configName, config}, {"manifest.json", manifest}} {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: o.Created, Typeflag: tar.TypeReg}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// layerTar is the layer: every file, with its parent directories.
func layerTar(files []File, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.Path); d != "/"; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d[1:] + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: mtime}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.Path[1:], Mode: int64(f.Mode.Perm()), Size: int64(len(f.Data)), Typeflag: tar.TypeReg, ModTime: mtime}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

type manifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

type imageConfig struct {
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Created      time.Time       `json:"created"`
	Config       containerConfig `json:"config"`
	RootFS       rootFS          `json:"rootfs"`
}

type containerConfig struct {
	Entrypoint []string `json:"Entrypoint"`
	Env        []string `json:"Env,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// StaticBinary reads the executable at p and checks that it runs in an
// empty image: an ELF executable with no dynamic loader.
func StaticBinary(p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s is not an ELF executable: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("%s is linked dynamically (it needs a loader the image does not have); build it with CGO_ENABLED=0 go build", p)
		}
	}
	return data, nil
}
