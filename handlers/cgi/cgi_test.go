package cgi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"shoal/handlers/books"
	"shoal/internal/testenv"
)

// cgiFixture is a CGI over testdata/cgi: ScriptAlias /cgi-bin/ -> bin and
// extension .cgi inside www, with a scratch folder passed as TESTDIR.
type cgiFixture struct {
	h       *Handler
	srv     *httptest.Server
	scratch string
	log     *testenv.Buffer
}

func newCGIFixture(t *testing.T, tune func(*Handler)) *cgiFixture {
	t.Helper()
	f := &cgiFixture{scratch: t.TempDir(), log: &testenv.Buffer{}}
	f.h = &Handler{
		Root:     cgiAbs(t, "testdata/cgi/www"),
		Prefix:   "/cgi-bin/",
		Dir:      cgiAbs(t, "testdata/cgi/bin"),
		Ext:      []string{".cgi"},
		Env:      map[string]string{"TESTDIR": f.scratch, "SITE_VAR": "site value"},
		PassEnv:  []string{"PATH"},
		NodeName: "node-test",
		Logger:   slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tune != nil {
		tune(f.h)
	}
	f.srv = httptest.NewServer(books.RealIP(nil)(f.h))
	t.Cleanup(f.srv.Close)
	return f
}

func cgiAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The node's metrics take CGI events as they are.
var _ Events = (*books.Metrics)(nil)

type cgiCountEvents struct{ started, timedOut, rejected atomic.Int64 }

func (e *cgiCountEvents) CGIStarted()  { e.started.Add(1) }
func (e *cgiCountEvents) CGITimedOut() { e.timedOut.Add(1) }
func (e *cgiCountEvents) CGIRejected() { e.rejected.Add(1) }

// cgiWaitFor polls cond until it holds or d passes.
func cgiWaitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cgiClient() *http.Client {
	return &http.Client{
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func cgiDo(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := cgiClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

func (f *cgiFixture) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cgiDo(t, req)
}

func cgiParseEnv(body string) map[string]string {
	env := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

// cgiGroupGone reports whether no live process is left in process group
// pgid. Zombies do not count: an orphaned child that was killed waits for
// init to reap it, which here may take a while.
func cgiGroupGone(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) && fields[0] != "Z" && fields[0] != "X" {
			return false
		}
	}
	return true
}

func cgiReadPgid(t *testing.T, dir string) int {
	t.Helper()
	var pgid int
	cgiWaitFor(t, "the script to write its pgid", 10*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "pgid"))
		if err != nil {
			return false
		}
		pgid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pgid > 1
	})
	return pgid
}

// TestCGIEnvironment checks every meta-variable's value for one request
// sent on a raw connection, so the client port is known.
func TestCGIEnvironment(t *testing.T) {
	t.Setenv("SHOAL_TEST_SERVER_SECRET", "must not leak")
	f := newCGIFixture(t, func(h *Handler) { h.PassEnv = append(h.PassEnv, "SHOAL_TEST_SERVER_SECRET_UNLISTED") })
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST /cgi-bin/env.sh/extra/path?a=1&b=%20x HTTP/1.1\r\n"+
		"Host: example.test:8080\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\n"+
		"Content-Length: 5\r\n"+
		"X-Custom: v1\r\nX-Custom: v2\r\n"+
		"Cookie: a=1\r\nCookie: b=2\r\n"+
		"Proxy: http://evil.example:3128\r\n"+
		"Session: planted=1\r\n"+
		"Authorization: Basic Zm9vOmJhcg==\r\n"+
		"X-Forwarded-For: 198.51.100.1\r\n"+
		"X_Forwarded_For: 6.6.6.6\r\n"+
		"Connection: close\r\n\r\nhello")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	env := cgiParseEnv(string(body))
	_, srvPort, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
	_, cliPort, _ := net.SplitHostPort(conn.LocalAddr().String())
	root := cgiAbs(t, "testdata/cgi/www")
	want := map[string]string{
		"GATEWAY_INTERFACE":    "CGI/1.1",
		"SERVER_SOFTWARE":      "shoal",
		"SERVER_NAME":          "example.test",
		"SERVER_PORT":          srvPort,
		"SERVER_PROTOCOL":      "HTTP/1.1",
		"REQUEST_METHOD":       "POST",
		"REQUEST_URI":          "/cgi-bin/env.sh/extra/path?a=1&b=%20x",
		"QUERY_STRING":         "a=1&b=%20x",
		"SCRIPT_NAME":          "/cgi-bin/env.sh",
		"SCRIPT_FILENAME":      cgiAbs(t, "testdata/cgi/bin/env.sh"),
		"PATH_INFO":            "/extra/path",
		"PATH_TRANSLATED":      root + "/extra/path",
		"DOCUMENT_ROOT":        root,
		"CONTENT_TYPE":         "application/x-www-form-urlencoded",
		"CONTENT_LENGTH":       "5",
		"REMOTE_ADDR":          "127.0.0.1",
		"REMOTE_HOST":          "127.0.0.1",
		"REMOTE_PORT":          cliPort,
		"REDIRECT_STATUS":      "200",
		"SHOAL_NODE":           "node-test",
		"HTTP_HOST":            "example.test:8080",
		"HTTP_X_CUSTOM":        "v1, v2",
		"HTTP_COOKIE":          "a=1; b=2",
		"HTTP_X_FORWARDED_FOR": "198.51.100.1",
		"HTTP_CONNECTION":      "close",
		"SITE_VAR":             "site value",
		"PATH":                 os.Getenv("PATH"),
	}
	for k, v := range want {
		if v == "" {
			continue
		}
		if got, ok := env[k]; !ok || got != v {
			t.Errorf("%s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	for _, k := range []string{"HTTP_PROXY", "HTTP_SESSION", "HTTP_AUTHORIZATION", "HTTPS",
		"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "SHOAL_TEST_SERVER_SECRET", "SHOAL_TEST_SERVER_SECRET_UNLISTED"} {
		if v, ok := env[k]; ok {
			t.Errorf("%s must not be set, got %q", k, v)
		}
	}
	for k, v := range env {
		if strings.Contains(v, "6.6.6.6") || strings.Contains(v, "evil.example") || strings.Contains(v, "planted") {
			t.Errorf("%s = %q carries a header that must be dropped", k, v)
		}
	}
}

// TestCGIRemoteAddr: X-Forwarded-For counts only from a trusted proxy.
func TestCGIRemoteAddr(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		want    string
	}{
		{"untrusted peer", nil, "127.0.0.1"},
		{"trusted peer", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "203.0.113.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Root: cgiAbs(t, "testdata/cgi/www"), Prefix: "/cgi-bin/", Dir: cgiAbs(t, "testdata/cgi/bin")}
			srv := httptest.NewServer(books.RealIP(tc.trusted)(h))
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL+"/cgi-bin/env.sh", nil)
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			_, body := cgiDo(t, req)
			env := cgiParseEnv(body)
			if env["REMOTE_ADDR"] != tc.want {
				t.Errorf("REMOTE_ADDR = %q, want %q", env["REMOTE_ADDR"], tc.want)
			}
			if _, ok := env["REMOTE_PORT"]; ok != (tc.want == "127.0.0.1") {
				t.Errorf("REMOTE_PORT set = %v for client %s", ok, tc.want)
			}
		})
	}
}

func TestCGIPathInfoSplitting(t *testing.T) {
	f := newCGIFixture(t, nil)
	root := cgiAbs(t, "testdata/cgi/www")
	for _, tc := range []struct {
		path, cgiScript, file, pathInfo string
	}{
		{"/cgi-bin/env.sh", "/cgi-bin/env.sh", "bin/env.sh", ""},
		{"/cgi-bin/env.sh/", "/cgi-bin/env.sh", "bin/env.sh", "/"},
		{"/cgi-bin/env.sh/extra/path", "/cgi-bin/env.sh", "bin/env.sh", "/extra/path"},
		{"/cgi-bin/sub/app.sh/x/y.html", "/cgi-bin/sub/app.sh", "bin/sub/app.sh", "/x/y.html"},
		{"/page.cgi", "/page.cgi", "www/page.cgi", ""},
		{"/page.cgi/a/b", "/page.cgi", "www/page.cgi", "/a/b"},
		{"/sub/deep.CGI/z", "/sub/deep.CGI", "www/sub/deep.CGI", "/z"},
	} {
		resp, body := f.get(t, tc.path)
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", tc.path, resp.StatusCode)
			continue
		}
		env := cgiParseEnv(body)
		if env["SCRIPT_NAME"] != tc.cgiScript {
			t.Errorf("%s: SCRIPT_NAME = %q, want %q", tc.path, env["SCRIPT_NAME"], tc.cgiScript)
		}
		if want := cgiAbs(t, "testdata/cgi/"+tc.file); env["SCRIPT_FILENAME"] != want {
			t.Errorf("%s: SCRIPT_FILENAME = %q, want %q", tc.path, env["SCRIPT_FILENAME"], want)
		}
		pi, ok := env["PATH_INFO"]
		if pi != tc.pathInfo || ok != (tc.pathInfo != "") {
			t.Errorf("%s: PATH_INFO = %q (set %v), want %q", tc.path, pi, ok, tc.pathInfo)
		}
		pt, ok := env["PATH_TRANSLATED"]
		if tc.pathInfo == "" && ok || tc.pathInfo != "" && pt != filepath.Join(root, tc.pathInfo) {
			t.Errorf("%s: PATH_TRANSLATED = %q (set %v)", tc.path, pt, ok)
		}
	}
}

func TestCGIMatch(t *testing.T) {
	h := &Handler{Root: "testdata/cgi/www", Prefix: "/cgi-bin/", Dir: "testdata/cgi/bin", Ext: []string{".cgi", ".php"}}
	for path, want := range map[string]bool{
		"/cgi-bin/":             true,
		"/cgi-bin":              true,
		"/cgi-bin/anything":     true,
		"/cgi-bin/plain.txt":    true,
		"/cgi-binx/env.sh":      false,
		"/page.cgi":             true,
		"/PAGE.CGI":             true,
		"/a/b.php/extra":        true,
		"/index.html":           false,
		"/":                     false,
		"/x.cgi.txt":            false,
		"/dir.php/":             true,
		"/notes/.cgi":           false,
		"/static/cgi-bin/x.sh":  false,
		"/static/page.php.html": false,
	} {
		if got := h.Match(path); got != want {
			t.Errorf("Match(%q) = %v, want %v", path, got, want)
		}
	}
	if !h.IsScript(cgiAbs(t, "testdata/cgi/bin/plain.txt")) || !h.IsScript("/srv/www/x.PHP") || h.IsScript(cgiAbs(t, "testdata/cgi/www/index.html")) {
		t.Error("IsScript disagrees with the mapping")
	}
}

// TestCGISourceNeverServed: whatever the request, no script's source comes
// back, in either mapping.
func TestCGISourceNeverServed(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.sh")
	os.WriteFile(secret, []byte("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nSECRET-RAN\\n'\n"), 0o755)
	bin := t.TempDir()
	for _, name := range []string{"env.sh", "plain.txt"} {
		b, _ := os.ReadFile(filepath.Join("testdata/cgi/bin", name))
		mode := os.FileMode(0o755)
		if name == "plain.txt" {
			mode = 0o644
		}
		os.WriteFile(filepath.Join(bin, name), b, mode)
	}
	os.Symlink(secret, filepath.Join(bin, "escape.sh"))
	os.Symlink(filepath.Join(bin, "env.sh"), filepath.Join(bin, "inside.sh"))
	os.Symlink(outside, filepath.Join(bin, "outdir"))
	f := newCGIFixture(t, func(h *Handler) { h.Dir = bin })
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/cgi-bin/plain.txt", 403},
		{"/cgi-bin/", 403},
		{"/cgi-bin", 403},
		{"/cgi-bin/nope.sh", 404},
		{"/cgi-bin/.hidden.sh", 404},
		{"/cgi-bin/../bin/env.sh", 404},
		{"/cgi-bin/./env.sh", 404},
		{"/cgi-bin/escape.sh", 403},
		{"/cgi-bin/outdir/secret.sh", 403},
		{"/cgi-bin/inside.sh", 200},
		{"/notexec.cgi", 403},
		{"/sub/../page.cgi", 404},
		{"/missing.cgi", 404},
		{"/index.html/x.cgi", 404},
	} {
		req, _ := http.NewRequest("GET", f.srv.URL+tc.path, nil)
		req.URL.Opaque = tc.path // send the path exactly, uncleaned
		resp, body := cgiDo(t, req)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.status)
		}
		for _, leak := range []string{"SOURCE-OF", "#!/bin/sh", "SECRET-RAN", "printf"} {
			if strings.Contains(body, leak) {
				t.Errorf("%s: body leaks %q: %s", tc.path, leak, body)
			}
		}
	}
	if !strings.Contains(f.log.String(), "not executable") {
		t.Errorf("no log line says why plain.txt was refused:\n%s", f.log)
	}
}

func TestCGIEchoBody(t *testing.T) {
	data := make([]byte, 1<<20)
	rand.Read(data)
	f := newCGIFixture(t, nil)
	for _, tc := range []struct {
		name string
		size int
		body func([]byte) io.Reader
	}{
		{"content-length 1MiB", 1 << 20, func(b []byte) io.Reader { return bytes.NewReader(b) }},
		{"chunked 1MiB (temp file)", 1 << 20, func(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }},
		{"chunked small (memory)", 1000, func(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }},
		{"chunked empty", 0, func(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.srv.URL+"/cgi-bin/echo.sh", tc.body(data[:tc.size]))
			resp, body := cgiDo(t, req)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("X-Content-Length"); got != strconv.Itoa(tc.size) {
				t.Errorf("CONTENT_LENGTH = %q, want %d", got, tc.size)
			}
			if !bytes.Equal([]byte(body), data[:tc.size]) {
				t.Errorf("echoed %d bytes differ from the %d sent", len(body), tc.size)
			}
		})
	}
}

// TestCGIHTTP2Body: an HTTP/2 body without a length, over TLS.
func TestCGIHTTP2Body(t *testing.T) {
	h := &Handler{Root: cgiAbs(t, "testdata/cgi/www"), Prefix: "/cgi-bin/", Dir: cgiAbs(t, "testdata/cgi/bin")}
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	data := bytes.Repeat([]byte("h2 body "), 5000)
	resp, err := srv.Client().Post(srv.URL+"/cgi-bin/echo.sh", "application/octet-stream", io.MultiReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !bytes.Equal(body, data) || resp.Header.Get("X-Content-Length") != strconv.Itoa(len(data)) {
		t.Fatalf("proto %s, status %d, CONTENT_LENGTH %s, echoed %d of %d bytes",
			resp.Proto, resp.StatusCode, resp.Header.Get("X-Content-Length"), len(body), len(data))
	}
	resp, err = srv.Client().Get(srv.URL + "/cgi-bin/env.sh")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	env := cgiParseEnv(string(b))
	if env["HTTPS"] != "on" || env["SERVER_PROTOCOL"] != "HTTP/2.0" {
		t.Errorf("HTTPS = %q, SERVER_PROTOCOL = %q", env["HTTPS"], env["SERVER_PROTOCOL"])
	}
}

func TestCGIBodyOverCap(t *testing.T) {
	f := newCGIFixture(t, func(h *Handler) { h.MaxBodyBytes = 1000 })
	ran := filepath.Join(f.scratch, "ran")
	for _, tc := range []struct {
		name   string
		body   io.Reader
		status int
	}{
		{"content-length over", bytes.NewReader(make([]byte, 1001)), 413},
		{"chunked over", io.MultiReader(bytes.NewReader(make([]byte, 5000))), 413},
		{"chunked at the cap", io.MultiReader(bytes.NewReader(make([]byte, 1000))), 200},
	} {
		os.Remove(ran)
		req, _ := http.NewRequest("POST", f.srv.URL+"/cgi-bin/touch.sh", tc.body)
		resp, _ := cgiDo(t, req)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		_, err := os.Stat(ran)
		if ranOK := err == nil; ranOK != (tc.status == 200) {
			t.Errorf("%s: script ran = %v", tc.name, ranOK)
		}
	}
}

func TestCGIResponseHeaders(t *testing.T) {
	dispatched := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "dispatched %s %s body=%d", r.Method, r.URL.RequestURI(), r.ContentLength)
	})
	withDispatch := newCGIFixture(t, func(h *Handler) { h.Dispatch = dispatched })
	without := newCGIFixture(t, nil)
	for _, tc := range []struct {
		name     string
		f        *cgiFixture
		method   string
		path     string
		status   int
		body     string // substring
		location string
	}{
		{"status 418", without, "GET", "/cgi-bin/status.sh", 418, "short and stout", ""},
		{"status abc", without, "GET", "/cgi-bin/badstatus.sh", 502, "502 Bad Gateway", ""},
		{"crash before headers", without, "GET", "/cgi-bin/crash.sh", 502, "502 Bad Gateway", ""},
		{"killed inside the header block", without, "GET", "/cgi-bin/partial.sh", 502, "502 Bad Gateway", ""},
		{"client redirect", without, "GET", "/cgi-bin/away.sh", 302, "", "https://example.com/elsewhere"},
		{"local redirect dispatched", withDispatch, "POST", "/cgi-bin/redirect.sh/target", 200, "dispatched GET /target body=0", ""},
		{"local redirect without dispatch", without, "GET", "/cgi-bin/redirect.sh/target", 302, "", "/target"},
		{"head", without, "HEAD", "/cgi-bin/status.sh", 418, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.f.srv.URL+tc.path, strings.NewReader("x=1"))
			resp, body := cgiDo(t, req)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.body) || resp.Header.Get("Location") != tc.location {
				t.Errorf("got %d %q Location %q; want %d containing %q, Location %q",
					resp.StatusCode, body, resp.Header.Get("Location"), tc.status, tc.body, tc.location)
			}
			if strings.Contains(body, "never sent") || strings.Contains(body, "not this") {
				t.Errorf("body leaked: %q", body)
			}
		})
	}
	if log := without.log.String(); !strings.Contains(log, "exit status 3") || !strings.Contains(log, "crashing on purpose") {
		t.Errorf("the crash is not in the log with its exit status and stderr:\n%s", log)
	}
}

func TestCGIStderrLogged(t *testing.T) {
	f := newCGIFixture(t, nil)
	if resp, body := f.get(t, "/cgi-bin/stderr.sh"); resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	cgiWaitFor(t, "the stderr line in the log", 5*time.Second, func() bool {
		log := f.log.String()
		return strings.Contains(log, "something went wrong") && strings.Contains(log, "stderr.sh") && strings.Contains(log, "uri=/cgi-bin/stderr.sh")
	})
}

// TestCGITimeoutKillsGroup: the script and its background child are both
// gone after a 504 that comes within 3 s of a 1 s timeout.
func TestCGITimeoutKillsGroup(t *testing.T) {
	ev := &cgiCountEvents{}
	f := newCGIFixture(t, func(h *Handler) { h.Timeout = time.Second; h.Events = ev })
	start := time.Now()
	resp, _ := f.get(t, "/cgi-bin/slow.sh")
	if took := time.Since(start); resp.StatusCode != 504 || took > 3*time.Second {
		t.Fatalf("status %d after %v, want 504 within 3s", resp.StatusCode, took)
	}
	pgid := cgiReadPgid(t, f.scratch)
	cgiWaitFor(t, "every process of the group to be gone", 5*time.Second, func() bool { return cgiGroupGone(pgid) })
	cgiWaitFor(t, "Running() back to 0", 5*time.Second, func() bool { return f.h.Running() == 0 })
	if ev.started.Load() != 1 || ev.timedOut.Load() != 1 {
		t.Errorf("events: %d started, %d timed out; want 1 and 1", ev.started.Load(), ev.timedOut.Load())
	}
}

func TestCGIClientDisconnectKillsScript(t *testing.T) {
	f := newCGIFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/cgi-bin/slow.sh", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	pgid := cgiReadPgid(t, f.scratch)
	if f.h.Running() != 1 {
		t.Errorf("Running() = %d while the script runs, want 1", f.h.Running())
	}
	cancel()
	<-done
	cgiWaitFor(t, "the script's group to be killed", 5*time.Second, func() bool { return cgiGroupGone(pgid) })
	cgiWaitFor(t, "Running() back to 0", 5*time.Second, func() bool { return f.h.Running() == 0 })
}

// TestCGIConcurrencyLimit: two scripts hold both slots until released;
// of six requests the other four are turned away with 503 + Retry-After.
func TestCGIConcurrencyLimit(t *testing.T) {
	ev := &cgiCountEvents{}
	f := newCGIFixture(t, func(h *Handler) { h.MaxConcurrent = 2; h.QueueTimeout = 200 * time.Millisecond; h.Events = ev })
	type result struct {
		status     int
		retryAfter string
	}
	results := make(chan result, 6)
	for range 6 {
		go func() {
			resp, err := cgiClient().Get(f.srv.URL + "/cgi-bin/wait.sh")
			if err != nil {
				results <- result{status: -1}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- result{resp.StatusCode, resp.Header.Get("Retry-After")}
		}()
	}
	counts := map[int]int{}
	for range 4 {
		select {
		case res := <-results:
			counts[res.status]++
			if res.status == 503 && res.retryAfter == "" {
				t.Error("503 without Retry-After")
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the requests beyond the limit were not turned away")
		}
	}
	if counts[503] != 4 {
		t.Errorf("while two scripts run, got %v, want four 503", counts)
	}
	if n := f.h.Running(); n != 2 {
		t.Errorf("Running() = %d, want 2", n)
	}
	os.WriteFile(filepath.Join(f.scratch, "release"), nil, 0o644)
	for range 2 {
		select {
		case res := <-results:
			counts[res.status]++
		case <-time.After(15 * time.Second):
			t.Fatal("released scripts did not finish")
		}
	}
	if counts[200] != 2 {
		t.Errorf("got %v, want two 200", counts)
	}
	if ev.started.Load() != 2 || ev.rejected.Load() != 4 || f.h.Queued() != 0 {
		t.Errorf("events: %d started, %d rejected, %d queued; want 2, 4, 0", ev.started.Load(), ev.rejected.Load(), f.h.Queued())
	}
}

// TestCGIStreaming: the first line arrives while the script still waits
// (on a FIFO the test writes to only after reading it) to write the second.
func TestCGIStreaming(t *testing.T) {
	f := newCGIFixture(t, nil)
	fifo := filepath.Join(f.scratch, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Get(f.srv.URL + "/cgi-bin/stream.sh")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "first\n" {
		t.Fatalf("first line %q, %v", first, err)
	}
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("go\n")
	w.Close()
	second, err := br.ReadString('\n')
	if err != nil || second != "second\n" {
		t.Fatalf("second line %q, %v", second, err)
	}
}

// cgiTestSessions keeps the url-encoded session in a cookie, merging
// replacements as mod_session does.
type cgiTestSessions struct{}

func (cgiTestSessions) Encoded(r *http.Request) string {
	c, err := r.Cookie("s")
	if err != nil {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return ""
	}
	return string(b)
}

func (s cgiTestSessions) Replace(w http.ResponseWriter, r *http.Request, encoded string) error {
	cur, _ := url.ParseQuery(s.Encoded(r))
	upd, err := url.ParseQuery(encoded)
	if err != nil {
		return err
	}
	for k, v := range upd {
		if v[len(v)-1] == "" {
			cur.Del(k)
		} else {
			cur.Set(k, v[len(v)-1])
		}
	}
	http.SetCookie(w, &http.Cookie{Name: "s", Value: base64.RawURLEncoding.EncodeToString([]byte(cur.Encode())), Path: "/"})
	return nil
}

func TestCGISessionRoundTrip(t *testing.T) {
	f := newCGIFixture(t, func(h *Handler) { h.Sessions = cgiTestSessions{} })
	var cookie *http.Cookie
	step := func(query, sessionHeader, want string) {
		t.Helper()
		req, _ := http.NewRequest("GET", f.srv.URL+"/cgi-bin/session.sh?"+query, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		if sessionHeader != "" {
			req.Header.Set("Session", sessionHeader)
		}
		resp, body := cgiDo(t, req)
		if body != want {
			t.Errorf("?%s: body %q, want %q", query, body, want)
		}
		if v, ok := resp.Header["X-Replace-Session"]; ok {
			t.Errorf("X-Replace-Session reached the client: %q", v)
		}
		other := false
		for _, c := range resp.Cookies() {
			switch c.Name {
			case "s":
				cookie = c
			case "other":
				other = true
			}
		}
		if !other {
			t.Errorf("?%s: the script's own Set-Cookie is lost: %q", query, resp.Header["Set-Cookie"])
		}
	}
	step("", "planted=1", "session=unset|0\n") // a client Session header is not HTTP_SESSION
	step("a=1&b=2", "", "session=unset|0\n")
	step("b=&c=3", "planted=1", "session=a=1&b=2|1\n")
	step("", "", "session=a=1&c=3|1\n")
}

func TestCGIInterpreters(t *testing.T) {
	testenv.LookPath(t, "python3", "python3")
	f := newCGIFixture(t, func(h *Handler) { h.Interpreters = map[string]string{".py": "python3 -u"} })
	if resp, body := f.get(t, "/cgi-bin/script.py"); resp.StatusCode != 200 || body != "py ok\n" {
		t.Errorf("script.py (not executable, run by python3): %d %q", resp.StatusCode, body)
	}
	missing := newCGIFixture(t, func(h *Handler) { h.Interpreters = map[string]string{".py": "no-such-interpreter-shoal"} })
	if resp, body := missing.get(t, "/cgi-bin/script.py"); resp.StatusCode != 500 || strings.Contains(body, "print(") {
		t.Errorf("missing interpreter: %d %q", resp.StatusCode, body)
	}
}

// TestCGIPHP runs a real PHP page through php-cgi. On CI the package must
// be there (.ci/run installs it), so its absence fails the test.
func TestCGIPHP(t *testing.T) {
	testenv.LookPath(t, "php-cgi", "php-cgi")
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "page.php"), []byte(`<?php
header("X-Powered: shoal-test");
echo "sum=", 2 + 3, " name=", htmlspecialchars($_GET["name"] ?? ""), " post=", htmlspecialchars($_POST["msg"] ?? ""),
  " method=", $_SERVER["REQUEST_METHOD"], " script=", $_SERVER["SCRIPT_NAME"], "\n";
`), 0o644)
	h := &Handler{Root: root, Ext: []string{".php"}, Interpreters: map[string]string{".php": "php-cgi"}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.PostForm(srv.URL+"/page.php?name=<b>x</b>", url.Values{"msg": {"hi & bye"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "sum=5 name=&lt;b&gt;x&lt;/b&gt; post=hi &amp; bye method=POST script=/page.php\n"
	if resp.StatusCode != 200 || string(body) != want || resp.Header.Get("X-Powered") != "shoal-test" {
		t.Errorf("got %d %q (X-Powered %q), want 200 %q", resp.StatusCode, body, resp.Header.Get("X-Powered"), want)
	}
}

func BenchmarkCGIHelloSh(b *testing.B) {
	h := &Handler{Root: "testdata/cgi/www", Prefix: "/cgi-bin/", Dir: "testdata/cgi/bin", PassEnv: []string{"PATH"}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Get(srv.URL + "/cgi-bin/hello.sh")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// TestCGIDemoScripts runs the repository's demo scripts: cgi-bin/env.sh,
// cgi-bin/guestbook.pl (with a session) and www/hello.php.
func TestCGIDemoScripts(t *testing.T) {
	testenv.LookPath(t, "perl", "perl") // cgi-bin/guestbook.pl
	h := &Handler{
		Root: cgiAbs(t, "../../www"), Prefix: "/cgi-bin/", Dir: cgiAbs(t, "../../cgi-bin"),
		Ext: []string{".php"}, PassEnv: []string{"PATH"}, NodeName: "demo-node", Sessions: cgiTestSessions{},
	}
	if _, err := exec.LookPath("php-cgi"); err == nil {
		h.Interpreters = map[string]string{".php": "php-cgi"}
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/cgi-bin/env.sh?q=<b>", nil)
	req.Header.Set("X-Demo", `<script>alert("x")</script>`)
	resp, body := cgiDo(t, req)
	for _, want := range []string{
		"<tr><th>GATEWAY_INTERFACE</th><td>CGI/1.1</td></tr>",
		"<tr><th>QUERY_STRING</th><td>q=&lt;b&gt;</td></tr>",
		"<tr><th>HTTP_X_DEMO</th><td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</td></tr>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("env.sh: %d, page lacks %q", resp.StatusCode, want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("env.sh: unescaped header value in the page")
	}

	form := url.Values{"name": {"Ann <3"}, "message": {"hello & <b>bye</b>"}}
	req, _ = http.NewRequest("POST", srv.URL+"/cgi-bin/guestbook.pl", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ = cgiDo(t, req)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/cgi-bin/guestbook.pl" || len(resp.Cookies()) != 1 {
		t.Fatalf("guestbook POST: %d Location %q cookies %v", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	req, _ = http.NewRequest("GET", srv.URL+"/cgi-bin/guestbook.pl", nil)
	req.AddCookie(resp.Cookies()[0])
	resp, body = cgiDo(t, req)
	for _, want := range []string{`value="Ann &lt;3"`, "<li>Ann &lt;3: hello &amp; &lt;b&gt;bye&lt;/b&gt;</li>", "demo-node"} {
		if !strings.Contains(body, want) {
			t.Errorf("guestbook GET: %d, page lacks %q:\n%s", resp.StatusCode, want, body)
		}
	}

	if h.Interpreters == nil {
		testenv.Missing(t, "php-cgi not found: apt-get install php-cgi (www/hello.php not tried)")
	}
	req, _ = http.NewRequest("GET", srv.URL+"/hello.php?name=%3Ci%3E", nil)
	resp, body = cgiDo(t, req)
	if resp.StatusCode != 200 || !strings.Contains(body, "Hello, &lt;i&gt;!") || !strings.Contains(body, "demo-node") {
		t.Errorf("hello.php: %d\n%s", resp.StatusCode, body)
	}
}

// TestCGITimeoutAfterHeader: once the header is out, an overrun cannot
// become a 504; the response is cut off so the client sees it incomplete.
func TestCGITimeoutAfterHeader(t *testing.T) {
	f := newCGIFixture(t, func(h *Handler) { h.Timeout = time.Second })
	resp, err := cgiClient().Get(f.srv.URL + "/cgi-bin/slowbody.sh")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "partial\n" || err == nil {
		t.Errorf("got %d %q, read error %v; want 200 \"partial\\n\" and an error", resp.StatusCode, body, err)
	}
	cgiWaitFor(t, "Running() back to 0", 5*time.Second, func() bool { return f.h.Running() == 0 })
}

// TestCGINoDescriptorLeak: every way a script can be started and end
// (no body, a small body, a streamed one, one in a temp file, stderr
// output, a crash, a refusal to start) leaves the server with the
// descriptors it had before.
func TestCGINoDescriptorLeak(t *testing.T) {
	f := newCGIFixture(t, nil)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	big := bytes.Repeat([]byte("x"), 300<<10)
	send := func(method, path string, body io.Reader) int {
		req, err := http.NewRequest(method, f.srv.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	cases := []struct {
		method, path string
		body         func() io.Reader
		want         int
	}{
		{"GET", "/cgi-bin/hello.sh", nil, 200},
		{"POST", "/cgi-bin/echo.sh", func() io.Reader { return strings.NewReader("a=1") }, 200},
		{"POST", "/cgi-bin/echo.sh", func() io.Reader { return bytes.NewReader(big) }, 200},
		{"POST", "/cgi-bin/echo.sh", func() io.Reader { return io.MultiReader(bytes.NewReader(big)) }, 200},
		{"GET", "/cgi-bin/stderr.sh", nil, 200},
		{"GET", "/cgi-bin/crash.sh", nil, 502},
		{"GET", "/cgi-bin/partial.sh", nil, 502},
		{"GET", "/notexec.cgi", nil, 403},
	}
	run := func() {
		for _, tc := range cases {
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			if got := send(tc.method, tc.path, body); got != tc.want {
				t.Fatalf("%s %s: status %d, want %d", tc.method, tc.path, got, tc.want)
			}
		}
	}
	run() // opens what is opened once (/dev/null) and warms the server
	before := cgiOpenFDs(t)
	for range 5 {
		run()
	}
	cgiWaitFor(t, fmt.Sprintf("descriptors back to %d", before), 5*time.Second, func() bool { return cgiOpenFDs(t) <= before })
}

func cgiOpenFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
