package server

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"shoal/handlers/static"
)

func TestHeadEnd(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next", 27},
		{"GET / HTTP/1.1\nHost: a\n\n", 24},
		{"GET / HTTP/1.1\r\nHost: a\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r", -1},
		{"", -1},
		{"\r\n", -1}, // a blank first line is not the end of a header block
	}
	for _, tc := range cases {
		if got := headEnd([]byte(tc.in)); got != tc.want {
			t.Errorf("headEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseHead(t *testing.T) {
	const ok, no = true, false
	cases := []struct {
		name string
		in   string
		fast bool
		want requestHead // checked when fast
	}{
		{"plain GET", "GET /a/b.css HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n", ok,
			requestHead{target: "/a/b.css", path: "/a/b.css", host: "example.com"}},
		{"HEAD", "HEAD /x HTTP/1.1\r\nHost: h:8080\r\n\r\n", ok,
			requestHead{head: true, target: "/x", path: "/x", host: "h:8080"}},
		{"query", "GET /x?v=1&b=%20 HTTP/1.1\r\nHost: h\r\n\r\n", ok,
			requestHead{target: "/x?v=1&b=%20", path: "/x", host: "h"}},
		{"accept-encoding and close", "GET / HTTP/1.1\r\nhost: h\r\naccept-encoding:  gzip, br \r\nCONNECTION: Close\r\n\r\n", ok,
			requestHead{target: "/", path: "/", host: "h", cond: static.FastRequest{AcceptEncoding: "gzip, br"}, close: true}},
		{"conditionals", "GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"a\", W/\"b\"\r\nIf-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n", ok,
			requestHead{target: "/", path: "/", host: "h", cond: static.FastRequest{IfNoneMatch: `"a", W/"b"`, IfModifiedSince: "Mon, 02 Jan 2006 15:04:05 GMT"}}},
		{"keep-alive", "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", ok,
			requestHead{target: "/", path: "/", host: "h"}},
		{"forwarded noted", "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n", ok,
			requestHead{target: "/", path: "/", host: "h", forwarded: true}},
		{"hop header kept", "GET / HTTP/1.1\r\nHost: h\r\nx-shoal-hop: z.y\r\n\r\n", ok,
			requestHead{target: "/", path: "/", host: "h", hop: "z.y"}},
		{"two hop headers", "GET / HTTP/1.1\r\nHost: h\r\nX-Shoal-Hop: a\r\nX-Shoal-Hop: b\r\n\r\n", no, requestHead{}},
		{"load header", "GET / HTTP/1.1\r\nHost: h\r\nX-Shoal-Load: a\r\n\r\n", no, requestHead{}},

		{"POST", "POST / HTTP/1.1\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"lower-case method", "get / HTTP/1.1\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", no, requestHead{}},
		{"no Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", no, requestHead{}},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", no, requestHead{}},
		{"empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", no, requestHead{}},
		{"odd Host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", no, requestHead{}},
		{"absolute form", "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"escape", "GET /%2e%2e/etc HTTP/1.1\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"dot segment", "GET /a/../b HTTP/1.1\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"dotfile", "GET /.env HTTP/1.1\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"double slash", "GET //etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"backslash", "GET /a\\b HTTP/1.1\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", no, requestHead{}},
		{"bare LF", "GET / HTTP/1.1\nHost: h\n\n", no, requestHead{}},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", no, requestHead{}},
		{"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", no, requestHead{}},
		{"control in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n", no, requestHead{}},
		{"Content-Length", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", no, requestHead{}},
		{"chunked", "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", no, requestHead{}},
		{"Range", "GET / HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n", no, requestHead{}},
		{"two If-None-Match", "GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\nIf-None-Match: \"y\"\r\n\r\n", no, requestHead{}},
		{"If-Match", "GET / HTTP/1.1\r\nHost: h\r\nIf-Match: \"x\"\r\n\r\n", no, requestHead{}},
		{"If-Unmodified-Since", "GET / HTTP/1.1\r\nHost: h\r\nif-unmodified-since: x\r\n\r\n", no, requestHead{}},
		{"If-Range", "GET / HTTP/1.1\r\nHost: h\r\nIf-Range: \"x\"\r\n\r\n", no, requestHead{}},
		{"Expect", "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", no, requestHead{}},
		{"Upgrade", "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", no, requestHead{}},
		{"two Accept-Encodings", "GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\nAccept-Encoding: br\r\n\r\n", no, requestHead{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.in)
			n := headEnd(b)
			if n < 0 {
				if tc.fast {
					t.Fatalf("headEnd found no end")
				}
				return
			}
			got, fast := parseHead(b[:n])
			if fast != tc.fast {
				t.Fatalf("fast = %v, want %v", fast, tc.fast)
			}
			if !fast {
				return
			}
			got.lines = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseHead holds the fast path's parser to net/http's: whatever it
// accepts, net/http reads as the same GET or HEAD, with no body.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /a/b?c=d HTTP/1.1\r\nHost: h:1\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\nUser-Agent: a b\r\n\r\n",
		"GET /%2e HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := headEnd(b)
		if n < 0 {
			return
		}
		h, fast := parseHead(b[:n])
		if !fast {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("fast path took %q, net/http refuses it: %v", b[:n], err)
		}
		method := http.MethodGet
		if h.head {
			method = http.MethodHead
		}
		switch {
		case r.Method != method:
			t.Fatalf("method %q, net/http %q", method, r.Method)
		case r.RequestURI != h.target || r.URL.Path != h.path:
			t.Fatalf("target %q path %q, net/http %q %q", h.target, h.path, r.RequestURI, r.URL.Path)
		case r.Host != h.host:
			t.Fatalf("host %q, net/http %q", h.host, r.Host)
		case r.Header.Get("Accept-Encoding") != h.cond.AcceptEncoding,
			r.Header.Get("If-None-Match") != h.cond.IfNoneMatch,
			r.Header.Get("If-Modified-Since") != h.cond.IfModifiedSince:
			t.Fatalf("fields %+v, net/http %v", h.cond, r.Header)
		case r.Close != h.close:
			t.Fatalf("close %v, net/http %v", h.close, r.Close)
		case r.ContentLength != 0 || len(r.TransferEncoding) > 0:
			t.Fatalf("net/http sees a body: length %d, encoding %v", r.ContentLength, r.TransferEncoding)
		case r.ProtoMajor != 1 || r.ProtoMinor != 1:
			t.Fatalf("net/http sees %s", r.Proto)
		}
		for _, k := range []string{"Range", "If-Match",
			"If-Unmodified-Since", "If-Range", "Expect", "Upgrade"} {
			if _, ok := r.Header[k]; ok {
				t.Fatalf("fast path took a request with %s", k)
			}
		}
		if strings.Contains(r.URL.Path, "/.") || strings.Contains(r.URL.Path, "//") {
			t.Fatalf("fast path took path %q", r.URL.Path)
		}
	})
}
