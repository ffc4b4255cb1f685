package session

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func testKeys(seed byte) [][]byte {
	return [][]byte{bytes.Repeat([]byte{seed}, 64), bytes.Repeat([]byte{seed + 1}, 32)}
}

func newTestStore(t testing.TB, keys [][]byte) *Store {
	t.Helper()
	s, err := NewStore(Options{Cookie: "sid", Keys: keys, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSessionExpired(t *testing.T) {
	store, err := NewStore(Options{Cookie: "sid", Keys: testKeys(1), MaxAge: time.Second})
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

func requestWithCookie(c *http.Cookie, path ...string) *http.Request {
	target := "/"
	if len(path) > 0 {
		target = path[0]
	}
	r := httptest.NewRequest("GET", target, nil)
	r.AddCookie(c)
	return r
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
	store, err := NewStore(Options{Keys: testKeys(1)})
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

func TestNewStoreRejectsBadKeys(t *testing.T) {
	for name, keys := range map[string][][]byte{
		"none":       nil,
		"odd":        {make([]byte, 64)},
		"short hash": {make([]byte, 16), make([]byte, 32)},
		"bad block":  {make([]byte, 32), make([]byte, 20)},
		"no block":   {make([]byte, 32), nil},
	} {
		if _, err := NewStore(Options{Keys: keys}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
