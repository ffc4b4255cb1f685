package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/internal/testenv"
)

// fcgiScripts are the php-fpm scripts the FastCGI relay's tests run.
var fcgiScripts = map[string]string{
	// env.php prints the params as the script sees them, but for those
	// that differ by connection or by the time, and the field the full
	// path's requests carry to leave the fast one.
	"www/env.php": `<?php
$skip = ['REMOTE_PORT', 'REQUEST_TIME', 'REQUEST_TIME_FLOAT', 'HTTP_X_SHOAL_LOAD', 'argv', 'argc'];
$s = $_SERVER; ksort($s);
header('Content-Type: text/plain');
foreach ($s as $k => $v) { if (!in_array($k, $skip, true)) { echo "$k=$v\n"; } }
`,
	"www/hello.php":   "<?php echo \"hello\\n\";\n",
	"www/created.php": "<?php http_response_code(201); header('X-A: 1'); header('X-A: 2', false); header('Cache-Control: no-cache'); echo 'made';\n",
	"www/empty.php":   "<?php http_response_code(204);\n",
	// redirect.php answers with a local redirect: the site serves the new
	// path itself (dispatch), as Apache's mod_cgi does.
	// (PHP says 302 unless told 200: a bare Location is then sent.)
	"www/redirect.php": "<?php header('Location: /other.html'); http_response_code(200);\n",
	"www/other.html":   "<p>other</p>\n",
	"www/other.php":    "<?php echo 'other script';\n",
	// local.php's new path is a script: the routes send it to php-fpm
	// (not its source out as a file); denied.php's is a path the routes
	// answer 403.
	"www/local.php":           "<?php header('Location: /other.php'); http_response_code(200);\n",
	"www/denied.php":          "<?php header('Location: /private/secret.html'); http_response_code(200);\n",
	"www/private/secret.html": "secret\n",
	"www/away.php":            "<?php header('Location: https://elsewhere.test/x');\n",
	"www/big.php":             "<?php echo str_repeat(\"0123456789abcdef\", 8192);\n",
	"www/mid.php":             "<?php echo str_repeat(\"x\", 6000);\n",
	"www/flush.php":           "<?php echo 'a'; flush(); usleep(100000); echo 'b';\n",
	"www/fatal.php":           "<?php ini_set('display_errors', '0'); error_log('relay test: about to fail'); undefined_function();\n",
	"www/hugehead.php":        "<?php header('X-Big: ' . str_repeat('b', 20000)); echo 'x';\n",
	"www/slow.php":            "<?php sleep(2); echo 'late';\n",
	"www/session.php":         "<?php header('X-Replace-Session: who=bob'); echo 'stored';\n",
}

// fcgiTail routes *.php to php-fpm at target; /down/*.php to a port that
// refuses, and /slow/ to php-fpm with a short timeout.
func fcgiTail(target, root, downAddr string) string {
	return fmt.Sprintf(`
[[site.route]]
path = "/private/*"
respond = 403
[[site.route]]
path = "/env.php/*"
upstream = "php"
[[site.route]]
path = "/down/*"
upstream = "down"
[[site.route]]
path = "/slow.php"
upstream = "slowphp"
[[site.route]]
path = "*.php"
upstream = "php"
[[upstream]]
name = "php"
targets = ["%[1]s"]
root = %[2]q
[[upstream]]
name = "slowphp"
targets = ["%[1]s"]
root = %[2]q
timeout = "300ms"
[[upstream]]
name = "down"
targets = ["fastcgi://%[3]s"]
root = %[2]q
retries = 0
`, target, root, downAddr)
}

// refusingAddr is a loopback address nothing listens on.
func refusingAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestFastCGIRelaySameAsFullChain: a request for a FastCGI upstream
// answered by the HTTP/1.1 fast path's relay gets what net/http's full
// chain gives it, over HTTP and HTTPS: the same status, header fields
// (Date apart), body, access-log line and metrics, and the script sees
// the same params (env.php prints them). Local redirects, redirects
// elsewhere, a 204, a body too big to be held, a script that flushes, a
// script that fails, a header block too big, a timeout (504), a target
// that refuses (the relay hands the request to net/http: 502) and a
// session the script replaces are covered.
func TestFastCGIRelaySameAsFullChain(t *testing.T) {
	fpm := testenv.StartPHPFPM(t, testenv.FPMOptions{Listen: "tcp", Children: 4, NoIni: true})
	n, dir := startBooksNodeWith(t, false, fcgiScripts, fcgiTail("fastcgi://"+fpm.Address, "$DIR/www", refusingAddr(t)))
	paths := []string{"h1-fast", "h1-full", "h1s-fast", "h1s-full"}
	hdr := []string{"X-Dup", "a", "x-dup", "b", "Pragma", "no-cache", "X-Request-ID", "client-id-1",
		"Cookie", "a=1", "Accept-Encoding", "gzip", "X_Under", "z"}
	cases := []struct {
		name, method, target string
		status               int
		relayed              bool // the fast path answers it
		// same: the header fields agree but for these (their presence
		// is checked).
		vary []string
		body string // "": any (the same on every path)
	}{
		{"params", "GET", "/env.php/extra/info?q=1&r=%41", 200, true, nil, ""},
		{"params of an index", "GET", "/?x=1", 200, true, nil, ""},
		{"hello", "GET", "/hello.php", 200, true, nil, ""},
		{"HEAD", "HEAD", "/hello.php", 200, true, nil, ""},
		{"status and fields", "GET", "/created.php", 201, true, nil, ""},
		{"no content", "GET", "/empty.php", 204, true, nil, ""},
		{"local redirect", "GET", "/redirect.php", 200, true, nil, "<p>other</p>\n"},
		{"local redirect to a script", "GET", "/local.php", 200, true, nil, "other script"},
		{"local redirect to a denied path", "GET", "/denied.php", 403, true, nil, ""},
		{"redirect elsewhere", "GET", "/away.php", 302, true, nil, ""},
		{"big body", "GET", "/big.php", 200, true, nil, ""},
		{"flushed", "GET", "/flush.php", 200, true, nil, ""},
		{"fatal error", "GET", "/fatal.php", 500, true, nil, ""},
		{"missing script", "GET", "/nothere.php", 404, true, nil, ""},
		{"header block too big", "GET", "/hugehead.php", 502, true, nil, ""},
		{"timeout", "GET", "/slow.php", 504, true, nil, ""},
		{"target refuses", "GET", "/down/x.php", 502, false, nil, ""},
		{"session replaced", "GET", "/session.php", 200, true, []string{"Set-Cookie"}, "stored"},
	}
	type result struct {
		a       answer
		metrics string
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]result{}
			for _, path := range paths {
				fast0 := n.fastAnswered()
				m0 := booksMetrics(t, n)
				a := booksResponse(t, n, path, tc.method, tc.target, hdr, "")
				if a.status != tc.status {
					t.Fatalf("%s: status %d, want %d; body %.200q", path, a.status, tc.status, a.body)
				}
				if tc.body != "" && a.body != tc.body {
					t.Errorf("%s: body %.200q, want %q", path, a.body, tc.body)
				}
				m1 := waitSettled(t, n, m0)
				want := tc.relayed && strings.HasSuffix(path, "-fast")
				if fast := fastCounted(n, fast0+1, want); fast != want {
					t.Errorf("%s: answered by the fast path: %v, want %v", path, fast, want)
				}
				got[path] = result{a, metricsDelta(m0, m1)}
			}
			for _, path := range paths {
				g := got[path]
				want := got[strings.Replace(path, "-fast", "-full", 1)] // net/http's
				if g.a.body != want.a.body {
					t.Errorf("%s: body %.300q\nnet/http's %.300q", path, g.a.body, want.a.body)
				}
				if g.metrics != want.metrics {
					t.Errorf("%s: metrics %s\nnet/http's %s", path, g.metrics, want.metrics)
				}
				if d := headerDiff(g.a.header, want.a.header, tc.vary); d != "" {
					t.Errorf("%s: header fields differ from net/http's: %s", path, d)
				}
			}
		})
	}
	lines := waitLines(t, filepath.Join(dir, "access.log"), len(cases)*len(paths))
	for i, tc := range cases {
		mine := lines[i*len(paths) : (i+1)*len(paths)]
		for j, l := range mine {
			if l != mine[j|1] {
				t.Errorf("%s: %s logs\n  %s\nnet/http\n  %s", tc.name, paths[j], l, mine[j|1])
			}
		}
	}
}

// TestFastCGIRelayFraming: the relay sends a body that came whole before
// its buffer filled with a Content-Length, a longer one chunked, and
// keeps the connection for the next request either way.
func TestFastCGIRelayFraming(t *testing.T) {
	fpm := testenv.StartPHPFPM(t, testenv.FPMOptions{Listen: "unix", Children: 2, NoIni: true})
	n, _ := startBooksNodeWith(t, false, fcgiScripts, fcgiTail("fastcgi+unix:"+fpm.Address, "$DIR/www", refusingAddr(t)))
	conn, err := net.Dial("tcp", n.Addrs()["http"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	fast0 := n.fastAnswered()
	for i, tc := range []struct {
		path    string
		length  int64
		chunked bool
	}{
		{"/mid.php", 6000, false},
		{"/big.php", -1, true},
		{"/hello.php", 6, false},
		{"/flush.php", -1, true},
	} {
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: books.test\r\n\r\n", tc.path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		chunked := slices.Equal(resp.TransferEncoding, []string{"chunked"})
		if resp.ContentLength != tc.length || chunked != tc.chunked || resp.Close {
			t.Errorf("%s: length %d, chunked %v, close %v; want %d, %v, false", tc.path, resp.ContentLength, chunked,
				resp.Close, tc.length, tc.chunked)
		}
		if tc.length > 0 && int64(len(body)) != tc.length {
			t.Errorf("%s: %d bytes of body", tc.path, len(body))
		}
		if !fastCounted(n, fast0+int64(i+1), true) {
			t.Errorf("%s: the fast path answered %d of %d", tc.path, n.fastAnswered()-fast0, i+1)
		}
	}
}

// TestFastCGIRelaySession: a script's X-Replace-Session answered through
// the relay sets the session cookie, and the session comes back to
// scripts as HTTP_SESSION on the relay as on the full chain.
func TestFastCGIRelaySession(t *testing.T) {
	fpm := testenv.StartPHPFPM(t, testenv.FPMOptions{Listen: "unix", Children: 2, NoIni: true})
	n, _ := startBooksNodeWith(t, false, fcgiScripts, fcgiTail("fastcgi+unix:"+fpm.Address, "$DIR/www", refusingAddr(t)))
	fast0 := n.fastAnswered()
	a := booksResponse(t, n, "h1-fast", "GET", "/session.php", nil, "")
	cookie := a.header.Get("Set-Cookie")
	if relayed := fastCounted(n, fast0+1, true); a.status != 200 || a.body != "stored" || cookie == "" || !relayed {
		t.Fatalf("session.php: %d %q, cookie %q, relayed %v", a.status, a.body, cookie, relayed)
	}
	name, value, _ := strings.Cut(strings.Split(cookie, ";")[0], "=")
	hdr := []string{"Cookie", "a=1; " + name + "=" + value, "X-Request-ID", "sess-1"}
	bodies := map[string]string{}
	for _, path := range []string{"h1-fast", "h1-full"} {
		a := booksResponse(t, n, path, "GET", "/env.php", hdr, "")
		if !strings.Contains(a.body, "\nHTTP_SESSION=who=bob\n") {
			t.Errorf("%s: the script does not see the session:\n%s", path, a.body)
		}
		bodies[path] = a.body
	}
	if bodies["h1-fast"] != bodies["h1-full"] {
		t.Errorf("the params differ:\n%s\nnet/http's\n%s", bodies["h1-fast"], bodies["h1-full"])
	}
}

// TestFastCGIRelayStderr: the application's stderr records reach the
// node's log with the script's name when the relay serves the request.
func TestFastCGIRelayStderr(t *testing.T) {
	fpm := testenv.StartPHPFPM(t, testenv.FPMOptions{Listen: "unix", Children: 2, NoIni: true})
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "www"), 0o755)
	os.WriteFile(filepath.Join(dir, "www", "stderr.php"), []byte("<?php error_log('boom from the relay'); echo \"ok\\n\";\n"), 0o644)
	cfg := fmt.Sprintf("[log]\naccess = \"off\"\n[server]\nhttp = \"127.0.0.1:0\"\nadmin = \"\"\ndrain_delay = \"0s\"\n[[site]]\nroot = \"www\"\n"+
		"[[site.route]]\npath = \"*.php\"\nupstream = \"php\"\n[[upstream]]\nname = \"php\"\n"+
		"targets = [\"fastcgi+unix:%s\"]\nroot = %q\n", fpm.Address, filepath.Join(dir, "www"))
	path := filepath.Join(dir, "shoal.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var log testenv.Buffer
	n := runNodeLogged(t, path, &log)
	fast0 := n.fastAnswered()
	a := booksRaw(t, n.Addrs()["http"], "GET", "/stderr.php", nil, "")
	if relayed := fastCounted(n, fast0+1, true); a.status != 200 || a.body != "ok\n" || !relayed {
		t.Fatalf("stderr.php: %d %q, relayed %v", a.status, a.body, relayed)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), "boom from the relay") {
		if time.Now().After(deadline) {
			t.Fatalf("stderr not logged:\n%s", log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "boom from the relay") && (!strings.Contains(l, "stderr.php") || !strings.Contains(l, "uri=/stderr.php")) {
			t.Errorf("the line lacks the script or the URI: %s", l)
		}
	}
}

// fastCounted reports whether the fast path has answered want requests
// in all: it counts a relayed answer once the relay has returned, which
// may be just after the client read it, so a count that is expected
// (wait) is waited for.
func fastCounted(n *Node, want int64, wait bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for n.fastAnswered() < want {
		if !wait || time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// headerDiff lists the fields of got and want that differ, Date apart,
// and those of vary that either lacks.
func headerDiff(got, want http.Header, vary []string) string {
	var out []string
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	for k := range keys {
		switch {
		case k == "Date":
		case slices.Contains(vary, k):
			if len(got[k]) == 0 || len(want[k]) == 0 {
				out = append(out, k+" missing")
			}
		case !slices.Equal(got[k], want[k]):
			out = append(out, fmt.Sprintf("%s: %q vs %q", k, got[k], want[k]))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// waitSettled is waitBooks for an answer whose books close after it is
// out (a relay's): it waits until the request's latency is observed too,
// which comes after its count, then reads once more for its bytes.
func waitSettled(t *testing.T, n *Node, m0 map[string]float64) map[string]float64 {
	t.Helper()
	sum := func(m map[string]float64, prefix string) (s float64) {
		for k, v := range m {
			if strings.HasPrefix(k, prefix) {
				s += v - m0[k]
			}
		}
		return s
	}
	deadline := time.Now().Add(10 * time.Second)
	for m := waitBooks(t, n, m0); ; m = booksMetrics(t, n) {
		if sum(m, "shoal_http_request_duration_seconds{") >= sum(m, "shoal_http_requests_total{") {
			return booksMetrics(t, n)
		}
		if time.Now().After(deadline) {
			t.Fatal("the request's latency never reached the metrics")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCGILocalRedirectAppliesRoutes: a CGI script's local redirect goes
// through the site's routes as a request from outside does: a denied
// path answers 403 rather than the file, a rewritten one serves the
// rewrite's target.
func TestCGILocalRedirectAppliesRoutes(t *testing.T) {
	scripts := map[string]string{
		"cgi-bin/todenied.sh":     "#!/bin/sh\nprintf 'Location: /private/secret.html\\n\\n'\n",
		"cgi-bin/torewrite.sh":    "#!/bin/sh\nprintf 'Location: /old/digits\\n\\n'\n",
		"www/private/secret.html": "secret\n",
	}
	tail := `
[[site.route]]
path = "/private/*"
respond = 403
[[site.route]]
path = "/old/*"
rewrite = "/digits.txt"
`
	n, _ := startBooksNodeWith(t, false, scripts, tail)
	for _, tc := range []struct {
		target string
		status int
		body   string
	}{
		{"/cgi-bin/todenied.sh", 403, ""},
		{"/cgi-bin/torewrite.sh", 200, "0123456789\n"},
	} {
		for _, path := range []string{"h1-full", "h1-fast"} {
			a := booksResponse(t, n, path, "GET", tc.target, nil, "")
			if a.status != tc.status || tc.body != "" && a.body != tc.body {
				t.Errorf("%s %s: %d %.100q; want %d %q", path, tc.target, a.status, a.body, tc.status, tc.body)
			}
			if strings.Contains(a.body, "secret") {
				t.Errorf("%s %s: the denied file went out", path, tc.target)
			}
		}
	}
}

// TestFastCGIRelayManyFields: a request with more header lines than the
// relay reads (fastcgi.maxRelayFields) is served by net/http, whole.
func TestFastCGIRelayManyFields(t *testing.T) {
	fpm := testenv.StartPHPFPM(t, testenv.FPMOptions{Listen: "tcp", Children: 2, NoIni: true})
	n, _ := startBooksNodeWith(t, false, fcgiScripts, fcgiTail("fastcgi://"+fpm.Address, "$DIR/www", refusingAddr(t)))
	for _, fields := range []int{8, 200} {
		var hdr []string
		for i := range fields {
			hdr = append(hdr, fmt.Sprintf("X-F%d", i), "v")
		}
		fast0 := n.fastAnswered()
		a := booksResponse(t, n, "h1-fast", "GET", "/env.php", hdr, "")
		if a.status != 200 || !strings.Contains(a.body, "HTTP_X_F7=v") {
			t.Fatalf("%d fields: %d %.200q", fields, a.status, a.body)
		}
		if fields > 64 && !strings.Contains(a.body, fmt.Sprintf("HTTP_X_F%d=v", fields-1)) {
			t.Errorf("%d fields: the last one did not reach the script", fields)
		}
		wantFast := fields <= 64
		if got := fastCounted(n, fast0+1, wantFast); got != wantFast {
			t.Errorf("%d fields: relayed by the fast path %v, want %v", fields, got, wantFast)
		}
	}
}
