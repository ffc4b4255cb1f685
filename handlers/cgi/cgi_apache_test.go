package cgi

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCGITimeoutCountsIdleTime: a script that writes a line every 0.3 s
// for 2.4 s outlives a 1 s timeout, because the timeout counts time
// without I/O, as Apache's and lighttpd's do.
func TestCGITimeoutCountsIdleTime(t *testing.T) {
	f := newCGIFixture(t, func(h *Handler) { h.Timeout = time.Second })
	start := time.Now()
	resp, body := f.get(t, "/cgi-bin/trickle.sh")
	if resp.StatusCode != 200 || strings.Count(body, "line ") != 8 {
		t.Fatalf("after %v: status %d body %q; want all 8 lines", time.Since(start), resp.StatusCode, body)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("took %v: the script should have run past the 1s timeout", took)
	}
}

// TestCGIMaxTime: the same busy script is cut at max_time, and the log
// line says which limit fired and names the script.
func TestCGIMaxTime(t *testing.T) {
	f := newCGIFixture(t, func(h *Handler) { h.Timeout = 10 * time.Second; h.MaxTime = 800 * time.Millisecond })
	resp, err := cgiClient().Get(f.srv.URL + "/cgi-bin/trickle.sh")
	if err != nil {
		t.Fatal(err)
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr == nil || strings.Count(string(body), "line ") == 8 {
		t.Errorf("body %q, read error %v: want a response cut short", body, rerr)
	}
	cgiWaitFor(t, "the max_time log line", 5*time.Second, func() bool {
		log := f.log.String()
		return strings.Contains(log, "limit=max_time") && strings.Contains(log, "trickle.sh")
	})
}

// TestCGISilentScriptLogsTimeout: the silent script is killed and the log
// names the timeout as the limit.
func TestCGISilentScriptLogsTimeout(t *testing.T) {
	f := newCGIFixture(t, func(h *Handler) { h.Timeout = 500 * time.Millisecond; h.MaxTime = time.Minute })
	if resp, _ := f.get(t, "/cgi-bin/slow.sh"); resp.StatusCode != 504 {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
	if log := f.log.String(); !strings.Contains(log, "limit=timeout") || !strings.Contains(log, "slow.sh") {
		t.Errorf("log does not name the limit and script:\n%s", log)
	}
}

// TestCGIProgram: one program answers every path under the prefix, with
// the prefix as SCRIPT_NAME and the rest as PATH_INFO (ScriptAlias to a
// file), and the program is never looked up in Dir.
func TestCGIProgram(t *testing.T) {
	f := newCGIFixture(t, func(h *Handler) {
		h.Prefix, h.Dir, h.Ext = "/app/", "", nil
		h.Program = cgiAbs(t, "testdata/cgi/bin/env.sh")
	})
	for _, tc := range []struct{ path, name, info string }{
		{"/app/repo.git/info/refs?service=git-upload-pack", "/app", "/repo.git/info/refs"},
		{"/app/", "/app", "/"},
		{"/app", "/app", ""},
	} {
		resp, body := f.get(t, tc.path)
		env := cgiParseEnv(body)
		if resp.StatusCode != 200 || env["SCRIPT_NAME"] != tc.name || env["PATH_INFO"] != tc.info || !strings.HasSuffix(env["SCRIPT_FILENAME"], "/env.sh") {
			t.Errorf("%s: %d SCRIPT_NAME=%q PATH_INFO=%q SCRIPT_FILENAME=%q", tc.path, resp.StatusCode, env["SCRIPT_NAME"], env["PATH_INFO"], env["SCRIPT_FILENAME"])
		}
	}
	if !f.h.Match("/app/x") || f.h.Match("/other") || !f.h.IsScript(cgiAbs(t, "testdata/cgi/bin/env.sh")) {
		t.Error("Match/IsScript disagree with the program mapping")
	}
}

// TestCGIIndex: index may name a script; a file listed before it wins.
func TestCGIIndex(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "both"), 0o755)
	os.WriteFile(filepath.Join(root, "index.cgi"), []byte("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nindex\\n'\n"), 0o755)
	os.WriteFile(filepath.Join(root, "both", "index.html"), []byte("page"), 0o644)
	os.WriteFile(filepath.Join(root, "both", "index.cgi"), []byte("#!/bin/sh\n"), 0o755)
	c := &Handler{Root: root, Ext: []string{".cgi"}}
	index := []string{"index.html", "index.cgi"}
	if got, script := Index(root, index, "/", []*Handler{c}); got != c || script != "/index.cgi" {
		t.Errorf("/: %v %q, want the mapping and /index.cgi", got, script)
	}
	if got, _ := Index(root, index, "/both/", []*Handler{c}); got != nil {
		t.Error("/both/: index.html comes first and must win")
	}
	if got, _ := Index(root, []string{"index.html"}, "/", []*Handler{c}); got != nil {
		t.Error("an index list without scripts must not find one")
	}
	if got, _ := Index(root, index, "/../", []*Handler{c}); got != nil {
		t.Error("a dot segment must not be looked up")
	}
}

// TestCGIFollowSymlinks: a script reached through a link that leaves the
// root runs only with FollowSymlinks.
func TestCGIFollowSymlinks(t *testing.T) {
	outside, root := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(outside, "s.cgi"), []byte("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nlinked\\n'\n"), 0o755)
	os.Symlink(outside, filepath.Join(root, "lib"))
	for _, follow := range []bool{false, true} {
		f := newCGIFixture(t, func(h *Handler) { h.Root, h.Prefix, h.Dir, h.FollowSymlinks = root, "", "", follow })
		resp, body := f.get(t, "/lib/s.cgi")
		want := 403
		if follow {
			want = 200
		}
		if resp.StatusCode != want || follow && body != "linked\n" {
			t.Errorf("follow=%v: %d %q, want %d", follow, resp.StatusCode, body, want)
		}
	}
}

// TestCGIBodyOverMappingCapLogged: a 413 from the mapping's own cap is
// logged at warn, since an operator may have to raise it.
func TestCGIBodyOverMappingCapLogged(t *testing.T) {
	f := newCGIFixture(t, func(h *Handler) { h.MaxBodyBytes = 10 })
	resp, err := cgiClient().Post(f.srv.URL+"/cgi-bin/echo.sh", "text/plain", strings.NewReader(strings.Repeat("x", 100)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	if log := f.log.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "status=413") {
		t.Errorf("413 not logged at warn:\n%s", log)
	}
}

// TestCGIInvalidHeaderNameDropped: a header line whose name is not a token
// is left out with a log line; the response itself goes through.
func TestCGIInvalidHeaderNameDropped(t *testing.T) {
	f := newCGIFixture(t, nil)
	resp, body := f.get(t, "/cgi-bin/badname.sh")
	if resp.StatusCode != 200 || body != "ok\n" || resp.Header.Get("X-Good") != "kept" {
		t.Fatalf("%d %q %v, want 200 ok with X-Good", resp.StatusCode, body, resp.Header)
	}
	if log := f.log.String(); !strings.Contains(log, "invalid name") || !strings.Contains(log, "Bad Name") {
		t.Errorf("no log line for the dropped header:\n%s", log)
	}
}

// TestCGINPH: an nph- script's output reaches the client byte for byte,
// its own status line included.
func TestCGINPH(t *testing.T) {
	f := newCGIFixture(t, nil)
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /cgi-bin/nph-raw.sh HTTP/1.1\r\nHost: x\r\n\r\n")
	got, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil {
		t.Fatal(err)
	}
	want := "HTTP/1.1 299 Raw Status\r\nX-Raw: 1\r\nContent-Type: text/plain\r\n\r\nraw body\n"
	if string(got) != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestCGINPHHTTP2: where the connection cannot be taken over, the nph
// output is parsed and relayed with its status.
func TestCGINPHHTTP2(t *testing.T) {
	f := newCGIFixture(t, nil)
	srv := httptest.NewUnstartedServer(f.h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/cgi-bin/nph-raw.sh")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 299 || resp.Header.Get("X-Raw") != "1" || string(body) != "raw body\n" {
		t.Errorf("HTTP/%d %d %v %q", resp.ProtoMajor, resp.StatusCode, resp.Header, body)
	}
}

var _ http.Handler = (*Handler)(nil)

// TestCGITimeoutSeesReadsOfBufferedBody: a body sent without a length is
// buffered to a temp file the script reads directly; its reads count as
// I/O, so a script reading steadily for 3 s outlives a 1 s timeout.
func TestCGITimeoutSeesReadsOfBufferedBody(t *testing.T) {
	f := newCGIFixture(t, func(h *Handler) { h.Timeout = time.Second })
	body := io.MultiReader(strings.NewReader(strings.Repeat("x", 700<<10))) // no length: chunked
	resp, err := cgiClient().Post(f.srv.URL+"/cgi-bin/slowread.sh", "application/octet-stream", body)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != "read\n" {
		t.Errorf("status %d body %q, want 200 read", resp.StatusCode, got)
	}
}
