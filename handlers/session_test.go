package handlers

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
)

func testKeys(seed byte) [][]byte {
	return [][]byte{bytes.Repeat([]byte{seed}, 64), bytes.Repeat([]byte{seed + 1}, 32)}
}

func newTestStore(t testing.TB, keys [][]byte) *SessionStore {
	t.Helper()
	s, err := NewSessionStore(SessionOptions{Cookie: "sid", Keys: keys, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sessionPages(t testing.TB, store *SessionStore) (*Pages, *pagesLogBuf) {
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
	store, err := NewSessionStore(SessionOptions{Cookie: "sid", Keys: testKeys(1), Logger: p.Logger})
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

func TestSessionExpired(t *testing.T) {
	store, err := NewSessionStore(SessionOptions{Cookie: "sid", Keys: testKeys(1), MaxAge: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	if err := store.Replace(rec, httptest.NewRequest("GET", "/", nil), "a=1"); err != nil {
		t.Fatal(err)
	}
	cookie := rec.Result().Cookies()[0]
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(cookie)
	if got := store.Encoded(r); got != "a=1" {
		t.Fatalf("fresh cookie: %q", got)
	}
	// securecookie stamps whole seconds and expires a cookie older than
	// MaxAge: poll until it does, bounded.
	deadline := time.Now().Add(5 * time.Second)
	for store.Encoded(r) != "" {
		if time.Now().After(deadline) {
			t.Fatal("cookie never expired")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSessionShadowing: a planted cookie of the same name sent first must
// not hide the real session.
func TestSessionShadowing(t *testing.T) {
	store := newTestStore(t, testKeys(1))
	rec := httptest.NewRecorder()
	if err := store.Replace(rec, httptest.NewRequest("GET", "/", nil), "user=alice"); err != nil {
		t.Fatal(err)
	}
	real := rec.Result().Cookies()[0].Value
	other := newTestStore(t, testKeys(9))
	rec = httptest.NewRecorder()
	other.Replace(rec, httptest.NewRequest("GET", "/", nil), "user=mallory")
	forged := rec.Result().Cookies()[0].Value

	for _, header := range []string{
		"sid=planted; sid=" + real,
		"sid=" + forged + "; sid=" + real,
		"sid=" + real + "; sid=planted",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", header)
		if got := store.Encoded(r); got != "user=alice" {
			t.Errorf("Cookie %.40q...: session %q, want user=alice", header, got)
		}
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

func requestWithCookie(c *http.Cookie, path ...string) *http.Request {
	target := "/"
	if len(path) > 0 {
		target = path[0]
	}
	r := httptest.NewRequest("GET", target, nil)
	r.AddCookie(c)
	return r
}

func TestSessionCookieFlags(t *testing.T) {
	store, err := NewSessionStore(SessionOptions{Cookie: "sid", Keys: testKeys(1), MaxAge: 90 * time.Minute, SameSite: http.SameSiteStrictMode})
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

func TestSessionSecureBehindProxy(t *testing.T) {
	store := newTestStore(t, testKeys(1))
	for proto, secure := range map[string]bool{"https": true, "HTTPS, http": true, "http": false, "": false} {
		r := httptest.NewRequest("GET", "/", nil)
		if proto != "" {
			r.Header.Set("X-Forwarded-Proto", proto)
		}
		rec := httptest.NewRecorder()
		store.Replace(rec, r, "a=1")
		if got := strings.Contains(rec.Header().Get("Set-Cookie"), "Secure"); got != secure {
			t.Errorf("X-Forwarded-Proto %q: Secure %v, want %v", proto, got, secure)
		}
	}
}

func TestSessionDefaults(t *testing.T) {
	store, err := NewSessionStore(SessionOptions{Keys: testKeys(1)})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	store.Replace(rec, httptest.NewRequest("GET", "/", nil), "a=1")
	h := rec.Header().Get("Set-Cookie")
	for _, want := range []string{"shoal_session=", "Max-Age=86400", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(h, want) {
			t.Errorf("default Set-Cookie %q lacks %s", h, want)
		}
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
	if !errors.Is(err, ErrSessionTooLarge) || rec.Header().Get("Set-Cookie") != "" {
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

// TestSessionEncodedReplace covers the interface the CGI handler uses.
func TestSessionEncodedReplace(t *testing.T) {
	store := newTestStore(t, testKeys(1))
	if got := store.Encoded(httptest.NewRequest("GET", "/", nil)); got != "" {
		t.Errorf("no cookie: %q", got)
	}
	rec := httptest.NewRecorder()
	if err := store.Replace(rec, httptest.NewRequest("GET", "/", nil), "b=2&a=x+y%26z"); err != nil {
		t.Fatal(err)
	}
	c := rec.Result().Cookies()[0]
	if got := store.Encoded(requestWithCookie(c)); got != "a=x+y%26z&b=2" {
		t.Errorf("Encoded %q", got)
	}

	// Empty values delete; unchanged values write nothing.
	rec = httptest.NewRecorder()
	store.Replace(rec, requestWithCookie(c), "a=x+y%26z&b=2")
	if rec.Header().Get("Set-Cookie") != "" {
		t.Errorf("unchanged Replace set a cookie")
	}
	rec = httptest.NewRecorder()
	store.Replace(rec, requestWithCookie(c), "a=&c=3")
	if got := store.Encoded(requestWithCookie(rec.Result().Cookies()[0])); got != "b=2&c=3" {
		t.Errorf("after delete: %q", got)
	}

	// Emptying the session deletes the cookie.
	rec = httptest.NewRecorder()
	store.Replace(rec, requestWithCookie(c), "a=&b=")
	h := rec.Header().Get("Set-Cookie")
	if !strings.HasPrefix(h, "sid=;") || !strings.Contains(h, "Max-Age=0") {
		t.Errorf("emptied session: Set-Cookie %q", h)
	}
	if err := store.Replace(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), "%zz"); err == nil {
		t.Errorf("bad encoding accepted")
	}
}

func TestNewSessionStoreRejectsBadKeys(t *testing.T) {
	for name, keys := range map[string][][]byte{
		"none":       nil,
		"odd":        {make([]byte, 64)},
		"short hash": {make([]byte, 16), make([]byte, 32)},
		"bad block":  {make([]byte, 32), make([]byte, 20)},
		"no block":   {make([]byte, 32), nil},
	} {
		if _, err := NewSessionStore(SessionOptions{Keys: keys}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
