package main

import (
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
)

// TestSpecStatic: SPEC "Static files": conditional requests, single and
// multi ranges, MIME, index files, the directory redirect, escaped
// listings, custom error pages, and what is never served.
func TestSpecStatic(t *testing.T) {
	t.Parallel()
	p := startShoal(t, specSite(t, ""))
	c := specClient()
	first, _ := specDo(t, c, p.url, specReq{path: "/r.txt"})
	etag, lm := first.Header.Get("ETag"), first.Header.Get("Last-Modified")
	if etag == "" || lm == "" {
		t.Fatalf("GET /r.txt: ETag %q, Last-Modified %q; want both", etag, lm)
	}
	many := make([]string, 50)
	for i := range many {
		many[i] = "0-0"
	}
	cases := []specCase{
		{name: "If-None-Match 304", req: specReq{path: "/r.txt", hdr: []string{"If-None-Match", etag}}, status: 304, hdr: map[string]string{"ETag": etag}},
		{name: "If-None-Match * 304", req: specReq{path: "/r.txt", hdr: []string{"If-None-Match", "*"}}, status: 304},
		{name: "If-None-Match other 200", req: specReq{path: "/r.txt", hdr: []string{"If-None-Match", `"other"`}}, status: 200, has: []string{"0123"}},
		{name: "If-Modified-Since 304", req: specReq{path: "/r.txt", hdr: []string{"If-Modified-Since", lm}}, status: 304},
		{name: "If-Match mismatch 412", req: specReq{path: "/r.txt", hdr: []string{"If-Match", `"other"`}}, status: 412},
		{name: "If-Match match 200", req: specReq{path: "/r.txt", hdr: []string{"If-Match", etag}}, status: 200},
		{name: "If-Unmodified-Since past 412", req: specReq{path: "/r.txt", hdr: []string{"If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"}}, status: 412},
		{name: "single range 206", req: specReq{path: "/r.txt", hdr: []string{"Range", "bytes=2-4"}}, status: 206,
			hdr: map[string]string{"Content-Range": "bytes 2-4/20"}, has: []string{"234"}},
		{name: "unsatisfiable range 416", req: specReq{path: "/r.txt", hdr: []string{"Range", "bytes=100-200"}}, status: 416,
			hdr: map[string]string{"Content-Range": "bytes */20"}},
		{name: "If-Range stale gives the whole file", req: specReq{path: "/r.txt", hdr: []string{"Range", "bytes=0-1", "If-Range", `"old"`}}, status: 200, has: []string{"0123456789abcdefghij"}},
		{name: "HEAD no body", req: specReq{method: "HEAD", path: "/r.txt"}, status: 200, hdr: map[string]string{"Content-Length": "20"}},
		{name: "MIME css", req: specReq{path: "/style.css"}, status: 200, hdrHas: map[string]string{"Content-Type": "text/css"}},
		{name: "MIME html", req: specReq{path: "/index.html"}, status: 200, hdrHas: map[string]string{"Content-Type": "text/html"}},
		{name: "index file", req: specReq{path: "/"}, status: 200, has: []string{"hello"}},
		{name: "directory redirect keeps query", req: specReq{path: "/sub?x=1"}, status: 301, hdrHas: map[string]string{"Location": "sub/?x=1"}},
		{name: "directory index", req: specReq{path: "/sub/"}, status: 200, has: []string{"sub index"}},
		{name: "listing escapes names", req: specReq{path: "/list/"}, status: 200, has: []string{"&lt;b&gt;x&amp;y.txt", "plain.txt"}, hasNot: []string{"<b>x"}},
		{name: "custom 404 page", req: specReq{path: "/missing"}, status: 404, has: []string{"custom not found"}},
		{name: "dotfile", req: specReq{path: "/.env"}, status: 404, hasNot: []string{"SECRET"}},
		{name: "dot folder", req: specReq{path: "/.git/config"}, status: 404, hasNot: []string{"secret-git"}},
		{name: "encoded dotfile", req: specReq{path: "/%2eenv"}, status: 404, hasNot: []string{"SECRET"}},
		{name: "template source", req: specReq{path: "/page.tmpl"}, status: 404, hasNot: []string{"{{"}},
		{name: "symlink out of root", req: specReq{path: "/escape.txt"}, status: 404, hasNot: []string{"outside root"}},
		{name: "encoded traversal", req: specReq{path: "/%2e%2e/secret.txt"}, status: 400, hasNot: []string{"outside root"}},
		{name: "encoded slash traversal", req: specReq{path: "/sub/..%2f..%2fsecret.txt"}, status: 400, hasNot: []string{"outside root"}},
		{name: "POST to a file", req: specReq{method: "POST", path: "/r.txt"}, status: 405, hasNot: []string{"0123"}},
		// A site whose root holds the config, templates and CGI folders.
		{name: "config in root", req: specReq{path: "/config.toml", hdr: []string{"Host", "dot.test"}}, status: 404, hasNot: []string{"[server]"}},
		{name: "templates folder in root", req: specReq{path: "/templates/layout.tmpl", hdr: []string{"Host", "dot.test"}}, status: 404, hasNot: []string{"define"}},
		{name: "CGI script runs, source unsent", req: specReq{path: "/cgi-bin/crash.sh", hdr: []string{"Host", "dot.test"}}, status: 502, hasNot: []string{"#!/bin/sh"}},
		{name: "ext CGI source unsent", req: specReq{path: "/run.cgi"}, status: 200, has: []string{"ran run.cgi"}, hasNot: []string{"#!/bin/sh"}},
		{name: "ext CGI via HEAD", req: specReq{method: "HEAD", path: "/run.cgi"}, status: 200},
		{name: "session keys under root", req: specReq{path: "/.shoal/session-keys", hdr: []string{"Host", "dot.test"}}, status: 404},
		// Not in SPEC's list, but part of the config: a route's auth file.
		{name: "htpasswd in root", req: specReq{path: "/users.htpasswd", hdr: []string{"Host", "dot.test"}}, status: 404, hasNot: []string{"alice"}},
	}
	runSpecCases(t, p, c, p.url, cases)

	t.Run("multi range 206", func(t *testing.T) {
		resp, body := specDo(t, c, p.url, specReq{path: "/r.txt", hdr: []string{"Range", "bytes=0-1,5-6"}})
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if resp.StatusCode != 206 || err != nil || mt != "multipart/byteranges" {
			t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(strings.NewReader(body), params["boundary"])
		var got []string
		for {
			part, err := mr.NextPart()
			if err != nil {
				break
			}
			data, err := io.ReadAll(part)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, part.Header.Get("Content-Range")+"="+string(data))
		}
		if strings.Join(got, ";") != "bytes 0-1/20=01;bytes 5-6/20=56" {
			t.Errorf("parts %q", got)
		}
	})
	t.Run("many ranges bounded", func(t *testing.T) {
		resp, body := specDo(t, c, p.url, specReq{path: "/r.txt", hdr: []string{"Range", "bytes=" + strings.Join(many, ",")}})
		if len(body) > 4096 {
			t.Errorf("50 one-byte ranges of a 20-byte file: %d, %d bytes", resp.StatusCode, len(body))
		}
	})
}
