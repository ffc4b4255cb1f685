package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/server"
)

// fastSiteConfig serves a site with compression, a sidecar, index files
// and extra headers: everything that shapes a static 200.
const fastSiteConfig = `[[site]]
root = "www"
compress = true
headers = {X-Frame-Options = "DENY", Cache-Control = "max-age=60"}

[[site]]
hosts = ["other.test"]
root = "other"
`

func newFastSiteDir(t *testing.T) string {
	t.Helper()
	dir := newSiteDir(t)
	css := strings.Repeat("body { color: #123456; margin: 0 auto; }\n", 40)
	files := map[string]string{
		"www/style.css":      css,
		"www/style.css.br":   "not really brotli, but a sidecar all the same",
		"www/app.js":         strings.Repeat("console.log('shoal');\n", 60),
		"www/data.bin":       strings.Repeat("\x00\x01\x02\x03", 5000),
		"www/tiny.txt":       "tiny\n",
		"www/a b.txt":        "space\n",
		"other/index.html":   "<h1>other</h1>\n",
		"www/sub/page.html":  "<p>page</p>\n",
		"www/.hidden":        "secret\n",
		"www/page.tmpl":      "{{.Node.Name}}",
		"www/listing/x.txt":  "x\n",
		"www/index.htm.tmpl": "never",
	}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// rawResponse is a response as the wire carried it.
type rawResponse struct {
	status string
	header []string // "Name: value" lines, Date left out, sorted
	body   []byte
}

func readRaw(t *testing.T, br *bufio.Reader, head bool) rawResponse {
	t.Helper()
	var r rawResponse
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading status: %v", err)
	}
	r.status = strings.TrimRight(line, "\r\n")
	length := -1
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading header: %v", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		name, value, _ := strings.Cut(line, ": ")
		if http.CanonicalHeaderKey(name) == "Content-Length" {
			fmt.Sscan(value, &length)
		}
		if name != "Date" {
			r.header = append(r.header, line)
		}
	}
	sort.Strings(r.header)
	if head || length <= 0 {
		return r
	}
	r.body = make([]byte, length)
	if _, err := io.ReadFull(br, r.body); err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return r
}

// TestFastPathSameAnswers: every request the fast path answers gets the
// very response the full chain gives (status, every header but Date,
// body), and the requests it must not answer go down the full chain;
// over plain HTTP and HTTPS/1.1, where both paths add HSTS and Alt-Svc.
func TestFastPathSameAnswers(t *testing.T) {
	tn := startNodeIn(t, newFastSiteDir(t), fastTLSConfig+fastSiteConfig)
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			roundTrip := tn.roundTrip
			if scheme == "https" {
				roundTrip = tn.roundTripTLS
			}
			testFastSame(t, tn, roundTrip, scheme == "https")
		})
	}
}

func testFastSame(t *testing.T, tn *testNode, roundTrip func(string, bool) rawResponse, https bool) {
	cases := []struct {
		name, method, path string
		hdr                string // extra header lines
		fast               bool
	}{
		{"small html", "GET", "/index.html", "", true},
		{"index of root", "GET", "/", "", true},
		{"index of sub", "GET", "/sub/", "", true},
		{"HEAD", "HEAD", "/index.html", "", true},
		{"css identity", "GET", "/style.css", "", true},
		{"css gzip", "GET", "/style.css", "Accept-Encoding: gzip\r\n", true},
		{"css zstd preferred", "GET", "/style.css", "Accept-Encoding: gzip, zstd\r\n", true},
		{"css br sidecar", "GET", "/style.css", "Accept-Encoding: br, gzip\r\n", true},
		{"css q-values", "GET", "/style.css", "Accept-Encoding: br;q=0.1, gzip;q=0.9\r\n", true},
		{"js HEAD gzip", "HEAD", "/app.js", "Accept-Encoding: gzip\r\n", true},
		{"binary", "GET", "/data.bin", "Accept-Encoding: gzip\r\n", true},
		{"tiny not compressed", "GET", "/tiny.txt", "Accept-Encoding: gzip\r\n", true},
		{"query ignored", "GET", "/tiny.txt?v=3", "", true},
		{"other vhost", "GET", "/", "", true},
		{"user agent and cookies", "GET", "/tiny.txt", "User-Agent: test\r\nCookie: a=b\r\nAccept: */*\r\n", true},

		{"missing file", "GET", "/nope.txt", "", false},
		{"dir without slash", "GET", "/sub", "", false},
		{"file with slash", "GET", "/tiny.txt/", "", false},
		{"dotfile", "GET", "/.hidden", "", false},
		{"template source", "GET", "/page.tmpl", "", false},
		{"template page", "GET", "/page", "", false},
		{"escaped name", "GET", "/a%20b.txt", "", false},
		{"no index", "GET", "/listing/", "", false},
		{"config file", "GET", "/x.toml", "", false},
		{"big file", "GET", "/big.bin", "", false},
		{"if-none-match other", "GET", "/tiny.txt", "If-None-Match: \"x\"\r\n", true},
		{"if-none-match 304", "GET", "/tiny.txt", "If-None-Match: {etag}\r\n", true},
		{"if-none-match list 304", "GET", "/tiny.txt", "If-None-Match: \"a\", W/{etag}\r\n", true},
		{"if-none-match star 304", "HEAD", "/tiny.txt", "If-None-Match: *\r\n", true},
		{"if-none-match index 304", "GET", "/", "If-None-Match: {etag}\r\n", true},
		{"if-none-match gzip 304", "GET", "/style.css", "Accept-Encoding: gzip\r\nIf-None-Match: {etag}\r\n", true},
		{"if-none-match variant 304", "GET", "/style.css", "Accept-Encoding: gzip\r\nIf-None-Match: {etag-gzip}\r\n", true},
		{"if-none-match big 304", "GET", "/big.bin", "If-None-Match: {etag}\r\n", true},
		{"if-modified-since future 304", "GET", "/tiny.txt", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n", true},
		{"if-modified-since past", "GET", "/tiny.txt", "If-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n", true},
		{"if-modified-since garbage", "GET", "/tiny.txt", "If-Modified-Since: yesterday\r\n", true},
		{"none-match wins over modified-since", "GET", "/tiny.txt",
			"If-None-Match: \"x\"\r\nIf-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n", true},

		{"range", "GET", "/tiny.txt", "Range: bytes=0-1\r\n", false},
		{"if-match", "GET", "/tiny.txt", "If-Match: {etag}\r\n", false},
		{"if-unmodified-since", "GET", "/tiny.txt", "If-Unmodified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n", false},
		{"POST", "POST", "/tiny.txt", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := "x"
			if tc.name == "other vhost" {
				host = "OTHER.test:80"
			}
			hdr := tc.hdr
			if strings.Contains(hdr, "{etag") {
				etag := tn.etagOf(tc.path)
				hdr = strings.ReplaceAll(hdr, "{etag}", etag)
				hdr = strings.ReplaceAll(hdr, "{etag-gzip}", strings.TrimSuffix(etag, `"`)+`-gzip"`)
			}
			req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n%s", tc.method, tc.path, host, hdr)
			before := server.FastAnswered(tn.node)
			fast := roundTrip(req+"\r\n", tc.method == "HEAD")
			answered := server.FastAnswered(tn.node) - before
			if want := map[bool]int64{true: 1, false: 0}[tc.fast]; answered != want {
				t.Errorf("fast path answered %d, want %d", answered, want)
			}
			// Content-Length: 0 sends the same request down the full chain.
			full := roundTrip(req+"Content-Length: 0\r\n\r\n", tc.method == "HEAD")
			if server.FastAnswered(tn.node)-before != answered {
				t.Fatal("the fast path answered a request with Content-Length")
			}
			if is304 := strings.HasSuffix(tc.name, " 304"); is304 != strings.Contains(fast.status, " 304 ") {
				t.Errorf("status %s (a 304 expected: %v)", fast.status, is304)
			}
			if fast.status != full.status || !equalLines(fast.header, full.header) || !bytes.Equal(fast.body, full.body) {
				t.Errorf("fast and full paths differ:\nfast %s\n  %s\n  %q\nfull %s\n  %s\n  %q",
					fast.status, strings.Join(fast.header, "\n  "), clip(fast.body),
					full.status, strings.Join(full.header, "\n  "), clip(full.body))
			}
			if https && (!slices.Contains(fast.header, "Strict-Transport-Security: max-age=60") ||
				!slices.ContainsFunc(fast.header, func(l string) bool { return strings.HasPrefix(l, "Alt-Svc: h3=") })) {
				t.Errorf("HTTPS answer without HSTS or Alt-Svc: %v", fast.header)
			}
		})
	}
}

// etagOf returns the ETag of the identity response for path.
func (tn *testNode) etagOf(path string) string {
	tn.t.Helper()
	r := tn.roundTrip("HEAD "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", true)
	for _, l := range r.header {
		if v, ok := strings.CutPrefix(l, "Etag: "); ok {
			return v
		}
	}
	tn.t.Fatalf("no ETag for %s: %v", path, r.header)
	return ""
}

func equalLines(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

func clip(b []byte) []byte { return b[:min(len(b), 60)] }

// roundTrip sends one raw request on a new connection and reads the
// response.
func (tn *testNode) roundTrip(req string, head bool) rawResponse {
	tn.t.Helper()
	conn := tn.dial(10 * time.Second)
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		tn.t.Fatal(err)
	}
	return readRaw(tn.t, bufio.NewReader(conn), head)
}

// TestFastPathHandOff: one connection, pipelined: a fast request, one the
// fast path hands to net/http (with the bytes it read), then more; all
// answered in order.
func TestFastPathHandOff(t *testing.T) {
	tn := startNodeIn(t, newFastSiteDir(t), fastSiteConfig)
	conn := tn.dial(10 * time.Second)
	reqs := "GET /tiny.txt HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /tiny.txt HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=2-5\r\n\r\n" +
		"GET /tiny.txt HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
	before := server.FastAnswered(tn.node)
	if _, err := io.WriteString(conn, reqs); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	want := []struct {
		status string
		body   string
	}{
		{"HTTP/1.1 200 OK", "tiny\n"},
		{"HTTP/1.1 200 OK", "tiny\n"},
		{"HTTP/1.1 206 Partial Content", "\x02\x03\x00\x01"},
		{"HTTP/1.1 200 OK", "tiny\n"},
		{"HTTP/1.1 404 Not Found", ""},
	}
	for i, w := range want {
		r := readRaw(t, br, false)
		if r.status != w.status || w.body != "" && string(r.body) != w.body {
			t.Fatalf("response %d: %s %q, want %s %q", i, r.status, r.body, w.status, w.body)
		}
	}
	if got := server.FastAnswered(tn.node) - before; got != 2 {
		t.Errorf("fast path answered %d, want the 2 before the hand-off", got)
	}
}

// TestFastPathLongHeader: a header block larger than the fast path's
// buffer but within max_header_bytes is served (by net/http); one over the
// limit gets 431.
func TestFastPathLongHeader(t *testing.T) {
	tn := startNodeIn(t, newFastSiteDir(t), "max_header_bytes = \"16KiB\"\n"+fastSiteConfig)
	long := "X-Long: " + strings.Repeat("a", 8000) + "\r\n"
	r := tn.roundTrip("GET /tiny.txt HTTP/1.1\r\nHost: x\r\n"+long+"\r\n", false)
	if r.status != "HTTP/1.1 200 OK" || string(r.body) != "tiny\n" {
		t.Errorf("8 KB header: %s %q", r.status, r.body)
	}
	huge := "X-Long: " + strings.Repeat("a", 40000) + "\r\n"
	r = tn.roundTrip("GET /tiny.txt HTTP/1.1\r\nHost: x\r\n"+huge+"\r\n", false)
	if !strings.Contains(r.status, " 431 ") {
		t.Errorf("40 KB header: %s, want 431", r.status)
	}
}

// TestFastPathHeaderLimitExact: a head that fits the fast path's buffer
// but not max_header_bytes is refused as net/http's path refuses it, and
// one at the limit is answered by either.
func TestFastPathHeaderLimitExact(t *testing.T) {
	tn := startNodeIn(t, newFastSiteDir(t), "max_header_bytes = \"1KiB\"\n"+fastSiteConfig)
	head := func(size int) string {
		const start, end = "GET /tiny.txt HTTP/1.1\r\nHost: x\r\nX-Pad: ", "\r\n\r\n"
		return start + strings.Repeat("a", size-len(start)-len(end)) + end
	}
	cases := []struct {
		size int
		want string
	}{
		{1024, "HTTP/1.1 200 OK"},
		{1025, "HTTP/1.1 431 Request Header Fields Too Large"},
		{3000, "HTTP/1.1 431 Request Header Fields Too Large"},
	}
	for _, tc := range cases {
		if r := tn.roundTrip(head(tc.size), false); r.status != tc.want {
			t.Errorf("%d-byte head with max_header_bytes 1KiB: %s, want %s", tc.size, r.status, tc.want)
		}
	}
}

// TestFastPathConnectionClose: "Connection: close" is answered with the
// same header and the connection ends after the response.
func TestFastPathConnectionClose(t *testing.T) {
	tn := startNodeIn(t, newFastSiteDir(t), fastSiteConfig)
	before := server.FastAnswered(tn.node)
	conn := tn.dial(10 * time.Second)
	io.WriteString(conn, "GET /tiny.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(conn)
	r := readRaw(t, br, false)
	if string(r.body) != "tiny\n" || !containsLine(r.header, "Connection: close") {
		t.Fatalf("got %s %v %q", r.status, r.header, r.body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the response: %v, want EOF", err)
	}
	if server.FastAnswered(tn.node)-before != 1 {
		t.Error("not answered by the fast path")
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// TestFastPathSeesChanges: a file rewritten on disk is served new at once
// (same size too), and a reload that changes the site's headers shows
// them on the next fast response.
func TestFastPathSeesChanges(t *testing.T) {
	dir := newFastSiteDir(t)
	tn := startNodeIn(t, dir, fastSiteConfig)
	get := func() rawResponse { return tn.roundTrip("GET /tiny.txt HTTP/1.1\r\nHost: x\r\n\r\n", false) }
	if r := get(); string(r.body) != "tiny\n" {
		t.Fatalf("body %q", r.body)
	}
	path := filepath.Join(dir, "www", "tiny.txt")
	if err := os.WriteFile(path, []byte("TINY\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A rewrite within the same clock tick keeps size and maybe mtime:
	// move the mtime so the change is visible whatever the clock.
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(path, later, later)
	if r := get(); string(r.body) != "TINY\n" {
		t.Errorf("after rewrite: body %q", r.body)
	}
	tn.writeConfig(strings.Replace(fastSiteConfig, `"DENY"`, `"SAMEORIGIN"`, 1))
	if err := tn.node.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := get(); !containsLine(r.header, "X-Frame-Options: SAMEORIGIN") {
		t.Errorf("after reload: %v", r.header)
	}
}

// TestFastPathShutdown: an idle keep-alive connection of the fast path is
// closed at shutdown, and Run returns long before the grace is over.
func TestFastPathShutdown(t *testing.T) {
	tn := startNodeIn(t, newFastSiteDir(t), "shutdown_grace = \"20s\"\n"+fastSiteConfig)
	conn := tn.dial(30 * time.Second)
	io.WriteString(conn, "GET /tiny.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	if r := readRaw(t, br, false); string(r.body) != "tiny\n" {
		t.Fatalf("body %q", r.body)
	}
	start := time.Now()
	if err := tn.stop(15 * time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Run took %v to return with one idle connection", el)
	}
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("idle connection after shutdown: %v, want closed", err)
	}
}

// TestFastPathConcurrent: many connections at once, fast and full
// requests mixed, all answered right (run with -race).
func TestFastPathConcurrent(t *testing.T) {
	tn := startNodeIn(t, newFastSiteDir(t), fastSiteConfig)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for j := range 50 {
				path, want := "/tiny.txt", "tiny\n"
				if (i+j)%5 == 0 {
					path, want = "/sub/page.html", "<p>page</p>\n"
				}
				req, _ := http.NewRequest("GET", tn.url+path, nil)
				if j%7 == 0 {
					req.Header.Set("If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT")
				}
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(body) != want {
					errs <- fmt.Errorf("%s: %d %q %v", path, resp.StatusCode, body, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
