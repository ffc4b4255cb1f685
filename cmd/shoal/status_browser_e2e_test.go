package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"shoal/internal/browsertest"
)

// TestE2EStatusPageBrowser loads node a's admin status page in headless
// Chromium while a real cluster of shoal processes changes under it: three
// rows, a fourth node's row appearing without a page load, a SIGTERMed
// node turning "left" and a kill -9ed one turning suspect/dead.
func TestE2EStatusPageBrowser(t *testing.T) {
	tab, consoleErrors := browsertest.Open(t, 3*time.Minute)
	cl := newCCluster(t, 3, "least_loaded", "proxy", false)
	a := cl.nodes["a"]

	if err := chromedp.Do(tab, chromedp.Navigate("http://"+a.admin+"/")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		waitRowState(t, tab, name, 15*time.Second, "alive")
	}
	if n := countRows(t, tab); n != 3 {
		t.Fatalf("%d member rows, want 3", n)
	}
	// A marker that a full page load would wipe.
	browsertest.Eval[bool](t, tab, `window.shoalMarker = true`)

	// A fourth node joins: its row appears in place.
	d := &cnode{name: "d", dir: cl.dir, http: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t), join: a.gossip, t: t}
	cl.writeRoot("d")
	cl.nodes["d"] = d
	d.startFresh()
	waitRowState(t, tab, "d", 20*time.Second, "alive")
	if n := countRows(t, tab); n != 4 {
		t.Errorf("%d member rows after d joined, want 4", n)
	}

	// SIGTERM: b drains, leaves the cluster and exits 0; its row says left.
	if err := cl.nodes["b"].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cl.nodes["b"].exited:
	case <-time.After(30 * time.Second):
		t.Fatal("b did not stop within 30s of SIGTERM")
	}
	if code := cl.nodes["b"].cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("b exited %d after SIGTERM, want 0", code)
	}
	waitRowState(t, tab, "b", 20*time.Second, "left")

	// kill -9: memberlist suspects c, then declares it dead (seconds).
	if err := cl.nodes["c"].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-cl.nodes["c"].exited
	waitRowState(t, tab, "c", 45*time.Second, "suspect", "dead")
	t0 := time.Now()
	waitRowState(t, tab, "c", 60*time.Second, "dead")
	t.Logf("dead after %v", time.Since(t0))

	if !browsertest.Eval[bool](t, tab, `window.shoalMarker === true`) {
		t.Error("the page reloaded instead of updating in place")
	}
	if n := countRows(t, tab); n != 4 {
		t.Errorf("%d member rows at the end, want 4 (gone nodes stay listed)", n)
	}
	for name, want := range map[string]string{"a": "alive", "d": "alive", "b": "left"} {
		got := browsertest.Eval[string](t, tab, fmt.Sprintf(`document.querySelector('tr[data-member="%s"] .pill').textContent`, name))
		if got != want {
			t.Errorf("row %s shows %q, want %q", name, got, want)
		}
	}

	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "status-cluster.png")
	if err := os.WriteFile(p, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	if d := os.Getenv("SHOAL_SCREENSHOT_DIR"); d != "" {
		if err := os.WriteFile(filepath.Join(d, "status-cluster.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	if errs := consoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}

const e2eMemberRows = `#member-rows tr[data-member]`

func countRows(t *testing.T, tab context.Context) int {
	t.Helper()
	return browsertest.Eval[int](t, tab, `document.querySelectorAll("`+e2eMemberRows+`").length`)
}

// waitRowState polls the page until member name's row shows one of the
// states, or fails after within with what the row showed last.
func waitRowState(t *testing.T, tab context.Context, name string, within time.Duration, states ...string) {
	t.Helper()
	expr := fmt.Sprintf(`(function(){const r=document.querySelector('tr[data-member="%s"]');return r?(r.dataset.state||"?"):"";})()`, name)
	deadline := time.Now().Add(within)
	last := ""
	for {
		last = browsertest.Eval[string](t, tab, expr)
		for _, s := range states {
			if last == s {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("row %s: state %q after %v, want one of %v", name, last, within, states)
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
}

// The status page highlights a member whose config hash differs from the
// others ("drift"). TestE2EClusterConfigDrift checks what that rests on,
// with two real nodes: nodes started from identical config files, that
// differ only in the per-node flags SPEC gives them (-name, -http,
// -admin, -gossip, -join), report the same hash; and after one node
// reloads a changed config, its peer sees the new hash, so the drift
// shows on the peer's page too.
func TestE2EClusterConfigDrift(t *testing.T) {
	www := filepath.Join(siteDir(t, e2eConfig), "www")
	secret := base64.StdEncoding.EncodeToString(make([]byte, 32)) // a fixed test secret
	const tmpl = "[server]\ndrain_delay = \"100ms\"\n\n[log]\naccess = \"off\"\n\n[[site]]\nroot = %q\n%s\n[cluster]\nenabled = true\nsecret = %q\n"
	cfg := func(extra string) string { return fmt.Sprintf(tmpl, www, extra, secret) }

	type node struct {
		name, dir, admin, gossip string
		p                        *proc
	}
	nodes := []*node{{name: "a"}, {name: "b"}}
	for i, n := range nodes {
		n.dir = t.TempDir()
		writeFile(t, filepath.Join(n.dir, "config.toml"), cfg(""))
		n.admin, n.gossip = freeAddr(t), freeAddr(t)
		args := []string{"-admin", n.admin, "-name", n.name, "-gossip", n.gossip}
		if i > 0 {
			args = append(args, "-join", nodes[0].gossip)
		}
		n.p = spawnArgs(t, n.dir, freeAddr(t), args...)
		if !n.p.waitUp(15 * time.Second) {
			t.Fatalf("node %s did not come up: %v\n%s", n.name, n.p.err, n.p.stderr)
		}
	}
	a, b := nodes[0], nodes[1]
	pollFor(t, "a and b see each other", func() bool {
		return memberHashes(a.admin)["b"] != "" && memberHashes(b.admin)["a"] != ""
	})

	atA := memberHashes(a.admin)
	if atA["a"] != atA["b"] {
		t.Errorf("identical config files, only per-node flags differ: a's view has config hashes a=%s b=%s; the status page marks drift where there is none", atA["a"], atA["b"])
	}

	// b reloads a config with a header added: real drift.
	before := memberHashes(b.admin)["b"]
	writeFile(t, filepath.Join(b.dir, "config.toml"), cfg("headers = {X-Drift = \"yes\"}\n"))
	req, _ := http.NewRequest("POST", "http://"+b.admin+"/api/reload", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("POST /api/reload at b: %d", res.StatusCode)
	}
	own := memberHashes(b.admin)["b"]
	if own == before {
		t.Fatalf("b's own hash did not change with its config (%s)", own)
	}
	deadline := time.Now().Add(10 * time.Second)
	for memberHashes(a.admin)["b"] != own {
		if time.Now().After(deadline) {
			t.Fatalf("10s after b reloaded, a still sees b's config hash %s; b reports %s: peers never see a reload's drift", memberHashes(a.admin)["b"], own)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// memberHashes is /api/cluster at admin as name -> config hash.
func memberHashes(admin string) map[string]string {
	c := &http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + admin + "/api/cluster")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	var st struct {
		Members []struct {
			Name   string `json:"name"`
			Config string `json:"config"`
		} `json:"members"`
	}
	if json.NewDecoder(res.Body).Decode(&st) != nil {
		return nil
	}
	out := map[string]string{}
	for _, m := range st.Members {
		out[m.Name] = m.Config
	}
	return out
}
