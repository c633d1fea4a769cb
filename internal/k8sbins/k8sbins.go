// Package k8sbins builds the real Kubernetes binaries Terrane runs against —
// etcd, kube-apiserver, kubectl and, when asked, kubelet — from the Go
// module proxy into a cache directory outside the checkout, keyed by
// version. It builds only what is asked and missing: a warm cache costs
// nothing, a cold one several minutes of compiling (Estimate).
//
// It is the one definition of those binaries: scripts/k8s-bins.sh runs it
// (`terrane lab k8s-bins`), internal/k8stest finds them with Dir, and
// `terrane lab up --k8s` builds what it lacks on its first run.
package k8sbins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Default versions: the release the cache directory is keyed by.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.3"
)

// DirEnv overrides the cache directory.
const DirEnv = "TERRANE_K8S_BINS"

// CacheRoot holds one directory per version pair.
const CacheRoot = "/var/cache/terrane/k8s"

// BuildCommand is what a developer runs to build the control-plane
// binaries (append --kubelet for kubelet too).
const BuildCommand = "bash scripts/k8s-bins.sh"

// The binaries this package builds.
const (
	Etcd      = "etcd"
	APIServer = "kube-apiserver"
	Kubectl   = "kubectl"
	Kubelet   = "kubelet"
)

// ControlPlane are the binaries a control plane needs: what the tests and
// `lab up --k8s` use.
var ControlPlane = []string{Etcd, APIServer, Kubectl}

// k8sPackages are the k8s.io/kubernetes commands, by binary.
var k8sPackages = map[string]string{
	APIServer: "k8s.io/kubernetes/cmd/kube-apiserver",
	Kubectl:   "k8s.io/kubernetes/cmd/kubectl",
	Kubelet:   "k8s.io/kubernetes/cmd/kubelet",
}

// estimates are cold build times on 2 cores, measured (kubectl and
// kubelet after kube-apiserver, whose packages they share).
var estimates = map[string]time.Duration{
	Etcd:      90 * time.Second,
	APIServer: 270 * time.Second,
	Kubectl:   90 * time.Second,
	Kubelet:   150 * time.Second,
}

// resolveEstimate is the module download and `go mod tidy` of the
// Kubernetes wrapper module on a cold module cache.
const resolveEstimate = 60 * time.Second

// Dir is the cache directory of the default versions: $TERRANE_K8S_BINS,
// else CacheRoot/<kubernetes>-etcd<etcd>.
func Dir() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	return DirFor(KubernetesVersion, EtcdVersion)
}

// DirFor is the default cache directory of a version pair.
func DirFor(kubernetes, etcd string) string {
	return filepath.Join(CacheRoot, kubernetes+"-etcd"+etcd)
}

// Options say what to build and where.
type Options struct {
	// Dir is the cache directory (default Dir(), or DirFor the versions
	// when they are not the defaults).
	Dir string
	// Kubernetes and Etcd are release tags (default KubernetesVersion,
	// EtcdVersion).
	Kubernetes, Etcd string
	// Binaries to have (default ControlPlane).
	Binaries []string
	// Progress receives one line per step and, while a build runs, one
	// every ProgressEvery (default 30 s); nil discards.
	Progress      func(line string)
	ProgressEvery time.Duration
	// Go is the go command (default: GoCommand()).
	Go string
}

func (o *Options) defaults() error {
	if o.Kubernetes == "" {
		o.Kubernetes = KubernetesVersion
	}
	if o.Etcd == "" {
		o.Etcd = EtcdVersion
	}
	if o.Dir == "" {
		o.Dir = Dir()
		if os.Getenv(DirEnv) == "" && (o.Kubernetes != KubernetesVersion || o.Etcd != EtcdVersion) {
			o.Dir = DirFor(o.Kubernetes, o.Etcd)
		}
	}
	if len(o.Binaries) == 0 {
		o.Binaries = ControlPlane
	}
	for _, b := range o.Binaries {
		if _, ok := estimates[b]; !ok {
			return fmt.Errorf("binary %q: this package builds %s", b, strings.Join(slices.Sorted(maps.Keys(estimates)), ", "))
		}
	}
	if !strings.HasPrefix(o.Kubernetes, "v1.") {
		return fmt.Errorf("kubernetes version %q: want a v1.N.M release tag", o.Kubernetes)
	}
	if o.ProgressEvery == 0 {
		o.ProgressEvery = 30 * time.Second
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	return nil
}

// Missing lists the binaries of bins not executable in dir.
func Missing(dir string, bins []string) []string {
	var out []string
	for _, b := range bins {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			out = append(out, b)
		}
	}
	return out
}

// Estimate is how long building the missing binaries of bins takes on 2
// cores with a cold module cache.
func Estimate(dir string, bins []string) time.Duration {
	var d time.Duration
	k8s := false
	for _, b := range Missing(dir, bins) {
		d += estimates[b]
		k8s = k8s || b != Etcd
	}
	if k8s {
		d += resolveEstimate
	}
	return d
}

// About says a duration the way a person estimates it: "about 6 minutes".
func About(d time.Duration) string {
	if d < 90*time.Second {
		return fmt.Sprintf("about %d seconds", int(d.Round(10*time.Second).Seconds()))
	}
	return fmt.Sprintf("about %d minutes", int(d.Round(time.Minute).Minutes()))
}

// ErrNoGo: building needs the go command.
var ErrNoGo = errors.New("no go command")

// GoCommand finds the go command: on PATH, else /usr/local/go/bin/go.
func GoCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if fi, err := os.Stat("/usr/local/go/bin/go"); err == nil && !fi.IsDir() {
		return "/usr/local/go/bin/go", nil
	}
	return "", ErrNoGo
}

// Ensure builds the binaries of o that are missing in o.Dir and returns
// the directory. Concurrent callers (two test runs, a lab and a test)
// take turns on a lock in the directory; each binary appears atomically.
func Ensure(ctx context.Context, o Options) (string, error) {
	if err := o.defaults(); err != nil {
		return "", err
	}
	missing := Missing(o.Dir, o.Binaries)
	if len(missing) == 0 {
		return o.Dir, nil
	}
	goCmd, err := o.Go, error(nil)
	if goCmd == "" {
		goCmd, err = GoCommand()
	} else if _, serr := os.Stat(goCmd); serr != nil {
		err = ErrNoGo
	}
	if err != nil {
		return "", fmt.Errorf("%s missing in %s and building them needs the go command (Go 1.26 or newer) on PATH: "+
			"install Go, or put the binaries there; a first build takes %s and 3 GB of memory on 2 cores, later runs nothing",
			strings.Join(missing, ", "), o.Dir, About(Estimate(o.Dir, o.Binaries)))
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return "", fmt.Errorf("k8s binaries directory: %w", err)
	}
	unlock, err := lockDir(ctx, o.Dir, o.Progress)
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another builder may have finished while we waited.
	missing = Missing(o.Dir, o.Binaries)
	if len(missing) == 0 {
		return o.Dir, nil
	}
	b := &builder{o: o, goCmd: goCmd, start: time.Now()}
	b.say("building %s into %s: %s on 2 cores with a cold module cache (3 GB of memory at the peak); cached for later runs",
		strings.Join(missing, ", "), o.Dir, About(Estimate(o.Dir, o.Binaries)))
	work, err := os.MkdirTemp("", "terrane-k8sbins-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if slices.Contains(missing, Etcd) {
		if err := b.buildEtcd(ctx, filepath.Join(work, "etcd")); err != nil {
			return "", err
		}
	}
	var k8s []string
	for _, m := range missing {
		if m != Etcd {
			k8s = append(k8s, m)
		}
	}
	if len(k8s) > 0 {
		if err := b.buildKubernetes(ctx, filepath.Join(work, "k8s"), k8s); err != nil {
			return "", err
		}
	}
	b.say("all of %s in %s", strings.Join(o.Binaries, ", "), o.Dir)
	return o.Dir, nil
}

// lockDir serializes builders of one directory.
func lockDir(ctx context.Context, dir string, progress func(string)) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		if !said {
			progress(fmt.Sprintf("k8s-bins: another build of %s is running; waiting for it", dir))
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

type builder struct {
	o     Options
	goCmd string
	start time.Time
}

func (b *builder) say(format string, args ...any) {
	b.o.Progress(fmt.Sprintf("k8s-bins [%4ds] ", int(time.Since(b.start).Seconds())) + fmt.Sprintf(format, args...))
}

// goRun runs the go command in dir, saying every ProgressEvery how long it
// has run against its estimate; the error carries the end of its output.
func (b *builder) goRun(ctx context.Context, dir, what string, estimate time.Duration, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, b.goCmd, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	began := time.Now()
	t := time.NewTicker(b.o.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return nil, fmt.Errorf("%s: go %s: %w\n%s", what, strings.Join(args, " "), err, lastLines(stderr.Bytes(), 20))
			}
			return stdout.Bytes(), nil
		case <-t.C:
			el := time.Since(began).Round(time.Second)
			if left := estimate - el; left > 0 {
				b.say("%s: %s so far, about %s to go", what, el, left.Round(time.Second))
			} else {
				b.say("%s: %s so far (estimate %s; a slow or busy machine takes longer)", what, el, estimate)
			}
		}
	}
}

// install moves a finished binary into the cache under its name.
func (b *builder) install(tmp, name string) error {
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(b.o.Dir, name))
}

// tmpPath is a unique file name in the cache directory (same filesystem,
// so the final rename is atomic).
func (b *builder) tmpPath(name string) (string, error) {
	f, err := os.CreateTemp(b.o.Dir, "."+name+".tmp-*")
	if err != nil {
		return "", err
	}
	p := f.Name()
	f.Close()
	return p, nil
}

func (b *builder) buildEtcd(ctx context.Context, work string) error {
	v := b.o.Etcd
	b.say("etcd %s: resolving and building (about %s cold)", v, estimates[Etcd])
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"go.mod": "module terrane.local/etcdbin\n\ngo 1.26\n",
		"tools.go": "//go:build tools\n\npackage tools\n\nimport (\n" +
			"\t_ \"go.etcd.io/etcd/etcdctl/v3/ctlv3\"\n\t_ \"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	if _, err := b.goRun(ctx, work, "etcd: go get", estimates[Etcd]/2, "get", "go.etcd.io/etcd/server/v3@"+v, "go.etcd.io/etcd/etcdctl/v3@"+v); err != nil {
		return err
	}
	if _, err := b.goRun(ctx, work, "etcd: go mod tidy", estimates[Etcd]/2, "mod", "tidy"); err != nil {
		return err
	}
	tmp, err := b.tmpPath(Etcd)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if _, err := b.goRun(ctx, work, "etcd: build", estimates[Etcd]/2, "build", "-trimpath", "-o", tmp, "go.etcd.io/etcd/server/v3"); err != nil {
		return err
	}
	if err := b.install(tmp, Etcd); err != nil {
		return err
	}
	b.say("etcd: done")
	return nil
}

// stagingRe matches k8s.io/kubernetes' replaces of its staging modules:
// "k8s.io/X => ./staging/src/k8s.io/X".
var stagingRe = regexp.MustCompile(`(k8s\.io/[A-Za-z0-9._/-]+) => \./staging/src/k8s\.io/[A-Za-z0-9._/-]+`)

var goLineRe = regexp.MustCompile(`(?m)^go [0-9][0-9.]*$`)

// WrapperModule is the go.mod of a module that builds k8s.io/kubernetes
// commands at release version: every staging replace of kubernetesGoMod
// (k8s.io/kubernetes' own go.mod) becomes the published module at
// v0.<minor>.<patch>. It fails when the go.mod does not look like one.
func WrapperModule(kubernetesGoMod []byte, version string) ([]byte, error) {
	staging := map[string]bool{}
	for _, m := range stagingRe.FindAllSubmatch(kubernetesGoMod, -1) {
		staging[string(m[1])] = true
	}
	if len(staging) < 20 {
		return nil, fmt.Errorf("k8s.io/kubernetes@%s's go.mod has %d staging replaces, want 20 or more", version, len(staging))
	}
	goLine := goLineRe.Find(kubernetesGoMod)
	if goLine == nil {
		return nil, fmt.Errorf("k8s.io/kubernetes@%s's go.mod has no go line", version)
	}
	stagingVersion := "v0." + strings.TrimPrefix(version, "v1.")
	var w bytes.Buffer
	fmt.Fprintf(&w, "module terrane.local/k8sbin\n\n%s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", goLine, version)
	for _, m := range slices.Sorted(maps.Keys(staging)) {
		fmt.Fprintf(&w, "\t%s => %s %s\n", m, m, stagingVersion)
	}
	w.WriteString(")\n")
	return w.Bytes(), nil
}

// ldflags stamp the release into the binaries, as the Kubernetes build
// does, so `kubectl version` and the apiserver's /version tell it.
func ldflags(version, commit string) string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	pkg := "k8s.io/component-base/version"
	cg := "k8s.io/client-go/pkg/version"
	return strings.Join([]string{"-s", "-w",
		"-X", pkg + ".gitVersion=" + version, "-X", pkg + ".gitMajor=" + major, "-X", pkg + ".gitMinor=" + minor,
		"-X", pkg + ".gitTreeState=clean", "-X", pkg + ".buildDate=1970-01-01T00:00:00Z", "-X", pkg + ".gitCommit=" + commit,
		"-X", cg + ".gitVersion=" + version, "-X", cg + ".gitMajor=" + major, "-X", cg + ".gitMinor=" + minor,
	}, " ")
}

func (b *builder) buildKubernetes(ctx context.Context, work string, bins []string) error {
	v := b.o.Kubernetes
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	b.say("kubernetes %s: resolving its module and staging replaces (about %s on a cold module cache)", v, resolveEstimate)
	out, err := b.goRun(ctx, work, "kubernetes: go mod download", resolveEstimate/2, "mod", "download", "-json", "k8s.io/kubernetes@"+v)
	if err != nil {
		return err
	}
	var dl struct{ GoMod, Error string }
	if err := json.Unmarshal(out, &dl); err != nil || dl.GoMod == "" {
		return fmt.Errorf("kubernetes: cannot download k8s.io/kubernetes@%s's go.mod (%v%s)", v, err, dl.Error)
	}
	gomod, err := os.ReadFile(dl.GoMod)
	if err != nil {
		return err
	}
	wrapper, err := WrapperModule(gomod, v)
	if err != nil {
		return err
	}
	tools := "//go:build tools\n\npackage tools\n\nimport (\n"
	for _, bin := range bins {
		tools += "\t_ \"" + k8sPackages[bin] + "\"\n"
	}
	tools += ")\n"
	if err := os.WriteFile(filepath.Join(work, "go.mod"), wrapper, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, "tools.go"), []byte(tools), 0o644); err != nil {
		return err
	}
	if _, err := b.goRun(ctx, work, "kubernetes: go mod tidy", resolveEstimate/2, "mod", "tidy"); err != nil {
		return err
	}
	for _, bin := range bins {
		tmp, err := b.tmpPath(bin)
		if err != nil {
			return err
		}
		b.say("%s: building (about %s on 2 cores)", bin, estimates[bin])
		_, err = b.goRun(ctx, work, bin+": build", estimates[bin], "build", "-trimpath", "-ldflags", ldflags(v, v), "-o", tmp, k8sPackages[bin])
		if err == nil {
			err = b.install(tmp, bin)
		}
		os.Remove(tmp)
		if err != nil {
			return err
		}
		b.say("%s: done", bin)
	}
	return nil
}

func lastLines(data []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
