package http1

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unsafe"
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
		if got := HeadEnd([]byte(tc.in)); got != tc.want {
			t.Errorf("HeadEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseHead(t *testing.T) {
	const ok, no = true, false
	cases := []struct {
		name string
		in   string
		fast bool
		want Head // checked when fast
	}{
		{"plain GET", "GET /a/b.css HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n", ok,
			Head{Target: "/a/b.css", Path: "/a/b.css", Host: "example.com"}},
		{"HEAD", "HEAD /x HTTP/1.1\r\nHost: h:8080\r\n\r\n", ok,
			Head{IsHEAD: true, Target: "/x", Path: "/x", Host: "h:8080"}},
		{"query", "GET /x?v=1&b=%20 HTTP/1.1\r\nHost: h\r\n\r\n", ok,
			Head{Target: "/x?v=1&b=%20", Path: "/x", Host: "h"}},
		{"accept-encoding and close", "GET / HTTP/1.1\r\nhost: h\r\naccept-encoding:  gzip, br \r\nCONNECTION: Close\r\n\r\n", ok,
			Head{Target: "/", Path: "/", Host: "h", Cond: Conditions{AcceptEncoding: "gzip, br"}, Close: true}},
		{"conditionals", "GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"a\", W/\"b\"\r\nIf-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n", ok,
			Head{Target: "/", Path: "/", Host: "h", Cond: Conditions{IfNoneMatch: `"a", W/"b"`, IfModifiedSince: "Mon, 02 Jan 2006 15:04:05 GMT"}}},
		{"keep-alive", "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", ok,
			Head{Target: "/", Path: "/", Host: "h"}},
		{"forwarded noted", "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n", ok,
			Head{Target: "/", Path: "/", Host: "h", Forwarded: true}},
		{"hop header kept", "GET / HTTP/1.1\r\nHost: h\r\nx-shoal-hop: z.y\r\n\r\n", ok,
			Head{Target: "/", Path: "/", Host: "h", Hop: "z.y"}},
		{"two hop headers", "GET / HTTP/1.1\r\nHost: h\r\nX-Shoal-Hop: a\r\nX-Shoal-Hop: b\r\n\r\n", no, Head{}},
		{"load header", "GET / HTTP/1.1\r\nHost: h\r\nX-Shoal-Load: a\r\n\r\n", no, Head{}},

		{"POST", "POST / HTTP/1.1\r\nHost: h\r\n\r\n", no, Head{}},
		{"lower-case method", "get / HTTP/1.1\r\nHost: h\r\n\r\n", no, Head{}},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: h\r\n\r\n", no, Head{}},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", no, Head{}},
		{"no Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", no, Head{}},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", no, Head{}},
		{"empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", no, Head{}},
		{"odd Host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", no, Head{}},
		{"absolute form", "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", no, Head{}},
		{"escape", "GET /%2e%2e/etc HTTP/1.1\r\nHost: h\r\n\r\n", no, Head{}},
		{"dot segment", "GET /a/../b HTTP/1.1\r\nHost: h\r\n\r\n", no, Head{}},
		{"dotfile", "GET /.env HTTP/1.1\r\nHost: h\r\n\r\n", no, Head{}},
		{"double slash", "GET //etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n", no, Head{}},
		{"backslash", "GET /a\\b HTTP/1.1\r\nHost: h\r\n\r\n", no, Head{}},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", no, Head{}},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", no, Head{}},
		{"bare LF", "GET / HTTP/1.1\nHost: h\n\n", no, Head{}},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", no, Head{}},
		{"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", no, Head{}},
		{"control in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n", no, Head{}},
		{"Content-Length", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", no, Head{}},
		{"chunked", "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", no, Head{}},
		{"Range", "GET / HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n", no, Head{}},
		{"two If-None-Match", "GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\nIf-None-Match: \"y\"\r\n\r\n", no, Head{}},
		{"If-Match", "GET / HTTP/1.1\r\nHost: h\r\nIf-Match: \"x\"\r\n\r\n", no, Head{}},
		{"If-Unmodified-Since", "GET / HTTP/1.1\r\nHost: h\r\nif-unmodified-since: x\r\n\r\n", no, Head{}},
		{"If-Range", "GET / HTTP/1.1\r\nHost: h\r\nIf-Range: \"x\"\r\n\r\n", no, Head{}},
		{"Expect", "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", no, Head{}},
		{"Upgrade", "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", no, Head{}},
		{"two Accept-Encodings", "GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\nAccept-Encoding: br\r\n\r\n", no, Head{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.in)
			n := HeadEnd(b)
			if n < 0 {
				if tc.fast {
					t.Fatalf("HeadEnd found no end")
				}
				return
			}
			got, fast := ParseHead(b[:n])
			if fast != tc.fast {
				t.Fatalf("fast = %v, want %v", fast, tc.fast)
			}
			if !fast {
				return
			}
			got.Lines = nil
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
		n := HeadEnd(b)
		if n < 0 {
			return
		}
		h, fast := ParseHead(b[:n])
		if !fast {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("fast path took %q, net/http refuses it: %v", b[:n], err)
		}
		method := http.MethodGet
		if h.IsHEAD {
			method = http.MethodHead
		}
		switch {
		case r.Method != method:
			t.Fatalf("method %q, net/http %q", method, r.Method)
		case r.RequestURI != h.Target || r.URL.Path != h.Path:
			t.Fatalf("target %q path %q, net/http %q %q", h.Target, h.Path, r.RequestURI, r.URL.Path)
		case r.Host != h.Host:
			t.Fatalf("host %q, net/http %q", h.Host, r.Host)
		case r.Header.Get("Accept-Encoding") != h.Cond.AcceptEncoding,
			r.Header.Get("If-None-Match") != h.Cond.IfNoneMatch,
			r.Header.Get("If-Modified-Since") != h.Cond.IfModifiedSince:
			t.Fatalf("fields %+v, net/http %v", h.Cond, r.Header)
		case r.Close != h.Close:
			t.Fatalf("close %v, net/http %v", h.Close, r.Close)
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

// TestParseReusesStrings: a connection's next request with the same
// target and Host keeps the last one's strings (no allocation); a
// different one gets its own, and nothing of the last request leaks
// into the next.
func TestParseReusesStrings(t *testing.T) {
	var h Head
	steps := []struct {
		raw, target, host string
		head              bool
	}{
		{"GET /a?x=1 HTTP/1.1\r\nHost: one\r\nIf-None-Match: \"e\"\r\n\r\n", "/a?x=1", "one", false},
		{"GET /a?x=1 HTTP/1.1\r\nHost: one\r\n\r\n", "/a?x=1", "one", false},
		{"HEAD /b HTTP/1.1\r\nHost: two\r\n\r\n", "/b", "two", true},
		{"GET /a?x=1 HTTP/1.1\r\nHost: two\r\n\r\n", "/a?x=1", "two", false},
	}
	for i, st := range steps {
		last := h
		if !h.parse([]byte(st.raw)) {
			t.Fatalf("step %d: %q not parsed", i, st.raw)
		}
		if h.Target != st.target || h.Host != st.host || h.IsHEAD != st.head || h.Path != strings.SplitN(st.target, "?", 2)[0] {
			t.Fatalf("step %d: target %q path %q host %q HEAD %v", i, h.Target, h.Path, h.Host, h.IsHEAD)
		}
		if i == 1 {
			if h.Cond.IfNoneMatch != "" {
				t.Errorf("step 1 kept the last request's If-None-Match %q", h.Cond.IfNoneMatch)
			}
			if unsafe.StringData(h.Target) != unsafe.StringData(last.Target) || unsafe.StringData(h.Host) != unsafe.StringData(last.Host) {
				t.Error("step 1: same target and Host, new strings")
			}
		}
	}
	same := []byte("GET /a?x=1 HTTP/1.1\r\nHost: two\r\n\r\n")
	if n := testing.AllocsPerRun(100, func() { h.parse(same) }); n != 0 {
		t.Errorf("parsing a repeat allocates %v times", n)
	}
}
