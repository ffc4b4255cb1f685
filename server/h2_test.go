package server_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSameBehaviourOverHTTP2 sends the same requests over HTTP/1.1 (plain)
// and HTTP/2 (TLS, self-signed) to one node and expects the same answers:
// static files, conditionals, single and multi ranges, errors, template
// pages and CGI.
func TestSameBehaviourOverHTTP2(t *testing.T) {
	dir := newSiteDir(t)
	www := filepath.Join(dir, "www")
	os.WriteFile(filepath.Join(www, "page.tmpl"), []byte(`<p>q={{query "q"}} proto-independent</p>`), 0o644)
	cgiDir := filepath.Join(dir, "cgi-bin")
	os.Mkdir(cgiDir, 0o755)
	os.WriteFile(filepath.Join(cgiDir, "hi.sh"), []byte("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhi %s\\n' \"$QUERY_STRING\"\n"), 0o755)
	tn := startNodeIn(t, dir, `https = "127.0.0.1:0"
[tls]
self_signed = true
[[site]]
root = "www"
error_pages = {404 = "404.html"}
[[site.cgi]]
prefix = "/cgi-bin/"
dir = "cgi-bin"
`)
	h2 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	h1 := &http.Client{Timeout: 10 * time.Second}
	httpsURL := "https://" + tn.node.Addrs()["https"]

	resp, err := h1.Get(tn.url + "/index.html")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")

	cases := []struct {
		name, path string
		hdr        map[string]string
		status     int
	}{
		{"file", "/index.html", nil, 200},
		{"index", "/", nil, 200},
		{"304", "/index.html", map[string]string{"If-None-Match": etag}, 304},
		{"412", "/index.html", map[string]string{"If-Match": `"nope"`}, 412},
		{"range", "/big.bin", map[string]string{"Range": "bytes=10-99"}, 206},
		{"multi range", "/big.bin", map[string]string{"Range": "bytes=0-9,100-199"}, 206},
		{"416", "/big.bin", map[string]string{"Range": "bytes=99999999-"}, 416},
		{"404 page", "/missing", nil, 404},
		{"template page", "/page?q=%3Cb%3E", nil, 200},
		{"template source", "/page.tmpl", nil, 404},
		{"cgi", "/cgi-bin/hi.sh?x=1", nil, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s1, b1, hd1 := fetch(t, h1, tn.url+tc.path, tc.hdr)
			s2, b2, hd2 := fetch(t, h2, httpsURL+tc.path, tc.hdr)
			if hd2.proto != 2 {
				t.Fatalf("HTTPS answered over HTTP/%d, want 2", hd2.proto)
			}
			if s1 != tc.status || s2 != tc.status {
				t.Fatalf("status HTTP/1.1 %d, HTTP/2 %d, want %d", s1, s2, tc.status)
			}
			if tc.name == "multi range" {
				// The boundary is random: compare the parts' bytes.
				b1, b2 = stripBoundary(b1, hd1.ctype), stripBoundary(b2, hd2.ctype)
			}
			if b1 != b2 {
				t.Errorf("bodies differ (%d vs %d bytes)", len(b1), len(b2))
			}
			if hd1.crange != hd2.crange {
				t.Errorf("Content-Range %q vs %q", hd1.crange, hd2.crange)
			}
		})
	}
}

type fetched struct {
	proto         int
	ctype, crange string
}

func fetch(t *testing.T, c *http.Client, url string, hdr map[string]string) (int, string, fetched) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), fetched{proto: resp.ProtoMajor, ctype: resp.Header.Get("Content-Type"), crange: resp.Header.Get("Content-Range")}
}

func stripBoundary(body, ctype string) string {
	_, boundary, _ := strings.Cut(ctype, "boundary=")
	return strings.ReplaceAll(body, boundary, "BOUNDARY")
}
