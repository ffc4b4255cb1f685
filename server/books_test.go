package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// booksPaths are the ways a request can enter a node. The "full" ones
// carry X-Shoal-Load, a field both fast paths decline (and the cluster
// strips before any handler sees it), so the same request takes the full
// chain.
var booksPaths = []string{"h1-fast", "h1-full", "h1s-fast", "h1s-full", "h2-fast", "h2-full", "h3"}

// TestBooksSameOnEveryPath: the same request through every entry path
// (HTTP/1.1 fast path and net/http, the same over TLS, HTTP/2 fast path
// and full chain, HTTP/3) leaves the same books: the same access-log line apart from the
// protocol, the same metrics deltas (requests by site, handler and status
// class, bytes, latency samples; nothing left in flight) and the same
// cluster accounting (one request served here, none left in its load),
// for every handler kind and status, with the cluster on and off. A path
// that skips the books, or keeps them differently, fails here.
func TestBooksSameOnEveryPath(t *testing.T) {
	for _, clustered := range []bool{true, false} {
		t.Run(map[bool]string{true: "cluster", false: "alone"}[clustered], func(t *testing.T) {
			testBooksSame(t, clustered)
		})
	}
}

func testBooksSame(t *testing.T, clustered bool) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			select { // past the upstream's timeout: shoal hangs up
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
				t.Errorf("the upstream request %s %v (length %d, %v) was not cancelled after its timeout",
					r.Proto, r.Header, r.ContentLength, r.TransferEncoding)
			}
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "app %s %s\n", r.Method, r.URL.RequestURI())
	}))
	defer app.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // its port refuses connections now
	n, dir := startBooksNodeWith(t, clustered, nil, `
[[site.route]]
path = "/app/*"
upstream = "app"
[[site.route]]
path = "/down/*"
upstream = "down"
[[site.route]]
path = "/slow/*"
upstream = "slow"
[[upstream]]
name = "app"
targets = ["`+app.URL+`"]
[[upstream]]
name = "down"
targets = ["`+down.URL+`"]
retries = 0
[[upstream]]
name = "slow"
targets = ["`+app.URL+`"]
timeout = "200ms"
fail_timeout = "1ms"
retries = 0
`)
	etag := booksETag(t, n, "/index.html")
	cases := []struct {
		name, method, path string
		hdr                []string
		body               string
		fast               bool // the fast paths answer it themselves
		status             int
		// forwarded: it comes through a trusted proxy, whose client the
		// log names; with a cluster the fast paths leave it to the chain.
		forwarded bool
	}{
		{"static 200", "GET", "/index.html", nil, "", true, 200, false},
		{"static HEAD", "HEAD", "/index.html", nil, "", true, 200, false},
		{"static via a trusted proxy", "GET", "/index.html", []string{"X-Forwarded-For", "203.0.113.9, 127.0.0.1"}, "", true, 200, true},
		{"static 304", "GET", "/index.html", []string{"If-None-Match", etag}, "", true, 304, false},
		{"static 206", "GET", "/digits.txt", []string{"Range", "bytes=2-5"}, "", false, 206, false},
		{"static 404 error page", "GET", "/missing.txt", nil, "", false, 404, false},
		{"static 403", "GET", "/noindex/", nil, "", false, 403, false},
		{"static 405", "POST", "/index.html", nil, "x", false, 405, false},
		{"directory 301", "GET", "/sub", nil, "", false, 301, false},
		{"page 200", "GET", "/page?q=1", nil, "", false, 200, false},
		{"page 500", "GET", "/broken", nil, "", false, 500, false},
		{"cgi 200", "GET", "/cgi-bin/ok.sh?x=1", nil, "", false, 200, false},
		{"cgi 502", "GET", "/cgi-bin/bad.sh", nil, "", false, 502, false},
		{"upstream 200", "GET", "/app/x?y=1", nil, "", false, 200, false},
		{"upstream HEAD", "HEAD", "/app/x", nil, "", false, 200, false},
		{"upstream down 502", "GET", "/down/x", nil, "", false, 502, false},
		{"upstream timeout 504", "GET", "/slow/x", nil, "", false, 504, false},
	}

	type books struct{ metrics string }
	got := make([]map[string]books, len(cases))
	for i, tc := range cases {
		got[i] = map[string]books{}
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range booksPaths {
				fastBefore := n.fastAnswered() + n.h2Answered.Load()
				m0 := booksMetrics(t, n)
				served0 := booksServed(n)
				status := booksDo(t, n, path, tc.method, tc.path, tc.hdr, tc.body)
				if status != tc.status {
					t.Fatalf("%s: status %d, want %d", path, status, tc.status)
				}
				m1 := waitBooks(t, n, m0)
				fast := n.fastAnswered()+n.h2Answered.Load() > fastBefore
				want := tc.fast && (!tc.forwarded || !clustered) && strings.HasSuffix(path, "-fast")
				// The HTTP/1.1 fast path relays an upstream's requests (alone:
				// in a cluster they are the cluster's to balance).
				relayed := !clustered && (strings.HasPrefix(tc.path, "/app/") || strings.HasPrefix(tc.path, "/slow/"))
				if relayed && (path == "h1-fast" || path == "h1s-fast") {
					want = true
				}
				if fast != want {
					t.Errorf("%s: answered by a fast path: %v, want %v", path, fast, want)
				}
				if c := n.cl.get(); c != nil {
					inflight, served := c.Accounting()
					if served-served0 != 1 || inflight != 0 {
						t.Errorf("%s: cluster counted %d requests served here, %d left in flight; want 1 and 0",
							path, served-served0, inflight)
					}
				}
				if m1["shoal_http_requests_in_flight{site=default}"] != 0 {
					t.Errorf("%s: metrics keep a request in flight", path)
				}
				got[i][path] = books{metrics: metricsDelta(m0, m1)}
			}
			want := got[i][booksPaths[0]]
			if want.metrics == "" {
				t.Fatal("no metrics recorded")
			}
			for _, path := range booksPaths[1:] {
				if got[i][path] != want {
					t.Errorf("%s keeps other metrics than %s:\n  %s\nvs\n  %s", path, booksPaths[0],
						got[i][path].metrics, want.metrics)
				}
			}
		})
	}
	// The log is flushed once a second: its lines are read once, at the
	// end. Line 1 is booksETag's; then each case's, path by path.
	lines := waitLines(t, filepath.Join(dir, "access.log"), 1+len(cases)*len(booksPaths))
	for i, tc := range cases {
		t.Run("log/"+tc.name, func(t *testing.T) {
			mine := lines[1+i*len(booksPaths) : 1+(i+1)*len(booksPaths)]
			for j, l := range mine[1:] {
				if l != mine[0] {
					t.Errorf("%s logs other than %s:\n  %s\nvs\n  %s", booksPaths[j+1], booksPaths[0], l, mine[0])
				}
			}
			if client := map[bool]string{true: "203.0.113.9 ", false: "127.0.0.1 "}[tc.forwarded]; !strings.HasPrefix(mine[0], client) {
				t.Errorf("the log line names another client than %q: %s", client, mine[0])
			}
			if !strings.Contains(mine[0], " alice [") || !strings.Contains(mine[0], `"https://ref.test/" "books-agent"`) ||
				!strings.Contains(mine[0], fmt.Sprintf(`" %d `, tc.status)) {
				t.Errorf("the log line lacks the user, referer, agent or status: %s", mine[0])
			}
		})
	}
}

// booksServed is the cluster's count of requests served here; 0 without
// a cluster.
func booksServed(n *Node) uint64 {
	if c := n.cl.get(); c != nil {
		_, served := c.Accounting()
		return served
	}
	return 0
}

// startBooksNode runs a node (a one-node cluster when clustered) with
// http, https (HTTP/2) and HTTP/3, the combined access log, and a site
// with static files, pages, CGI scripts and an error page.
func startBooksNode(t *testing.T, clustered bool) (*Node, string) {
	t.Helper()
	return startBooksNodeWith(t, clustered, nil, "")
}

// startBooksNodeWith is startBooksNode with more files and more of the
// site's config (its [[site.route]] tables, say) after its [[site.cgi]];
// $DIR in siteTail stands for the node's folder.
func startBooksNodeWith(t *testing.T, clustered bool, more map[string]string, siteTail string) (*Node, string) {
	t.Helper()
	dir := t.TempDir()
	siteTail = strings.ReplaceAll(siteTail, "$DIR", dir)
	files := map[string]string{
		"www/index.html":     "<h1>home</h1>\n",
		"www/digits.txt":     "0123456789\n",
		"www/404.html":       "<h1>custom not found</h1>\n",
		"www/sub/index.html": "<h1>sub</h1>\n",
		"www/noindex/x.txt":  "x\n",
		"www/page.tmpl":      `<p>q={{query "q"}}</p>`,
		"www/broken.tmpl":    `<p>{{index "abc" 10}}</p>`,
		"cgi-bin/ok.sh":      "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok %s\\n' \"$QUERY_STRING\"\n",
		"cgi-bin/bad.sh":     "#!/bin/sh\nprintf 'Status: abc\\n\\nbroken\\n'\n",
	}
	maps.Copy(files, more)
	if more != nil {
		writeUsers(t, dir)
	}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := `[log]
access = "access.log"
format = "combined"
[server]
name = "books"
http = "127.0.0.1:0"
https = "127.0.0.1:0"
admin = ""
drain_delay = "0s"
trusted_proxies = ["127.0.0.1/32"]
[tls]
self_signed = true
http3 = true
[cluster]
enabled = ` + fmt.Sprint(clustered) + `
gossip = "127.0.0.1:0"
secret = "` + retuneSecret + `"
[[site]]
root = "www"
error_pages = {404 = "404.html"}
[[site.cgi]]
prefix = "/cgi-bin/"
dir = "cgi-bin"
` + siteTail
	path := filepath.Join(dir, "shoal.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return runNode(t, path), dir
}

// booksDo sends one request through path and returns the status, with
// the body read to its end.
func booksDo(t *testing.T, n *Node, path, method, target string, hdr []string, body string) int {
	t.Helper()
	return booksResponse(t, n, path, method, target, hdr, body).status
}

// answer is what a client got: status, header and body.
type answer struct {
	status int
	header http.Header
	body   string
}

// booksResponse sends one request through path and returns the answer.
func booksResponse(t *testing.T, n *Node, path, method, target string, hdr []string, body string) answer {
	t.Helper()
	auth := []string{"Authorization", "Basic YWxpY2U6cHc="} // alice:pw
	if slices.Contains(hdr, "Authorization") {
		auth = nil // the case brings its own
	}
	hdr = append(append([]string{"User-Agent", "books-agent", "Referer", "https://ref.test/"}, auth...), hdr...)
	if strings.HasSuffix(path, "-full") {
		hdr = append(hdr, "X-Shoal-Load", "1")
	}
	if strings.HasPrefix(path, "h1s") {
		return booksRawTLS(t, n.Addrs()["https"], method, target, hdr, body)
	}
	if strings.HasPrefix(path, "h1") {
		return booksRaw(t, n.Addrs()["http"], method, target, hdr, body)
	}
	req, err := http.NewRequest(method, "https://"+n.Addrs()["https"]+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = http.NoBody
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	tlsConf := &tls.Config{InsecureSkipVerify: true}
	var rt http.RoundTripper
	if path == "h3" {
		tr := &http3.Transport{TLSClientConfig: tlsConf, DisableCompression: true}
		defer tr.Close()
		rt = tr
	} else {
		tr := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, DisableCompression: true}
		defer tr.CloseIdleConnections()
		rt = tr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if want := map[string]int{"h2-fast": 2, "h2-full": 2, "h3": 3}[path]; resp.ProtoMajor != want {
		t.Fatalf("%s: answered over HTTP/%d", path, resp.ProtoMajor)
	}
	return answer{resp.StatusCode, resp.Header, string(got)}
}

// booksRaw sends an HTTP/1.1 request as written, on a connection of its
// own, and reads the response.
func booksRaw(t *testing.T, addr, method, target string, hdr []string, body string) answer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return booksOn(t, conn, method, target, hdr, body)
}

// booksRawTLS is booksRaw over HTTPS/1.1.
func booksRawTLS(t *testing.T, addr, method, target string, hdr []string, body string) answer {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return booksOn(t, conn, method, target, hdr, body)
}

// booksOn sends the request on conn, reads the response and closes conn.
func booksOn(t *testing.T, conn net.Conn, method, target string, hdr []string, body string) answer {
	t.Helper()
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: books.test\r\n", method, target)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(got)}
}

func booksETag(t *testing.T, n *Node, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + n.Addrs()["http"] + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if e := resp.Header.Get("Etag"); e != "" {
		return e
	}
	t.Fatal("no ETag")
	return ""
}

// booksMetrics reads the request metrics: counters, bytes, latency
// sample counts and in-flight gauges, keyed by name and labels.
func booksMetrics(t *testing.T, n *Node) map[string]float64 {
	t.Helper()
	fams, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "shoal_http_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

// waitBooks waits until the request after m0 is in the metrics (the
// full chain closes its books when the handler returns, which a client
// may see its response before) and returns them.
func waitBooks(t *testing.T, n *Node, m0 map[string]float64) map[string]float64 {
	t.Helper()
	total := func(m map[string]float64) (sum float64) {
		for k, v := range m {
			if strings.HasPrefix(k, "shoal_http_requests_total{") {
				sum += v
			}
		}
		return sum
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := booksMetrics(t, n)
		if total(m) > total(m0) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the metrics")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricsDelta lists what changed between two readings, sorted.
func metricsDelta(m0, m1 map[string]float64) string {
	var out []string
	for k, v := range m1 {
		if d := v - m0[k]; d != 0 {
			out = append(out, fmt.Sprintf("%s+%g", k, d))
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

var (
	logTime  = regexp.MustCompile(`\[[^\]]*\]`)
	logProto = regexp.MustCompile(` HTTP/[0-9.]+" `)
)

// waitLines waits for n lines in the access log and returns them
// without their time and protocol.
func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); len(b) > 0 && len(lines) >= n {
			for i, l := range lines {
				lines[i] = logProto.ReplaceAllString(logTime.ReplaceAllString(l, "[time]"), ` PROTO" `)
			}
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("the access log has not %d lines after 10s:\n%s", n, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBooksRedirectHTTP: tls.redirect_http answers on the http listener
// before any site, and its 308s are booked like every other answer:
// logged, and counted as redirects.
func TestBooksRedirectHTTP(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "[log]\naccess = \"access.log\"\nformat = \"combined\"\n[server]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n" +
		"admin = \"\"\ndrain_delay = \"0s\"\n[tls]\nself_signed = true\nredirect_http = true\n[[site]]\nhosts = [\"localhost\"]\nroot = \"www\"\n"
	path := filepath.Join(dir, "shoal.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	n := runNode(t, path)
	m0 := booksMetrics(t, n)
	hdr := []string{"User-Agent", "books-agent", "Referer", "https://ref.test/"}
	if status := booksRaw(t, n.Addrs()["http"], "GET", "/x?y=1", hdr, "").status; status != http.StatusPermanentRedirect {
		t.Fatalf("status %d, want 308", status)
	}
	m1 := waitBooks(t, n, m0)
	if d := metricsDelta(m0, m1); !strings.Contains(d, "handler=redirect,site=localhost,status=308}+1") {
		t.Errorf("metrics: %s", d)
	}
	lines := waitLines(t, filepath.Join(dir, "access.log"), 1)
	if want := `"GET /x?y=1 PROTO" 308 `; !strings.Contains(lines[0], want) {
		t.Errorf("log line %q lacks %q", lines[0], want)
	}
}
