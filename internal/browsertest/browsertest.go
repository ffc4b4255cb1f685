// Package browsertest starts Debian's headless Chromium for tests that look
// at pages as a person would (the status page), shared by the handlers and
// cmd/shoal tests. It is test support only: nothing in the binary imports
// it.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"shoal/internal/testenv"
)

// Open starts Chromium for one test, within budget, and returns a tab
// context plus a function that reports the console errors seen so far
// (CSP violations are console errors). It skips, saying why, when chromium
// is missing, but fails under SHOAL_REQUIRE_TOOLS=1: CI must run the
// browser tests.
func Open(t *testing.T, budget time.Duration) (context.Context, func() []string) {
	t.Helper()
	path := Chromium()
	if path == "" {
		testenv.Missing(t, "BROWSER TEST NOT RUN: chromium not found (looked for $SHOAL_CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, google-chrome): apt-get install chromium")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// Without these Chromium keeps calling home, and this machine's
		// closed network refuses it over and over.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)

	// Start the browser and subscribe before the first navigation, so no
	// message is lost.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	var mu sync.Mutex
	var errs []string
	messages := chromedp.Console(tab)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				errs = append(errs, m.String())
				mu.Unlock()
			}
		}
	}()
	return tab, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// Chromium finds the browser: $SHOAL_CHROMIUM, Debian's /usr/bin/chromium,
// or one on PATH; "" when there is none.
func Chromium() string {
	if p := os.Getenv("SHOAL_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// WaitFor runs a wait action with its own deadline, so a page that never
// shows what the test wants fails with a clear message instead of hanging.
func WaitFor(t *testing.T, tab context.Context, what string, action chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, action); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// Eval evaluates a JavaScript expression in the tab.
func Eval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}
