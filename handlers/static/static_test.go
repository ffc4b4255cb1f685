package static

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"shoal/handlers/books"
)

const secretText = "TOP-SECRET-OUTSIDE-ROOT"

// staticFixture is a site folder with a secret file beside it (outside
// the root) and a running server for it.
type staticFixture struct {
	dir, root string
	srv       *httptest.Server
	static    *Handler
}

func newStaticFixture(t *testing.T, o Options) *staticFixture {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "www")
	files := map[string]string{
		"index.html":         "<h1>home</h1>",
		"hello.txt":          "hello, world\n",
		"style.css":          strings.Repeat("body { color: red; }\n", 100),
		"docs/index.html":    "docs index",
		"docs/guide.md":      "# guide",
		"empty/.keep":        "",
		"list/a.txt":         "a",
		"list/<script>x.txt": "xss",
		"list/b dir/c.txt":   "c",
		"list/.hidden":       "no",
		"list/page.tmpl":     "{{.}}",
		".env":               "SECRET=1",
		".git/config":        "[core]",
		".htpasswd":          "u:p",
		"about.tmpl":         "{{define}}",
		"404.html":           "custom not found",
		"pre.js":             strings.Repeat("console.log(1);\n", 100),
		"pre.js.br":          "BROTLI-BYTES",
		"pre.js.gz":          "GZIP-BYTES",
		"image.png":          "\x89PNG fake",
		"unknown.xyz123":     "data",
		"nested/deep/f.txt":  "deep",
	}
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte(secretText), 0o600); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), (maxCachedFile/16)*3) // 768 KiB: served from disk
	if err := os.WriteFile(filepath.Join(root, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(root, "escape.txt"))
	os.Symlink(dir, filepath.Join(root, "updir"))
	os.Symlink(filepath.Join(root, "hello.txt"), filepath.Join(root, "inside.txt"))
	o.Root = root
	if o.Index == nil {
		o.Index = []string{"index.html", "index.tmpl"}
	}
	if o.Errors == nil {
		o.Errors = &books.ErrorPages{Root: root, Pages: map[int]string{404: "404.html"}}
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })
	return &staticFixture{dir: dir, root: root, srv: srv, static: s}
}

func (f *staticFixture) do(t *testing.T, method, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestStaticBasics(t *testing.T) {
	f := newStaticFixture(t, Options{Compress: true})
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		body               string // exact when set
		contains           string
		header             map[string]string
	}{
		{name: "file", method: "GET", path: "/hello.txt", status: 200, body: "hello, world\n",
			header: map[string]string{"Content-Type": "text/plain; charset=utf-8", "Accept-Ranges": "bytes", "Content-Length": "13"}},
		{name: "head has no body", method: "HEAD", path: "/hello.txt", status: 200, body: "", header: map[string]string{"Content-Length": "13"}},
		{name: "index", method: "GET", path: "/", status: 200, body: "<h1>home</h1>", header: map[string]string{"Content-Type": "text/html; charset=utf-8"}},
		{name: "dir index", method: "GET", path: "/docs/", status: 200, body: "docs index"},
		{name: "dir redirect", method: "GET", path: "/docs?x=1", status: 301, header: map[string]string{"Location": "docs/?x=1"}},
		{name: "no index, no listing", method: "GET", path: "/empty/", status: 403},
		{name: "missing uses error page", method: "GET", path: "/nope.html", status: 404, body: "custom not found"},
		{name: "file as folder", method: "GET", path: "/hello.txt/", status: 404},
		{name: "png type", method: "GET", path: "/image.png", status: 200, header: map[string]string{"Content-Type": "image/png"}},
		{name: "unknown type", method: "GET", path: "/unknown.xyz123", status: 200, header: map[string]string{"Content-Type": "application/octet-stream"}},
		{name: "post refused", method: "POST", path: "/hello.txt", status: 405, header: map[string]string{"Allow": "GET, HEAD, OPTIONS"}},
		{name: "delete refused", method: "DELETE", path: "/hello.txt", status: 405},
		{name: "options", method: "OPTIONS", path: "/hello.txt", status: 204, header: map[string]string{"Allow": "GET, HEAD, OPTIONS"}},
		{name: "dotfile", method: "GET", path: "/.env", status: 404},
		{name: "git", method: "GET", path: "/.git/config", status: 404},
		{name: "htpasswd", method: "GET", path: "/.htpasswd", status: 404},
		{name: "template source", method: "GET", path: "/about.tmpl", status: 404},
		{name: "template source upper", method: "GET", path: "/ABOUT.TMPL", status: 404},
		{name: "symlink out of root", method: "GET", path: "/escape.txt", status: 404},
		{name: "symlink dir out of root", method: "GET", path: "/updir/secret.txt", status: 404},
		{name: "symlink inside root, not followed", method: "GET", path: "/inside.txt", status: 404},
		{name: "overlong name", method: "GET", path: "/" + strings.Repeat("a", 5000), status: 404},
		{name: "large file from disk", method: "GET", path: "/big.bin", status: 200, header: map[string]string{"Content-Length": fmt.Sprint(maxCachedFile * 3)}},
		{name: "deep", method: "GET", path: "/nested/deep/f.txt", status: 200, body: "deep"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, tc.method, tc.path, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if tc.body != "" || tc.method == "HEAD" {
				if body != tc.body {
					t.Errorf("body %q, want %q", body, tc.body)
				}
			}
			if strings.Contains(body, secretText) {
				t.Fatal("served a byte from outside the root")
			}
			for k, v := range tc.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// follow_symlinks = true is Apache's FollowSymLinks: links are followed
// also out of the root (Debian's packaged apps link their assets from
// /usr/share), but a target on a dot path or a template never is.
func TestStaticFollowSymlinks(t *testing.T) {
	f := newStaticFixture(t, Options{FollowSymlinks: true})
	outside := t.TempDir()
	os.MkdirAll(filepath.Join(outside, "assets"), 0o755)
	os.WriteFile(filepath.Join(outside, "assets", "logo.svg"), []byte("<svg/>"), 0o644)
	os.MkdirAll(filepath.Join(outside, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(outside, ".ssh", "id"), []byte(secretText), 0o600)
	os.WriteFile(filepath.Join(outside, "page.tmpl"), []byte(secretText), 0o644)
	root := f.static.opts.Root
	os.Symlink(filepath.Join(outside, "assets"), filepath.Join(root, "lib"))
	os.Symlink(filepath.Join(outside, ".ssh"), filepath.Join(root, "keys"))
	os.Symlink(filepath.Join(outside, ".ssh", "id"), filepath.Join(root, "id.txt"))
	os.Symlink(filepath.Join(outside, "page.tmpl"), filepath.Join(root, "page.txt"))

	for _, tt := range []struct{ path, body string }{
		{"/inside.txt", "hello, world\n"},
		{"/escape.txt", secretText}, // a link the site's owner made, as Apache
		{"/lib/logo.svg", "<svg/>"},
	} {
		if resp, body := f.do(t, "GET", tt.path, nil); resp.StatusCode != 200 || body != tt.body {
			t.Errorf("%s: %d %q, want 200 %q", tt.path, resp.StatusCode, body, tt.body)
		}
	}
	for _, p := range []string{"/keys/id", "/id.txt", "/page.txt"} {
		if resp, body := f.do(t, "GET", p, nil); resp.StatusCode != 404 || strings.Contains(body, secretText) {
			t.Errorf("%s: %d %q, want 404", p, resp.StatusCode, body)
		}
	}
}

// rawGet sends a request line as written, so no client cleans the path.
func rawGet(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStaticTraversal(t *testing.T) {
	f := newStaticFixture(t, Options{Browse: true})
	addr := strings.TrimPrefix(f.srv.URL, "http://")
	targets := []string{
		"/../secret.txt",
		"/%2e%2e/secret.txt",
		"/%2E%2E/secret.txt",
		"/.%2e/secret.txt",
		"/%2e./secret.txt",
		"/..%2fsecret.txt",
		"/%2e%2e%2fsecret.txt",
		"/%252e%252e/secret.txt",
		"/%252e%252e%252fsecret.txt",
		"/..\\secret.txt",
		"/..%5csecret.txt",
		"/%2e%2e%5csecret.txt",
		"/..%00/secret.txt",
		"/secret.txt%00.html",
		"/%c0%ae%c0%ae/secret.txt",
		"/%c0%ae%c0%ae%c0%afsecret.txt",
		"/%e0%80%ae%e0%80%ae/secret.txt",
		"//../secret.txt",
		"/docs/../../secret.txt",
		"/docs/%2e%2e/%2e%2e/secret.txt",
		"/./.././secret.txt",
		"/docs/..%2f..%2fsecret.txt",
		"/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
		"/....//secret.txt",
		"/..;/secret.txt",
		"/%u002e%u002e/secret.txt",
		"/updir/secret.txt",
		"/updir/%2e%2e/secret.txt",
		"/escape.txt",
		"http://x/../secret.txt",
		"/docs/..\\..\\secret.txt",
		"/%2fsecret.txt",
		"/.%252e/secret.txt",
	}
	if len(targets) < 25 {
		t.Fatal("want at least 25 encodings")
	}
	for _, target := range targets {
		status, body := rawGet(t, addr, target)
		if strings.Contains(body, secretText) || strings.Contains(body, "root:") {
			t.Errorf("%s: served a byte from outside the root (status %d)", target, status)
		}
		if status == 200 {
			t.Errorf("%s: status 200", target)
		}
		if status >= 500 {
			t.Errorf("%s: status %d, want a 4xx", target, status)
		}
	}
}

func TestStaticListing(t *testing.T) {
	f := newStaticFixture(t, Options{Browse: true})
	resp, body := f.do(t, "GET", "/list/", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff: a listing echoes file names", got)
	}
	if strings.Contains(body, "<script>") {
		t.Error("file name not escaped")
	}
	if !strings.Contains(body, "&lt;script&gt;x.txt") || !strings.Contains(body, `href="%3Cscript%3Ex.txt"`) {
		t.Errorf("escaped name or link missing:\n%s", body)
	}
	for _, hidden := range []string{".hidden", "page.tmpl"} {
		if strings.Contains(body, hidden) {
			t.Errorf("listing shows %s", hidden)
		}
	}
	dirAt, aAt := strings.Index(body, "b dir/"), strings.Index(body, ">a.txt<")
	if dirAt < 0 || aAt < 0 || dirAt > aAt {
		t.Errorf("want folders first, then files sorted:\n%s", body)
	}
	if !strings.Contains(body, `href="b%20dir/"`) {
		t.Errorf("folder link not escaped:\n%s", body)
	}
}

func TestStaticConditional(t *testing.T) {
	f := newStaticFixture(t, Options{})
	resp, _ := f.do(t, "GET", "/hello.txt", nil)
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if etag == "" || lastMod == "" {
		t.Fatal("no validators")
	}
	modTime, _ := http.ParseTime(lastMod)
	before := modTime.Add(-time.Hour).Format(http.TimeFormat)
	tests := []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"if-none-match hit", map[string]string{"If-None-Match": etag}, 304},
		{"if-none-match weak hit", map[string]string{"If-None-Match": "W/" + etag}, 304},
		{"if-none-match list", map[string]string{"If-None-Match": `"x", ` + etag}, 304},
		{"if-none-match star", map[string]string{"If-None-Match": "*"}, 304},
		{"if-none-match miss", map[string]string{"If-None-Match": `"other"`}, 200},
		{"if-modified-since same", map[string]string{"If-Modified-Since": lastMod}, 304},
		{"if-modified-since older", map[string]string{"If-Modified-Since": before}, 200},
		{"inm wins over ims", map[string]string{"If-None-Match": `"other"`, "If-Modified-Since": lastMod}, 200},
		{"if-match hit", map[string]string{"If-Match": etag}, 200},
		{"if-match miss", map[string]string{"If-Match": `"other"`}, 412},
		{"if-match weak never matches", map[string]string{"If-Match": "W/" + etag}, 412},
		{"if-unmodified-since older", map[string]string{"If-Unmodified-Since": before}, 412},
		{"if-unmodified-since same", map[string]string{"If-Unmodified-Since": lastMod}, 200},
		{"if-range match", map[string]string{"Range": "bytes=0-4", "If-Range": etag}, 206},
		{"if-range stale", map[string]string{"Range": "bytes=0-4", "If-Range": `"old"`}, 200},
		{"if-range date", map[string]string{"Range": "bytes=0-4", "If-Range": lastMod}, 206},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, "GET", "/hello.txt", tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 304 && (body != "" || resp.Header.Get("ETag") != etag) {
				t.Errorf("304 with body %q or etag %q", body, resp.Header.Get("ETag"))
			}
		})
	}
}

func TestStaticChangeSeenAtOnce(t *testing.T) {
	f := newStaticFixture(t, Options{})
	resp1, body1 := f.do(t, "GET", "/hello.txt", nil)
	p := filepath.Join(f.root, "hello.txt")
	if err := os.WriteFile(p, []byte("changed content!"), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(p, future, future)
	resp2, body2 := f.do(t, "GET", "/hello.txt", nil)
	if body1 == body2 || body2 != "changed content!" {
		t.Fatalf("cached content served after change: %q", body2)
	}
	if resp1.Header.Get("ETag") == resp2.Header.Get("ETag") {
		t.Error("ETag did not change")
	}
	os.Remove(p)
	if resp, _ := f.do(t, "GET", "/hello.txt", nil); resp.StatusCode != 404 {
		t.Errorf("deleted file: %d", resp.StatusCode)
	}
}

func TestStaticRanges(t *testing.T) {
	f := newStaticFixture(t, Options{})
	full, _ := os.ReadFile(filepath.Join(f.root, "big.bin"))
	size := len(full)
	tests := []struct {
		name, rng string
		status    int
		want      string // exact body for single ranges
		parts     int    // for multipart
	}{
		{"first bytes", "bytes=0-9", 206, string(full[:10]), 0},
		{"middle", "bytes=100-199", 206, string(full[100:200]), 0},
		{"open end", fmt.Sprintf("bytes=%d-", size-5), 206, string(full[size-5:]), 0},
		{"suffix", "bytes=-7", 206, string(full[size-7:]), 0},
		{"end past size clipped", fmt.Sprintf("bytes=%d-%d", size-3, size+100), 206, string(full[size-3:]), 0},
		{"two ranges", "bytes=0-1,10-11", 206, "", 2},
		{"overlapping merged", "bytes=0-10,5-20,100-110", 206, "", 2},
		{"adjacent merged to one", "bytes=0-9,10-19", 206, string(full[:20]), 0},
		{"unsatisfiable", fmt.Sprintf("bytes=%d-", size+10), 416, "", 0},
		{"malformed ignored", "bytes=abc", 200, "", 0},
		{"other unit ignored", "items=0-1", 200, "", 0},
		{"whole file", "bytes=0-", 200, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, "GET", "/big.bin", map[string]string{"Range": tc.rng})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.want != "" && body != tc.want {
				t.Fatalf("body %d bytes, want %d", len(body), len(tc.want))
			}
			if tc.status == 416 && resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
				t.Errorf("416 Content-Range %q", resp.Header.Get("Content-Range"))
			}
			if tc.status == 200 && len(body) != size {
				t.Errorf("full body %d bytes, want %d", len(body), size)
			}
			if tc.parts > 0 {
				if n := countParts(t, resp, body, full); n != tc.parts {
					t.Errorf("%d parts, want %d", n, tc.parts)
				}
			}
		})
	}
}

// countParts checks every part of a multipart/byteranges body against the
// file and returns how many there are.
func countParts(t *testing.T, resp *http.Response, body string, full []byte) int {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
		t.Errorf("Content-Length %s, body %d", resp.Header.Get("Content-Length"), len(body))
	}
	mr := multipart.NewReader(strings.NewReader(body), params["boundary"])
	n := 0
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		var start, end, total int
		fmt.Sscanf(p.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &total)
		got, _ := io.ReadAll(p)
		if string(got) != string(full[start:end+1]) {
			t.Errorf("part %d-%d wrong", start, end)
		}
		n++
	}
}

func TestStaticManyRangesBounded(t *testing.T) {
	f := newStaticFixture(t, Options{})
	for _, n := range []int{200, 5000} {
		specs := make([]string, n)
		for i := range specs {
			specs[i] = fmt.Sprintf("%d-%d", i*2, i*2) // one-byte ranges, never adjacent
		}
		resp, body := f.do(t, "GET", "/style.css", map[string]string{"Range": "bytes=" + strings.Join(specs, ",")})
		size := len(strings.Repeat("body { color: red; }\n", 100))
		if len(body) > 2*size {
			t.Errorf("%d ranges: response %d bytes for a %d-byte file", n, len(body), size)
		}
		if resp.StatusCode != 200 && resp.StatusCode != 206 {
			t.Errorf("%d ranges: status %d", n, resp.StatusCode)
		}
	}
}

func TestStaticCompression(t *testing.T) {
	f := newStaticFixture(t, Options{Compress: true})
	css := strings.Repeat("body { color: red; }\n", 100)
	tests := []struct {
		name, path, ae string
		enc            string
		body           string
	}{
		{"gzip on the fly", "/style.css", "gzip", "gzip", css},
		{"zstd on the fly", "/style.css", "zstd", "zstd", css},
		{"q prefers gzip", "/style.css", "zstd;q=0.5, gzip;q=0.9", "gzip", css},
		{"refused coding", "/style.css", "gzip;q=0", "", css},
		{"identity without header", "/style.css", "", "", css},
		{"star", "/style.css", "*", "zstd", css},
		{"small file stays plain", "/hello.txt", "gzip", "", "hello, world\n"},
		{"image never", "/image.png", "gzip", "", "\x89PNG fake"},
		{"brotli sidecar", "/pre.js", "br, gzip", "br", "BROTLI-BYTES"},
		{"gzip sidecar", "/pre.js", "gzip", "gzip", "GZIP-BYTES"},
		{"zstd on the fly beside sidecars", "/pre.js", "zstd", "zstd", strings.Repeat("console.log(1);\n", 100)},
	}
	etags := map[string]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.ae != "" {
				hdr["Accept-Encoding"] = tc.ae
			}
			resp, body := f.do(t, "GET", tc.path, hdr)
			if got := resp.Header.Get("Content-Encoding"); got != tc.enc {
				t.Fatalf("Content-Encoding %q, want %q", got, tc.enc)
			}
			if compressible(resp.Header.Get("Content-Type")) && tc.path != "/hello.txt" && resp.Header.Get("Vary") != "Accept-Encoding" {
				t.Error("no Vary: Accept-Encoding")
			}
			if got := decode(t, tc.enc, body, tc.path == "/pre.js"); got != tc.body {
				t.Errorf("body %q, want %q", got, tc.body)
			}
			key := tc.path + "|" + tc.enc
			etags[key] = resp.Header.Get("ETag")
		})
	}
	if etags["/style.css|gzip"] == etags["/style.css|"] || etags["/style.css|zstd"] == etags["/style.css|gzip"] {
		t.Errorf("variants share an ETag: %v", etags)
	}
	// A range asks for bytes of the file itself: identity.
	resp, body := f.do(t, "GET", "/style.css", map[string]string{"Accept-Encoding": "gzip", "Range": "bytes=0-3"})
	if resp.StatusCode != 206 || resp.Header.Get("Content-Encoding") != "" || body != "body" {
		t.Errorf("range with gzip: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
	}
	// A large file is compressed as it streams.
	resp, body = f.do(t, "GET", "/big.bin", map[string]string{"Accept-Encoding": "gzip"})
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
}

func decode(t *testing.T, enc, body string, sidecar bool) string {
	t.Helper()
	if sidecar && enc != "zstd" || enc == "" {
		return body
	}
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	case "zstd":
		zr, err := zstd.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return body
}

func TestParseRanges(t *testing.T) {
	tests := []struct {
		h    string
		size int64
		want []byteRange
		err  bool
	}{
		{"bytes=0-0", 10, []byteRange{{0, 1}}, false},
		{"bytes=-3", 10, []byteRange{{7, 3}}, false},
		{"bytes=-30", 10, []byteRange{{0, 10}}, false},
		{"bytes=5-", 10, []byteRange{{5, 5}}, false},
		{"bytes=8-2", 10, nil, false},
		{"bytes=10-", 10, nil, true},
		{"bytes=-0", 10, nil, true},
		{"bytes=1-2, 3-4", 10, []byteRange{{1, 4}}, false},
		{"bytes=0-1,5-6", 10, []byteRange{{0, 2}, {5, 2}}, false},
		{"bytes= 0-1 , 5-6 ", 10, []byteRange{{0, 2}, {5, 2}}, false},
		{"bytes=x-1", 10, nil, false},
	}
	for _, tc := range tests {
		got, err := parseRanges(tc.h, tc.size, 16)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v", tc.h, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: %v, want %v", tc.h, got, tc.want)
		}
	}
}

func BenchmarkStatic(b *testing.B) {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "1k.html"), bytes.Repeat([]byte("x"), 1024), 0o644)
	s, err := New(Options{Root: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	req200 := httptest.NewRequest("GET", "/1k.html", nil)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req200)
	etag := w.Header().Get("ETag")
	req304 := httptest.NewRequest("GET", "/1k.html", nil)
	req304.Header.Set("If-None-Match", etag)
	for _, bc := range []struct {
		name string
		req  *http.Request
		code int
	}{{"200", req200, 200}, {"304", req304, 304}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			w := &discardWriter{h: http.Header{}}
			for i := 0; i < b.N; i++ {
				clear(w.h)
				w.code = 0
				s.ServeHTTP(w, bc.req)
				if w.code != bc.code {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// discardWriter is a ResponseWriter that costs nothing, so the benchmark
// measures the handler alone.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) WriteHeader(c int)   { d.code = c }
func (d *discardWriter) Write(b []byte) (int, error) {
	if d.code == 0 {
		d.code = 200
	}
	return len(b), nil
}
