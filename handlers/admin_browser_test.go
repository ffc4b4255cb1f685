package handlers

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// headlessBrowser starts Debian's chromium for one test and returns a tab
// context plus a function that reports the console errors seen so far. It
// skips, saying why, when chromium is missing, but fails under CI=true:
// CI must run the browser tests.
func headlessBrowser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	path := findChromium()
	if path == "" {
		msg := "BROWSER TEST NOT RUN: no chromium found (looked for $SHOAL_CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, google-chrome); install Debian's chromium"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true: browser tests must run)")
		}
		t.Skip(msg)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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

func findChromium() string {
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

// waitFor runs a wait action with its own deadline, so a page that never
// shows what the test wants fails with a clear message instead of hanging.
func waitFor(t *testing.T, tab context.Context, what string, action chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, action); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func evaluate[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

const memberRows = `#member-rows tr[data-member]`

// TestStatusPageBrowser loads the status page in headless Chromium and
// changes the cluster under it: rows appear and change state without a
// reload, the page has no console errors (CSP violations are console
// errors), and it fits a phone's width.
func TestStatusPageBrowser(t *testing.T) {
	tab, consoleErrors := headlessBrowser(t)

	view := &fakeView{self: "node-a"}
	view.set(threeMembers())
	view.update("node-c", func(m *Member) { m.Config = "bad0cafe"; m.ErrorsPerSec = 0.4 })
	srv := newAdminServer(t, &Admin{
		View: view, Version: "0.1.0",
		Sites:     []AdminSite{{Hosts: []string{"example.com", "www.example.com"}, Root: "/srv/www", CGI: []string{"/cgi-bin/"}}},
		Listeners: []string{"http 127.0.0.1:8080", "admin 127.0.0.1:9180"},
	})

	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, tab, "three member rows", chromedp.WaitVisible(`#member-rows tr[data-member="node-c"]`))
	if n := evaluate[int](t, tab, `document.querySelectorAll("`+memberRows+`").length`); n != 3 {
		t.Fatalf("%d member rows, want 3", n)
	}
	// A marker that a full page load would wipe.
	evaluate[bool](t, tab, `window.shoalMarker = true`)

	// Drift is highlighted on the member whose config differs.
	waitFor(t, tab, "config drift on node-c", chromedp.WaitVisible(`tr[data-member="node-c"] td.drift`))

	// A fourth node joins.
	view.set(append(view.Members(), testMember("node-d", 0.1, "c0ffee12")))
	waitFor(t, tab, "node-d's row", chromedp.WaitVisible(`tr[data-member="node-d"][data-state="alive"]`))
	if n := evaluate[int](t, tab, `document.querySelectorAll("`+memberRows+`").length`); n != 4 {
		t.Errorf("%d member rows after a join, want 4", n)
	}

	// One dies, one leaves, one drains.
	view.update("node-b", func(m *Member) { m.State = StateDead })
	view.update("node-d", func(m *Member) { m.State = StateLeft })
	view.update("node-c", func(m *Member) { m.Draining = true })
	waitFor(t, tab, "node-b dead", chromedp.WaitVisible(`tr[data-member="node-b"][data-state="dead"]`))
	waitFor(t, tab, "node-d left", chromedp.WaitVisible(`tr[data-member="node-d"][data-state="left"]`))
	waitFor(t, tab, "node-c draining", chromedp.WaitVisible(`tr[data-member="node-c"][data-draining="true"] .badge.draining`))
	if !evaluate[bool](t, tab, `window.shoalMarker === true`) {
		t.Error("the page reloaded instead of updating in place")
	}
	state := evaluate[string](t, tab, `document.querySelector('tr[data-member="node-b"] .pill').textContent`)
	if state != "dead" {
		t.Errorf("node-b shows %q", state)
	}
	for _, s := range []string{"example.com", "/srv/www", "http 127.0.0.1:8080"} {
		if !strings.Contains(evaluate[string](t, tab, `document.body.innerText`), s) {
			t.Errorf("page lacks %q", s)
		}
	}

	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	savePNG(t, "status-desktop.png", shot)

	// A phone: nothing wider than the screen, cards instead of a table.
	if err := chromedp.Do(tab, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, tab, "phone layout", chromedp.WaitNotVisible(`table.members thead`))
	if w := evaluate[int](t, tab, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
		t.Errorf("on a phone the page is %dpx wider than the screen", w)
	}
	shot, err = chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	savePNG(t, "status-phone.png", shot)

	if errs := consoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}

	// The node goes away: the page says so and keeps the last table. (The
	// failed fetches are console errors of their own, hence checked above.)
	srv.CloseClientConnections()
	srv.Close()
	waitFor(t, tab, "the offline banner", chromedp.WaitVisible(`#live[data-ok="false"]`))
	waitFor(t, tab, "the banner text", chromedp.WaitVisible(`#banner`))
	if n := evaluate[int](t, tab, `document.querySelectorAll("`+memberRows+`").length`); n != 4 {
		t.Errorf("%d member rows while offline, want the last 4", n)
	}
}

// savePNG writes a screenshot under the test's temp dir, and also to
// $SHOAL_SCREENSHOT_DIR when set (how docs/status-page.png is made).
func savePNG(t *testing.T, name string, png []byte) {
	t.Helper()
	dirs := []string{t.TempDir()}
	if d := os.Getenv("SHOAL_SCREENSHOT_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
}
