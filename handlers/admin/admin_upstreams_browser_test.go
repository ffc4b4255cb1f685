package admin_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"shoal/handlers/admin"
	"shoal/internal/browsertest"
)

// fakeUpstreams is /api/upstreams' list as a test changes it.
type fakeUpstreams struct {
	mu   sync.Mutex
	list []map[string]any
}

func (f *fakeUpstreams) get() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.list
}

func (f *fakeUpstreams) set(healthy bool, inflight, cluster int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = []map[string]any{{"name": "app", "targets": []map[string]any{
		{"url": "http://10.0.0.5:3000", "healthy": healthy, "inflight": inflight, "cluster_inflight": cluster, "failures": 0},
		{"url": "unix:/run/apps/a-rather-long-application-socket-name-for-the-phone-layout.sock", "healthy": true,
			"inflight": 0, "cluster_inflight": 0, "failures": 2},
	}}}
}

// TestStatusPageUpstreamsBrowser: the status page lists each upstream
// target with its health and in-flight counts as this node sees them,
// and follows changes without a reload.
func TestStatusPageUpstreamsBrowser(t *testing.T) {
	tab, consoleErrors := browsertest.Open(t, 60*time.Second)
	view := &fakeView{self: "node-a"}
	view.set(threeMembers())
	ups := &fakeUpstreams{}
	ups.set(true, 1, 4)
	srv := newAdminServer(t, &admin.Server{View: view, Upstreams: ups.get})

	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	row := `#upstream-rows tr[data-target="http://10.0.0.5:3000"]`
	browsertest.WaitFor(t, tab, "the target's row", chromedp.WaitVisible(row+`[data-healthy="true"]`))
	if n := browsertest.Eval[int](t, tab, `document.querySelectorAll("#upstream-rows tr[data-target]").length`); n != 2 {
		t.Fatalf("%d target rows, want 2", n)
	}
	cell := func(col string) string {
		return browsertest.Eval[string](t, tab, `document.querySelector('`+row+` td[data-col="`+col+`"]').textContent`)
	}
	if got := cell("upstream") + " " + cell("inflight") + " " + cell("cluster"); got != "app 1 4" {
		t.Errorf("row shows %q, want \"app 1 4\"", got)
	}

	browsertest.Eval[bool](t, tab, `window.shoalMarker = true`)
	ups.set(false, 0, 3)
	browsertest.WaitFor(t, tab, "the target shown down", chromedp.WaitVisible(row+`[data-healthy="false"] .pill.down`))
	if got := cell("cluster"); got != "3" {
		t.Errorf("cluster in-flight shows %q, want 3", got)
	}
	if !browsertest.Eval[bool](t, tab, `window.shoalMarker === true`) {
		t.Error("the page reloaded instead of updating in place")
	}

	if err := chromedp.Do(tab, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	browsertest.WaitFor(t, tab, "phone layout", chromedp.WaitNotVisible(`table.upstreams thead`))
	if w := browsertest.Eval[int](t, tab, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
		t.Errorf("on a phone the page is %dpx wider than the screen", w)
	}
	if errs := consoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
