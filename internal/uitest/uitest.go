// Package uitest drives the topology page in a real browser for tests:
// headless Chromium (Debian's chromium package) through chromedp. It is
// the only importer of chromedp, and only tests import it, so no binary
// links a browser driver.
package uitest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumNames are the browser's command names, Debian's first.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"}

// Browser starts headless Chromium for the test and returns a tab's
// context, closed at the end of the test. Without a browser on the PATH
// the test is skipped, saying what to install.
func Browser(t testing.TB, width, height int) context.Context {
	t.Helper()
	var path string
	for _, n := range chromiumNames {
		if p, err := exec.LookPath(n); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("browser test: needs headless Chromium; install it with `apt-get install chromium` (CI does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.WindowSize(width, height),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser now: its failure is the test's first
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// Artifacts is where a test leaves screenshots: $TERRANE_ARTIFACTS (CI
// collects it), else a temporary directory of the test.
func Artifacts(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TERRANE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Screenshot saves the whole page as dir/name.png and returns the path.
func Screenshot(ctx context.Context, t testing.TB, dir, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG (below: JPEG)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// Eval evaluates a JavaScript expression in the page, awaiting it if it
// is a promise.
func Eval[T any](ctx context.Context, expr string) (T, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// WaitFor waits until the JavaScript expression is true in the page: the
// browser checks it on every animation frame (no sleeps), for at most
// timeout.
func WaitFor(ctx context.Context, expr string, timeout time.Duration) error {
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout)))
	return err
}
