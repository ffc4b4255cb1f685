package server_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"shoal/server"
)

// TestH2FastPathSameAnswers: over HTTP/2, every request the fast path
// answers gets the response the full chain gives (status, every header
// but Date, body), with HSTS as on every HTTPS response; what it must
// not answer goes down the full chain.
func TestH2FastPathSameAnswers(t *testing.T) {
	tn := startNodeIn(t, newFastSiteDir(t), `https = "127.0.0.1:0"
[tls]
self_signed = true
hsts = "max-age=60"
`+fastSiteConfig)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2:  true,
		DisableCompression: true, // Accept-Encoding as each case sets it
	}}
	base := "https://" + tn.node.Addrs()["https"]
	do := func(method, path, host string, hdr map[string]string, full bool) h2Answer {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if full {
			req.Header.Set("X-Shoal-Load", "1") // a field the fast path declines
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("HTTP/%d, want 2", resp.ProtoMajor)
		}
		b, _ := io.ReadAll(resp.Body)
		a := h2Answer{status: resp.StatusCode, body: string(b)}
		for k, vv := range resp.Header {
			if k != "Date" {
				a.header = append(a.header, k+": "+strings.Join(vv, ", "))
			}
		}
		sort.Strings(a.header)
		return a
	}
	etag := do("HEAD", "/tiny.txt", "x", nil, true).headerValue("Etag")
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		fast               bool
	}{
		{"small html", "GET", "/", nil, true},
		{"HEAD", "HEAD", "/sub/", nil, true},
		{"css gzip", "GET", "/style.css", map[string]string{"Accept-Encoding": "gzip"}, true},
		{"css br sidecar", "GET", "/style.css", map[string]string{"Accept-Encoding": "br, gzip"}, true},
		{"binary", "GET", "/data.bin", nil, true},
		{"query", "GET", "/tiny.txt?v=3", nil, true},
		{"other vhost", "GET", "/", nil, true},
		{"304", "GET", "/tiny.txt", map[string]string{"If-None-Match": etag}, true},
		{"if-modified-since future", "GET", "/tiny.txt", map[string]string{"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, true},
		{"missing", "GET", "/nope.txt", nil, false},
		{"dotfile", "GET", "/.hidden", nil, false},
		{"template page", "GET", "/page", nil, false},
		{"escaped", "GET", "/a%20b.txt", nil, false},
		{"range", "GET", "/tiny.txt", map[string]string{"Range": "bytes=0-1"}, false},
		{"if-match", "GET", "/tiny.txt", map[string]string{"If-Match": etag}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := "x"
			if tc.name == "other vhost" {
				host = "OTHER.test"
			}
			before := server.H2FastAnswered(tn.node)
			fast := do(tc.method, tc.path, host, tc.hdr, false)
			if got, want := server.H2FastAnswered(tn.node)-before, map[bool]int64{true: 1}[tc.fast]; got != want {
				t.Errorf("fast path answered %d, want %d", got, want)
			}
			full := do(tc.method, tc.path, host, tc.hdr, true)
			if server.H2FastAnswered(tn.node)-before > 1 {
				t.Fatal("the fast path answered a request it should decline")
			}
			if fast.status != full.status || strings.Join(fast.header, "\n") != strings.Join(full.header, "\n") || fast.body != full.body {
				t.Errorf("fast and full paths differ:\nfast %d\n  %s\n  %d bytes\nfull %d\n  %s\n  %d bytes",
					fast.status, strings.Join(fast.header, "\n  "), len(fast.body),
					full.status, strings.Join(full.header, "\n  "), len(full.body))
			}
			if fast.headerValue("Strict-Transport-Security") != "max-age=60" {
				t.Errorf("no HSTS: %v", fast.header)
			}
		})
	}
}

// h2Answer is a response: status, "Name: value" lines but Date, sorted.
type h2Answer struct {
	status int
	header []string
	body   string
}

func (a h2Answer) headerValue(name string) string {
	for _, l := range a.header {
		if k, v, _ := strings.Cut(l, ": "); k == name {
			return v
		}
	}
	return ""
}

// TestH2FastPathAccessLog: a file answered by the HTTP/2 fast path is
// logged as the full chain logs it (HTTP/2.0, status, bytes, referer,
// user agent).
func TestH2FastPathAccessLog(t *testing.T) {
	dir := newSiteDir(t)
	cfg := "[log]\naccess = \"access.log\"\nformat = \"combined\"\n\n[server]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\nadmin = \"\"\ndrain_delay = \"0s\"\n\n[tls]\nself_signed = true\n"
	if err := os.WriteFile(filepath.Join(dir, "x.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	n := server.RunNode(t, filepath.Join(dir, "x.toml"))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	for i, full := range []bool{false, true} {
		req, _ := http.NewRequest("GET", "https://"+n.Addrs()["https"]+"/index.html?n="+strconv.Itoa(i), nil)
		req.Header.Set("User-Agent", "h2-agent")
		req.Header.Set("Referer", "https://ref.test/")
		if full {
			req.Header.Set("X-Shoal-Load", "1") // the fast path declines it
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if server.H2FastAnswered(n) != 1 {
		t.Fatalf("fast path answered %d, want 1", server.H2FastAnswered(n))
	}
	want := func(i int) string {
		return `"GET /index.html?n=` + strconv.Itoa(i) + ` HTTP/2.0" 200 14 "https://ref.test/" "h2-agent"`
	}
	waitFile(t, filepath.Join(dir, "access.log"), want(0))
	waitFile(t, filepath.Join(dir, "access.log"), want(1))
}
