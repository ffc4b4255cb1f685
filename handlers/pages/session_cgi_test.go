package pages

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"shoal/handlers/cgi"
)

// TestSessionSharedWithCGI: one session, seen by a page and by a CGI
// script (HTTP_SESSION in, X-Replace-Session out), through the real store.
func TestSessionSharedWithCGI(t *testing.T) {
	dir := t.TempDir()
	writePageFile(t, filepath.Join(dir, "www", "show.tmpl"), `n={{.Session.Get "n"}} who={{.Session.Get "who"}}`)
	script := filepath.Join(dir, "cgi-bin", "bump")
	writePageFile(t, script, "#!/bin/sh\n"+
		"printf 'Content-Type: text/plain\\r\\nX-Replace-Session: n=2&who=\\r\\n\\r\\n'\n"+
		"printf 'got=%s' \"$HTTP_SESSION\"\n")
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	store := newTestStore(t, testKeys(1))
	page := &Handler{Root: filepath.Join(dir, "www"), Sessions: store}
	scripts := &cgi.Handler{Root: filepath.Join(dir, "www"), Prefix: "/cgi-bin/", Dir: filepath.Join(dir, "cgi-bin"), Sessions: store}

	rec := httptest.NewRecorder()
	store.Replace(rec, httptest.NewRequest("GET", "/", nil), "n=1&who=ann")
	cookie := rec.Result().Cookies()[0]

	rec = httptest.NewRecorder()
	scripts.ServeHTTP(rec, requestWithCookie(cookie, "/cgi-bin/bump"))
	if got := rec.Body.String(); rec.Code != 200 || got != "got=n=1&who=ann" {
		t.Fatalf("script saw %d %q", rec.Code, got)
	}
	if rec.Header().Get("X-Replace-Session") != "" || len(rec.Result().Cookies()) != 1 {
		t.Fatalf("script response headers: %v", rec.Header())
	}
	rec2 := httptest.NewRecorder()
	page.ServeHTTP(rec2, requestWithCookie(rec.Result().Cookies()[0], "/show"))
	if got := strings.TrimSpace(rec2.Body.String()); got != "n=2 who=" {
		t.Errorf("page after script: %q", got)
	}
}
