package admin_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"shoal/handlers/admin"
	"shoal/internal/browsertest"
)

const memberRows = `#member-rows tr[data-member]`

// TestStatusPageBrowser loads the status page in headless Chromium and
// changes the cluster under it: rows appear and change state without a
// reload, the page has no console errors (CSP violations are console
// errors), and it fits a phone's width.
func TestStatusPageBrowser(t *testing.T) {
	tab, consoleErrors := browsertest.Open(t, 90*time.Second)

	view := &fakeView{self: "node-a"}
	view.set(threeMembers())
	view.update("node-c", func(m *admin.Member) { m.Config = "bad0cafe"; m.ErrorsPerSec = 0.4 })
	srv := newAdminServer(t, &admin.Server{
		View: view, Version: "0.1.0",
		Sites:     []admin.Site{{Hosts: []string{"example.com", "www.example.com"}, Root: "/srv/www", CGI: []string{"/cgi-bin/"}}},
		Listeners: []string{"http 127.0.0.1:8080", "admin 127.0.0.1:9180"},
	})

	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	browsertest.WaitFor(t, tab, "three member rows", chromedp.WaitVisible(`#member-rows tr[data-member="node-c"]`))
	if n := browsertest.Eval[int](t, tab, `document.querySelectorAll("`+memberRows+`").length`); n != 3 {
		t.Fatalf("%d member rows, want 3", n)
	}
	// A marker that a full page load would wipe.
	browsertest.Eval[bool](t, tab, `window.shoalMarker = true`)

	// Drift is highlighted on the member whose config differs.
	browsertest.WaitFor(t, tab, "config drift on node-c", chromedp.WaitVisible(`tr[data-member="node-c"] td.drift`))

	// A fourth node joins.
	view.set(append(view.Members(), testMember("node-d", 0.1, "c0ffee12")))
	browsertest.WaitFor(t, tab, "node-d's row", chromedp.WaitVisible(`tr[data-member="node-d"][data-state="alive"]`))
	if n := browsertest.Eval[int](t, tab, `document.querySelectorAll("`+memberRows+`").length`); n != 4 {
		t.Errorf("%d member rows after a join, want 4", n)
	}

	// One dies, one leaves, one drains.
	view.update("node-b", func(m *admin.Member) { m.State = admin.StateDead })
	view.update("node-d", func(m *admin.Member) { m.State = admin.StateLeft })
	view.update("node-c", func(m *admin.Member) { m.Draining = true })
	browsertest.WaitFor(t, tab, "node-b dead", chromedp.WaitVisible(`tr[data-member="node-b"][data-state="dead"]`))
	browsertest.WaitFor(t, tab, "node-d left", chromedp.WaitVisible(`tr[data-member="node-d"][data-state="left"]`))
	browsertest.WaitFor(t, tab, "node-c draining", chromedp.WaitVisible(`tr[data-member="node-c"][data-draining="true"] .badge.draining`))
	if !browsertest.Eval[bool](t, tab, `window.shoalMarker === true`) {
		t.Error("the page reloaded instead of updating in place")
	}
	state := browsertest.Eval[string](t, tab, `document.querySelector('tr[data-member="node-b"] .pill').textContent`)
	if state != "dead" {
		t.Errorf("node-b shows %q", state)
	}
	for _, s := range []string{"example.com", "/srv/www", "http 127.0.0.1:8080"} {
		if !strings.Contains(browsertest.Eval[string](t, tab, `document.body.innerText`), s) {
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
	browsertest.WaitFor(t, tab, "phone layout", chromedp.WaitNotVisible(`table.members thead`))
	if w := browsertest.Eval[int](t, tab, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
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
	browsertest.WaitFor(t, tab, "the offline banner", chromedp.WaitVisible(`#live[data-ok="false"]`))
	browsertest.WaitFor(t, tab, "the banner text", chromedp.WaitVisible(`#banner`))
	if n := browsertest.Eval[int](t, tab, `document.querySelectorAll("`+memberRows+`").length`); n != 4 {
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
