package books

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"shoal/internal/testenv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func serveLogged(t *testing.T, format string, req *http.Request) string {
	t.Helper()
	var out testenv.Buffer
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

// TestAccessLogNeverBlocks: with a destination nobody reads (a pipe whose
// buffer is full), Log still returns at once; lines beyond the queue are
// dropped and counted, and Close gives up instead of hanging.
func TestAccessLogNeverBlocks(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	var hooked atomic.Int64
	log := OpenAccessLog(pw, AccessLogOptions{QueueLines: 64, OnDrop: func() { hooked.Add(1) }})
	e := &Entry{Method: "GET", URI: "/" + strings.Repeat("x", 2000), Proto: "HTTP/1.1", Status: 200, Started: time.Now()}
	// 2000 lines of 2 KB: far more than the pipe (64 KiB), the writer's
	// buffer (64 KiB) and the queue (64 lines) hold.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			log.Log(e)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a stalled destination")
	}
	if log.Dropped() == 0 || uint64(hooked.Load()) != log.Dropped() {
		t.Fatalf("dropped %d, OnDrop called %d times; want equal and > 0", log.Dropped(), hooked.Load())
	}
	closed := make(chan error, 1)
	go func() { closed <- log.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a stalled destination")
	}
}

// TestAccessLogReopen: after the file is renamed (logrotate), Reopen sends
// later lines to a new file under the old name; earlier lines stay in the
// renamed one.
func TestAccessLogReopen(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "access.log")
	open := func() (io.Writer, error) { return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644) }
	f, err := open()
	if err != nil {
		t.Fatal(err)
	}
	log := OpenAccessLog(f, AccessLogOptions{Open: open})
	log.Log(&Entry{Method: "GET", URI: "/before", Proto: "HTTP/1.1", Started: time.Now()})
	if err := os.Rename(name, name+".1"); err != nil {
		t.Fatal(err)
	}
	if err := log.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Log(&Entry{Method: "GET", URI: "/after", Proto: "HTTP/1.1", Started: time.Now()})
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(name + ".1")
	cur, _ := os.ReadFile(name)
	if !strings.Contains(string(old), "/before") || strings.Contains(string(old), "/after") {
		t.Errorf("rotated file holds %q; want only /before", old)
	}
	if !strings.Contains(string(cur), "/after") || strings.Contains(string(cur), "/before") {
		t.Errorf("new file holds %q; want only /after", cur)
	}
}
