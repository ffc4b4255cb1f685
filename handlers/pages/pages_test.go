package pages

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/handlers/books"
	"shoal/internal/testenv"
)

const pagesSite = "testdata/pages/site"

func pagesLogger() (*slog.Logger, *testenv.Buffer) {
	lb := &testenv.Buffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// newTestPages returns a Handler over the test site (or a copy of it at dir).
func newTestPages(t testing.TB, dir string) (*Handler, *testenv.Buffer) {
	t.Helper()
	if dir == "" {
		dir = pagesSite
	}
	log, lb := pagesLogger()
	root := filepath.Join(dir, "www")
	p := &Handler{
		Root:      root,
		Templates: filepath.Join(dir, "templates"),
		Index:     []string{"index.html", "index.tmpl"},
		Errors:    &books.ErrorPages{Root: root, Pages: map[int]string{404: "404.html", 500: "500.html", 403: "403.html"}},
		Logger:    log,
	}
	if err := p.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	return p, lb
}

// siteHandler routes as the server does: pages by Match, everything else
// a 404 here (the static handler is not part of this package's tests).
func pagesRouter(p *Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.Match(r.URL.Path) {
			p.ServeHTTP(w, r)
			return
		}
		p.Errors.Serve(w, r, http.StatusNotFound)
	})
}

func pageGet(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", url, err)
	}
	return resp, string(b)
}

func TestPagesLayoutAndPartial(t *testing.T) {
	p, _ := newTestPages(t, "")
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()

	resp, body := pageGet(t, srv.Client(), srv.URL+"/about")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	for _, want := range []string{"<title>about</title>", "partial-nav /about", "<main>page-about</main>", "layout-footer"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	for _, h := range []string{"ETag", "Last-Modified"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("%s: %q on a rendered page", h, v)
		}
	}
	if strings.Contains(body, "{{") {
		t.Errorf("template source in body:\n%s", body)
	}
}

func TestPagesCleanURLs(t *testing.T) {
	p, _ := newTestPages(t, "")
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"/", 200, "page-index"},
		{"/index", 200, "page-index"},
		{"/about", 200, "page-about"},
		{"/blog/", 200, "page-blog-index"},
		{"/blog/post", 200, "page-blog-post"},
		{"/blog", 404, "404 custom"},      // a folder: the static handler redirects to /blog/
		{"/about/", 404, "404 custom"},    // not a folder
		{"/missing", 404, "404 custom"},   // no such page
		{"/docs/", 404, "404 custom"},     // index.html comes first in Index: static's
		{"/frag.html", 404, "404 custom"}, // a static file, not a page
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := pageGet(t, srv.Client(), srv.URL+tt.path)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
				t.Errorf("GET %s: %d %q, want %d containing %q", tt.path, resp.StatusCode, body, tt.status, tt.want)
			}
		})
	}
}

func TestPagesIndexOrder(t *testing.T) {
	p, _ := newTestPages(t, "")
	p.Index = []string{"index.tmpl", "index.html"}
	if !p.Match("/docs/") {
		t.Errorf("index.tmpl first: /docs/ should be a page")
	}
	p.Index = nil
	if !p.Match("/") || p.Match("/docs/x/") {
		t.Errorf("default index: Match(/) should hold, /docs/x/ not")
	}
}

// TestPagesSourceNeverServed asks for page sources every way we know;
// none may match a page or show template text.
func TestPagesSourceNeverServed(t *testing.T) {
	p, _ := newTestPages(t, "")
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()
	paths := []string{
		"/about.tmpl", "/ABOUT.TMPL", "/About.Tmpl", "/about.tmpl/", "/about.tmpl%00",
		"/about%2etmpl", "/blog/post.tmpl", "/blog/../about.tmpl", "/./about", "//about",
		"/.hidden", "/.hidden.tmpl", "/.env", "/about%00", "/about%5c", "/templates/base",
		"/blog/index.tmpl/", "/index.tmpl",
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			req, err := http.NewRequest("GET", srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Errorf("status %d, want 404", resp.StatusCode)
			}
			if bytes.Contains(b, []byte("{{")) || bytes.Contains(b, []byte("hidden page")) {
				t.Errorf("source leaked: %q", b)
			}
			if p.Match(req.URL.Path) {
				t.Errorf("Match(%q) = true", req.URL.Path)
			}
		})
	}
	// ServeHTTP alone (routed there by mistake) must not serve them either.
	for _, path := range []string{"/about.tmpl", "/ABOUT.TMPL", "/about.tmpl/", "/about.tmpl\x00"} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = path
		p.ServeHTTP(rec, r)
		if rec.Code != 404 || strings.Contains(rec.Body.String(), "{{") {
			t.Errorf("ServeHTTP %q: %d %q", path, rec.Code, rec.Body.String())
		}
	}
}

func TestPagesTemplatesFolderInsideRoot(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "www")
	writePageFile(t, filepath.Join(root, "templates", "base.tmpl"), `{{define "base"}}L[{{block "main" .}}{{end}}]{{end}}`)
	writePageFile(t, filepath.Join(root, "page.tmpl"), `{{template "base" .}}{{define "main"}}P{{end}}`)
	p := &Handler{Root: root, Templates: filepath.Join(root, "templates")}
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if p.Match("/templates/base") {
		t.Errorf("a layout inside root is reachable as a page")
	}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/page", nil))
	if got := strings.TrimSpace(rec.Body.String()); got != "L[P]" {
		t.Errorf("page = %q, want L[P]", got)
	}
}

func TestPagesEscapesQuery(t *testing.T) {
	p, _ := newTestPages(t, "")
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()
	_, body := pageGet(t, srv.Client(), srv.URL+"/echo?q=%3Cscript%3Ealert(1)%3C/script%3E")
	if strings.Contains(body, "<script>") {
		t.Fatalf("query not escaped:\n%s", body)
	}
	if !strings.Contains(body, "q=&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("escaped text missing:\n%s", body)
	}
	if !strings.Contains(body, `href="/x?v=%3cscript%3ealert%281%29%3c%2fscript%3e"`) {
		t.Errorf("URL context not escaped as a query value:\n%s", body)
	}
}

func TestPagesRuntimeError(t *testing.T) {
	p, logs := newTestPages(t, "")
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()

	resp, body := pageGet(t, srv.Client(), srv.URL+"/boom")
	if resp.StatusCode != 500 {
		t.Fatalf("status %d, want 500", resp.StatusCode)
	}
	if !strings.Contains(body, "500 custom") {
		t.Errorf("not the site's 500 page: %q", body)
	}
	for _, leak := range []string{"{{", "before-error", "partial-nav", "index"} {
		if strings.Contains(body, leak) {
			t.Errorf("body shows %q (half page or source): %q", leak, body)
		}
	}
	line := logs.String()
	want := filepath.Join(pagesSite, "www", "boom.tmpl") + ":3"
	if !strings.Contains(line, "template failed") || !strings.Contains(line, "at="+want) {
		t.Errorf("error log lacks file:line %s:\n%s", want, line)
	}
	// Still serving, and the failing page fails the same way again.
	for range 3 {
		if resp, body := pageGet(t, srv.Client(), srv.URL+"/about"); resp.StatusCode != 200 {
			t.Fatalf("after error: /about %d %q", resp.StatusCode, body)
		}
		if resp, _ := pageGet(t, srv.Client(), srv.URL+"/boom"); resp.StatusCode != 500 {
			t.Fatalf("second /boom: %d", resp.StatusCode)
		}
	}
}

func TestPagesDevShowsError(t *testing.T) {
	p, _ := newTestPages(t, "")
	p.Dev = true
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	if rec.Code != 500 {
		t.Fatalf("status %d", rec.Code)
	}
	body := rec.Body.String()
	if !strings.Contains(body, "boom.tmpl:3") || !strings.Contains(body, "error calling index") {
		t.Errorf("dev page does not show the error:\n%s", body)
	}
	if strings.Contains(body, "before-error") {
		t.Errorf("half page in dev error:\n%s", body)
	}
}

func TestPagesHTTPError(t *testing.T) {
	p, _ := newTestPages(t, "")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/forbidden", nil))
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "403 custom") || strings.Contains(rec.Body.String(), "secret-start") {
		t.Errorf("httpError 403: %d %q", rec.Code, rec.Body.String())
	}
}

func TestPagesMethods(t *testing.T) {
	p, _ := newTestPages(t, "")
	for _, tt := range []struct {
		method string
		status int
	}{{"GET", 200}, {"HEAD", 200}, {"POST", 200}, {"PUT", 405}, {"DELETE", 405}} {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(tt.method, "/about", nil))
		if rec.Code != tt.status {
			t.Errorf("%s: %d, want %d", tt.method, rec.Code, tt.status)
		}
		if tt.method == "HEAD" && (rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "") {
			t.Errorf("HEAD: body %d bytes, Content-Length %q", rec.Body.Len(), rec.Header().Get("Content-Length"))
		}
		if tt.status == 405 && rec.Header().Get("Allow") != "GET, HEAD, POST" {
			t.Errorf("%s: Allow %q", tt.method, rec.Header().Get("Allow"))
		}
	}
}

type pagesNode struct{}

func (pagesNode) Name() string { return "node-a" }
func (pagesNode) Members() []NodeMember {
	return []NodeMember{{Name: "node-a", State: "alive", Load: 0.25, Inflight: 16, Capacity: 64}}
}

func TestPagesData(t *testing.T) {
	p, _ := newTestPages(t, "")
	p.Node = pagesNode{}
	r := httptest.NewRequest("GET", "http://example.test/req?a=b", nil)
	r.Header.Set("X-Test", "hv")
	r.AddCookie(&http.Cookie{Name: "c", Value: "cv"})
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, r)
	want := "method=GET host=example.test path=/req q=b h=hv hdr=hv ck=cv ip=192.0.2.1 tls=false remote=yes " +
		"node=node-a members=[node-a alive 0.25 16/64 false] year=" + time.Now().Format("2006") +
		" sum=5 diff=-2 n=42 bad=0"
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("data:\n got %q\nwant %q", got, want)
	}

	p.Node = nil
	rec = httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/req", nil))
	if !strings.Contains(rec.Body.String(), "node= members= ") {
		t.Errorf("nil Node: %q", rec.Body.String())
	}
}

func TestPagesMarkdown(t *testing.T) {
	p, _ := newTestPages(t, "")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/md", nil))
	body := rec.Body.String()
	for _, want := range []string{"<h1>Notes</h1>", "<table>", "<td>1</td>", "<del>old</del>"} {
		if !strings.Contains(body, want) {
			t.Errorf("markdown lacks %q:\n%s", want, body)
		}
	}
	for _, bad := range []string{"<script>", "javascript:"} {
		if strings.Contains(body, bad) {
			t.Errorf("markdown passes %q:\n%s", bad, body)
		}
	}
}

func TestPagesInclude(t *testing.T) {
	dir := copyPagesSite(t)
	outside := filepath.Join(dir, "outside.txt")
	writePageFile(t, outside, "OUTSIDE")
	if err := os.Symlink(outside, filepath.Join(dir, "www", "link.html")); err != nil {
		t.Fatal(err)
	}
	p, _ := newTestPages(t, dir)
	tests := []struct {
		f      string
		status int
		want   string
	}{
		{"frag.html", 200, "<p>fragment</p>"},
		{"/frag.html", 200, "<p>fragment</p>"},
		{"../outside.txt", 500, ""},
		{"link.html", 500, ""},
		{".env", 500, ""},
		{"about.tmpl", 500, ""},
		{"ABOUT.TMPL", 500, ""},
		{"nope.html", 500, ""},
		{"", 500, ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "/inc?f="+tt.f, nil))
		body := rec.Body.String()
		if rec.Code != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("include %q: %d %q", tt.f, rec.Code, body)
		}
		for _, leak := range []string{"OUTSIDE", "SECRET", "{{"} {
			if strings.Contains(body, leak) {
				t.Errorf("include %q leaked %q", tt.f, leak)
			}
		}
	}
}

func TestPagesReload(t *testing.T) {
	dir := copyPagesSite(t)
	p, _ := newTestPages(t, dir)
	about := filepath.Join(dir, "www", "about.tmpl")
	writePageFile(t, about, "{{template \"base\" .}}{{define \"main\"}}v2{{end}}")
	writePageFile(t, filepath.Join(dir, "www", "new.tmpl"), "new page")
	if !strings.Contains(renderPath(t, p, "/about"), "page-about") {
		t.Errorf("changed page re-parsed without Dev or Reload")
	}
	if p.Match("/new") {
		t.Errorf("new page seen before Reload")
	}
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(renderPath(t, p, "/about"), "<main>v2</main>") || !p.Match("/new") {
		t.Errorf("Reload did not pick up changes")
	}

	writePageFile(t, about, "{{if}}broken")
	err := p.Reload()
	if err == nil || !strings.Contains(err.Error(), "about.tmpl:1") {
		t.Fatalf("Reload of a broken page: err %v, want one naming about.tmpl:1", err)
	}
	if !strings.Contains(renderPath(t, p, "/about"), "<main>v2</main>") {
		t.Errorf("a failed Reload replaced the working pages")
	}
}

func TestPagesDevReparse(t *testing.T) {
	dir := copyPagesSite(t)
	p, _ := newTestPages(t, dir)
	p.Dev = true
	www := filepath.Join(dir, "www")

	writePageFile(t, filepath.Join(www, "blog", "post.tmpl"), "post-v2")
	if got := renderPath(t, p, "/blog/post"); !strings.Contains(got, "post-v2") {
		t.Errorf("changed page: %q", got)
	}
	writePageFile(t, filepath.Join(www, "added.tmpl"), "added-page")
	if got := renderPath(t, p, "/added"); !strings.Contains(got, "added-page") {
		t.Errorf("added page: %q", got)
	}
	os.Remove(filepath.Join(www, "added.tmpl"))
	if p.Match("/added") {
		t.Errorf("removed page still matches")
	}
	writePageFile(t, filepath.Join(dir, "templates", "partials", "nav.tmpl"), `{{define "nav"}}nav-v2{{end}}`)
	if got := renderPath(t, p, "/about"); !strings.Contains(got, "nav-v2") {
		t.Errorf("changed partial: %q", got)
	}
	writePageFile(t, filepath.Join(dir, "templates", "partials", "nav.tmpl"), `{{define "nav"}}{{end`)
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/about", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "nav.tmpl:1") {
		t.Errorf("broken partial in dev: %d %q", rec.Code, rec.Body.String())
	}
}

func TestPagesNoTemplatesFolder(t *testing.T) {
	dir := t.TempDir()
	writePageFile(t, filepath.Join(dir, "index.tmpl"), "plain {{add 1 1}}")
	for _, tmpl := range []string{"", filepath.Join(dir, "missing")} {
		p := &Handler{Root: dir, Templates: tmpl}
		if got := renderPath(t, p, "/"); strings.TrimSpace(got) != "plain 2" {
			t.Errorf("Templates %q: %q", tmpl, got)
		}
	}
}

func TestPagesConcurrent(t *testing.T) {
	p, _ := newTestPages(t, "")
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 25 {
				path := []string{"/about", "/md", "/echo?q=x", "/boom"}[(i+j)%4]
				resp, err := srv.Client().Get(srv.URL + path)
				if err != nil {
					errs <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				want := 200
				if path == "/boom" {
					want = 500
				}
				if resp.StatusCode != want {
					errs <- path + ": " + resp.Status
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func renderPath(t *testing.T, p *Handler, path string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Body.String()
}

func writePageFile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	// Dev mode compares size and time; make a rewrite visible even within
	// one clock tick.
	later := time.Now().Add(time.Duration(len(content)) * time.Millisecond)
	os.Chtimes(name, later, later)
}

// copySite copies the test site to a temporary folder the test may change.
func copyPagesSite(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(pagesSite)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPagesEscapeError: html/template finds some mistakes only when it
// first executes a page; they too give a clean 500 and a file:line.
func TestPagesEscapeError(t *testing.T) {
	dir := t.TempDir()
	writePageFile(t, filepath.Join(dir, "bad.tmpl"), "ok\n<a href=\"{{.Request.Path}}>unterminated")
	log, logs := pagesLogger()
	p := &Handler{Root: dir, Logger: log}
	for range 2 {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "/bad", nil))
		if rec.Code != 500 || strings.Contains(rec.Body.String(), "ok") {
			t.Errorf("escape error: %d %q", rec.Code, rec.Body.String())
		}
	}
	if want := "at=" + filepath.Join(dir, "bad.tmpl"); !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}

// TestPagesOutputBounded: a runaway page stops at maxPageBytes with a 500
// instead of growing without limit.
func TestPagesOutputBounded(t *testing.T) {
	dir := t.TempDir()
	writePageFile(t, filepath.Join(dir, "chunk.html"), strings.Repeat("x", 64<<10))
	writePageFile(t, filepath.Join(dir, "huge.tmpl"), `{{range 1000}}{{include "chunk.html"}}{{end}}`)
	log, logs := pagesLogger()
	p := &Handler{Root: dir, Logger: log}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/huge", nil))
	if rec.Code != 500 || rec.Body.Len() > 4096 {
		t.Errorf("runaway page: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if !strings.Contains(logs.String(), "output larger than") {
		t.Errorf("log:\n%s", logs.String())
	}
}
