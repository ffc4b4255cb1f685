package handlers

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a bytes.Buffer safe for the log's flusher goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func serveLogged(t *testing.T, format string, req *http.Request) string {
	t.Helper()
	var out lockedBuffer
	log := NewAccessLog(&out, format)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := NewRecorder(w, 0)
		SetKind(r, KindStatic)
		rec.WriteHeader(201)
		rec.Write([]byte("hello"))
		e := Entry{Info: *InfoFrom(r), Started: rec.Started, Status: rec.Status, Bytes: rec.Bytes}
		e.Read(r, nil)
		e.ReadLogged(r)
		log.Log(&e)
	})
	r, _ := Begin(req, "example.com", nil)
	h.ServeHTTP(httptest.NewRecorder(), r)
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestAccessLogCombined(t *testing.T) {
	req := httptest.NewRequest("GET", "/a?b=1", nil)
	req.RemoteAddr = "192.0.2.7:5555"
	req.Header.Set("Referer", "http://ref.example/")
	req.Header.Set("User-Agent", `evil"agent`+"\n"+`127.0.0.1 - - [forged]`)
	line := serveLogged(t, "combined", req)
	re := regexp.MustCompile(`^192\.0\.2\.7 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /a\?b=1 HTTP/1\.1" 201 5 "http://ref\.example/" "evil\\"agent\\x0a127\.0\.0\.1 - - \[forged\]"\n$`)
	if !re.MatchString(line) {
		t.Fatalf("line does not match Combined Log Format:\n%q", line)
	}
	if strings.Count(line, "\n") != 1 {
		t.Fatal("a request forged a second line")
	}
}

func TestAccessLogJSON(t *testing.T) {
	req := httptest.NewRequest("GET", "/x", nil)
	req.RemoteAddr = "[2001:db8::1]:80"
	line := serveLogged(t, "json", req)
	var e map[string]any
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatalf("not JSON: %q", line)
	}
	for k, want := range map[string]any{"client": "2001:db8::1", "method": "GET", "uri": "/x", "status": 201.0, "bytes": 5.0, "site": "example.com", "handler": "static"} {
		if e[k] != want {
			t.Errorf("%s = %v, want %v", k, e[k], want)
		}
	}
}

func TestClientIPTrustedProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		remote, xff, want string
	}{
		{"192.0.2.1:1", "203.0.113.9", "192.0.2.1"},            // untrusted peer: header ignored
		{"10.0.0.1:1", "203.0.113.9", "203.0.113.9"},           // trusted proxy
		{"10.0.0.1:1", "203.0.113.9, 10.0.0.2", "203.0.113.9"}, // chain of trusted proxies
		{"10.0.0.1:1", "1.2.3.4, 203.0.113.9", "203.0.113.9"},  // spoofed left-most entry ignored
		{"10.0.0.1:1", "garbage", "10.0.0.1"},
		{"10.0.0.1:1", "", "10.0.0.1"},
	}
	for _, tc := range tests {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = tc.remote
		if tc.xff != "" {
			req.Header.Set("X-Forwarded-For", tc.xff)
		}
		r, _ := Begin(req, "", trusted)
		if got := ClientIP(r); got != tc.want {
			t.Errorf("%s / %q: %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}
