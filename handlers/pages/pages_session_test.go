package pages

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"shoal/handlers/session"
	"shoal/internal/testenv"
)

// testKeys, newTestStore and requestWithCookie are the session package's
// test helpers: the tests of a page's .Session need the same.
func testKeys(seed byte) [][]byte {
	return [][]byte{bytes.Repeat([]byte{seed}, 64), bytes.Repeat([]byte{seed + 1}, 32)}
}

func newTestStore(t testing.TB, keys [][]byte) *session.Store {
	t.Helper()
	s, err := session.NewStore(session.Options{Cookie: "sid", Keys: keys, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func requestWithCookie(c *http.Cookie, path ...string) *http.Request {
	target := "/"
	if len(path) > 0 {
		target = path[0]
	}
	r := httptest.NewRequest("GET", target, nil)
	r.AddCookie(c)
	return r
}

func sessionPages(t testing.TB, store *session.Store) (*Handler, *testenv.Buffer) {
	p, lb := newTestPages(t, "")
	p.Sessions = store
	return p, lb
}

func sessionClient(t testing.TB, srv *httptest.Server) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *srv.Client() // a copy: srv.Client() is shared
	c.Jar = jar
	return &c
}

func TestSessionVisitCounter(t *testing.T) {
	p, _ := sessionPages(t, newTestStore(t, testKeys(1)))
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()
	c := sessionClient(t, srv)
	for want := 1; want <= 3; want++ {
		resp, body := pageGet(t, c, srv.URL+"/counter")
		if got := strings.TrimSpace(body); resp.StatusCode != 200 || got != "visits="+strconv.Itoa(want) {
			t.Fatalf("visit %d: %d %q", want, resp.StatusCode, got)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q on a page setting a cookie", resp.Header.Get("Cache-Control"))
		}
	}
	// A page that only reads the session sends no cookie.
	resp, body := pageGet(t, c, srv.URL+"/peek")
	if strings.TrimSpace(body) != "visits=3" || len(resp.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("peek: %q, Set-Cookie %q", body, resp.Header.Values("Set-Cookie"))
	}
	// A page that does not touch the session does not even read it.
	resp, _ = pageGet(t, c, srv.URL+"/about")
	if len(resp.Header.Values("Set-Cookie")) != 0 || resp.Header.Get("Vary") != "" {
		t.Errorf("about: Set-Cookie %q Vary %q", resp.Header.Values("Set-Cookie"), resp.Header.Get("Vary"))
	}
}

func TestSessionTamperedRestarts(t *testing.T) {
	p, logs := newTestPages(t, "")
	store, err := session.NewStore(session.Options{Cookie: "sid", Keys: testKeys(1), Logger: p.Logger})
	if err != nil {
		t.Fatal(err)
	}
	p.Sessions = store
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()
	c := sessionClient(t, srv)
	pageGet(t, c, srv.URL+"/counter")
	pageGet(t, c, srv.URL+"/counter")
	u, _ := url.Parse(srv.URL)
	v := c.Jar.Cookies(u)[0].Value
	bad := []byte(v)
	bad[len(bad)/2] ^= 1
	for name, value := range map[string]string{"flipped": string(bad), "garbage": "not-a-session", "truncated": v[:len(v)/2]} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/counter", nil)
			req.Header.Set("Cookie", "sid="+value)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "visits=1" {
				t.Errorf("tampered cookie: %d %q", resp.StatusCode, b)
			}
		})
	}
	if !strings.Contains(logs.String(), "level=DEBUG msg=\"session cookie rejected\"") {
		t.Errorf("no debug line for the rejected cookie:\n%s", logs.String())
	}
}

func TestSessionRotation(t *testing.T) {
	oldKeys, newKeys := testKeys(1), testKeys(5)
	oldStore := newTestStore(t, oldKeys)
	rotated := newTestStore(t, append(append([][]byte{}, newKeys...), oldKeys...))
	newOnly := newTestStore(t, newKeys)

	// A session written before rotation...
	rec := httptest.NewRecorder()
	if err := oldStore.Replace(rec, httptest.NewRequest("GET", "/", nil), "visits=7"); err != nil {
		t.Fatal(err)
	}
	oldCookie := rec.Result().Cookies()[0]
	if newOnly.Encoded(requestWithCookie(oldCookie)) != "" {
		t.Fatal("test keys do not differ")
	}

	// ...still reads after it, and is re-issued under the newest pair even
	// by a page that only reads it.
	p, _ := sessionPages(t, rotated)
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/peek", nil)
	req.AddCookie(oldCookie)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(b)) != "visits=7" {
		t.Fatalf("old cookie after rotation: %q", b)
	}
	cs := resp.Cookies()
	if len(cs) != 1 {
		t.Fatalf("not re-issued: Set-Cookie %q", resp.Header.Values("Set-Cookie"))
	}
	if got := newOnly.Encoded(requestWithCookie(cs[0])); got != "visits=7" {
		t.Errorf("re-issued cookie does not decode with the newest pair alone: %q", got)
	}
	// The re-issued cookie is current: no further re-issue.
	req, _ = http.NewRequest("GET", srv.URL+"/peek", nil)
	req.AddCookie(cs[0])
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.Cookies()) != 0 {
		t.Errorf("current cookie re-issued again")
	}
}

func TestSessionCookieFlags(t *testing.T) {
	store, err := session.NewStore(session.Options{Cookie: "sid", Keys: testKeys(1), MaxAge: 90 * time.Minute, SameSite: http.SameSiteStrictMode})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := sessionPages(t, store)
	for _, tt := range []struct {
		name   string
		srv    *httptest.Server
		secure bool
	}{
		{"http", httptest.NewServer(pagesRouter(p)), false},
		{"https", httptest.NewTLSServer(pagesRouter(p)), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer tt.srv.Close()
			resp, _ := pageGet(t, tt.srv.Client(), tt.srv.URL+"/counter")
			sc := resp.Header.Values("Set-Cookie")
			if len(sc) != 1 {
				t.Fatalf("Set-Cookie %q", sc)
			}
			h := sc[0]
			for _, want := range []string{"sid=", "Path=/", "Max-Age=5400", "HttpOnly", "SameSite=Strict"} {
				if !strings.Contains(h, want) {
					t.Errorf("Set-Cookie %q lacks %s", h, want)
				}
			}
			if strings.Contains(h, "Secure") != tt.secure {
				t.Errorf("Set-Cookie %q: Secure should be %v", h, tt.secure)
			}
			if strings.Contains(h, "Domain=") {
				t.Errorf("Set-Cookie %q has a Domain", h)
			}
		})
	}
}

func TestSessionTooLarge(t *testing.T) {
	p, logs := sessionPages(t, newTestStore(t, testKeys(1)))
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()
	c := sessionClient(t, srv)

	resp, body := pageGet(t, c, srv.URL+"/big?v=small")
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Fatalf("small value: %d %q", resp.StatusCode, body)
	}
	resp, body = pageGet(t, c, srv.URL+"/big?v="+strings.Repeat("x", 5000))
	if resp.StatusCode != 500 || !strings.Contains(body, "500 custom") || strings.Contains(body, "stored") {
		t.Errorf("too large: %d %q", resp.StatusCode, body)
	}
	if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("too large: a cookie was still sent: %.80q", sc)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "too large for a cookie") {
		t.Errorf("no error line:\n%s", logs.String())
	}
	// The session from before is intact.
	if _, body := pageGet(t, c, srv.URL+"/peek"); strings.TrimSpace(body) != "visits=" {
		t.Errorf("peek after failure: %q", body)
	}
	u, _ := url.Parse(srv.URL)
	r := httptest.NewRequest("GET", "/", nil)
	for _, ck := range c.Jar.Cookies(u) {
		r.AddCookie(ck)
	}
	if got := p.Sessions.Encoded(r); got != "big=small" {
		t.Errorf("session after failed write: %q", got)
	}

	// Replace reports the same error to its caller (CGI).
	rec := httptest.NewRecorder()
	err := p.Sessions.Replace(rec, httptest.NewRequest("GET", "/", nil), "k="+strings.Repeat("y", 5000))
	if !errors.Is(err, session.ErrTooLarge) || rec.Header().Get("Set-Cookie") != "" {
		t.Errorf("Replace too large: %v, Set-Cookie %q", err, rec.Header().Get("Set-Cookie"))
	}
}

func TestSessionFormPostRedirectGet(t *testing.T) {
	p, _ := sessionPages(t, newTestStore(t, testKeys(1)))
	srv := httptest.NewServer(pagesRouter(p))
	defer srv.Close()
	c := sessionClient(t, srv)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	resp, err := c.PostForm(srv.URL+"/greet", url.Values{"name": {"Ada <b>"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/hello" || len(resp.Cookies()) != 1 {
		t.Fatalf("POST: %d Location %q Set-Cookie %q", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Values("Set-Cookie"))
	}
	_, body := pageGet(t, c, srv.URL+"/hello")
	if strings.TrimSpace(body) != "hello Ada &lt;b&gt;" {
		t.Errorf("greeting: %q", body)
	}
}

func TestSessionNilStoreReadOnly(t *testing.T) {
	p, _ := newTestPages(t, "")
	for range 2 {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "/counter", nil))
		if strings.TrimSpace(rec.Body.String()) != "visits=1" || rec.Header().Get("Set-Cookie") != "" {
			t.Errorf("nil store: %q, Set-Cookie %q", rec.Body.String(), rec.Header().Get("Set-Cookie"))
		}
	}
}
