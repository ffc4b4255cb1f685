package pages

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"shoal/handlers/books"
	"shoal/handlers/session"
)

// The demo site (www/ and templates/ at the top of the repository) must
// parse and work: it is what a new user sees first.

func demoPages(t testing.TB) *Handler {
	t.Helper()
	store, err := session.NewStore(session.Options{Keys: testKeys(3)})
	if err != nil {
		t.Fatal(err)
	}
	p := &Handler{
		Root:      "../../www",
		Templates: "../../templates",
		Index:     []string{"index.html", "index.tmpl"},
		Sessions:  store,
		Node:      pagesNode{},
		Errors:    &books.ErrorPages{Root: "../../www", Pages: map[int]string{404: "404.html"}},
	}
	if err := p.Reload(); err != nil {
		t.Fatalf("demo site does not parse: %v", err)
	}
	return p
}

func TestDemoSite(t *testing.T) {
	p := demoPages(t)
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()
	c := sessionClient(t, srv)

	for i, want := range []string{"<strong>1</strong> time:", "<strong>2</strong> times:"} {
		resp, body := pageGet(t, c, srv.URL+"/")
		if resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Fatalf("visit %d: %d, want %q in\n%s", i+1, resp.StatusCode, want, body)
		}
		for _, want := range []string{"node-a", "<title>a web server that schools — shoal</title>", "<td>node-a</td>", `<a href="/hello">say hello</a>`} {
			if !strings.Contains(body, want) {
				t.Errorf("index lacks %q", want)
			}
		}
		if strings.Contains(body, "{{") {
			t.Errorf("index shows template text:\n%s", body)
		}
	}

	_, body := pageGet(t, c, srv.URL+"/guide")
	for _, want := range []string{"<h1>Pages in five minutes</h1>", "<table>", `<a href="/hello">say hello</a>`} {
		if !strings.Contains(body, want) {
			t.Errorf("guide lacks %q", want)
		}
	}

	// The form: POST -> 303 -> GET greets by name, escaped.
	noFollow := *c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.PostForm(srv.URL+"/hello", url.Values{"name": {"<Ada>"}})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/welcome" {
		t.Fatalf("POST /hello: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, body = pageGet(t, c, srv.URL+"/welcome")
	if !strings.Contains(body, "Hello, &lt;Ada&gt;!") {
		t.Errorf("welcome does not greet:\n%s", body)
	}
	_, body = pageGet(t, c, srv.URL+"/hello")
	if !strings.Contains(body, `value="&lt;Ada&gt;"`) || !strings.Contains(body, "Forget my name") {
		t.Errorf("hello form does not show the name:\n%s", body)
	}
	resp, err = c.PostForm(srv.URL+"/hello", url.Values{"forget": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, body = pageGet(t, c, srv.URL+"/welcome"); !strings.Contains(body, "Hello, stranger!") {
		t.Errorf("name not forgotten:\n%s", body)
	}
	for _, tmplPage := range []string{"/", "/guide", "/hello", "/welcome"} {
		if _, body := pageGet(t, c, srv.URL+tmplPage); strings.Contains(body, "{{") {
			t.Errorf("%s shows template text", tmplPage)
		}
	}
	for _, src := range []string{"/index.tmpl", "/guide.tmpl", "/hello.tmpl"} {
		if p.Match(src) {
			t.Errorf("Match(%s)", src)
		}
	}
}

// BenchmarkDemoIndex renders the demo home page with a session: the
// cookie is decoded, the counter changed and the cookie re-encoded each
// time, as for a real visitor.
func BenchmarkDemoIndex(b *testing.B) {
	p := demoPages(b)
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	cookie := rec.Result().Cookies()[0]
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(cookie)
		w := &pageSink{h: http.Header{}}
		p.ServeHTTP(w, r)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}

// BenchmarkPageNoSession renders a small page that does not touch the
// session: the cost of the template machinery alone.
func BenchmarkPageNoSession(b *testing.B) {
	p, _ := newTestPages(b, "")
	b.ReportAllocs()
	for b.Loop() {
		w := &pageSink{h: http.Header{}}
		p.ServeHTTP(w, httptest.NewRequest("GET", "/about", nil))
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}

type pageSink struct {
	h      http.Header
	status int
}

func (w *pageSink) Header() http.Header         { return w.h }
func (w *pageSink) WriteHeader(code int)        { w.status = code }
func (w *pageSink) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkBenchPage renders bench/page/page.tmpl (the page bench/run.sh
// compares with a static file) with a session store but no cookie.
func BenchmarkBenchPage(b *testing.B) {
	store, err := session.NewStore(session.Options{Keys: testKeys(3)})
	if err != nil {
		b.Fatal(err)
	}
	p := &Handler{Root: "../../bench/page", Templates: "../../bench/page/templates", Sessions: store, Node: pagesNode{}}
	if err := p.Reload(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := &pageSink{h: http.Header{}}
		p.ServeHTTP(w, httptest.NewRequest("GET", "/page", nil))
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}
