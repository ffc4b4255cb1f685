package forward

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// parse runs readHead and copyBody over raw as a response to method.
func parse(raw, method string) (*Head, string, error) {
	br := bufio.NewReaderSize(strings.NewReader(raw), readBuffer)
	h, err := readFinalHead(br, new(headCache))
	if err != nil {
		return nil, "", err
	}
	var body memSink
	err = copyBody(&body, br, h, method)
	return h, body.String(), err
}

// parseHead parses s, a whole head ending in its blank line.
func parseHead(s string) (*Head, error) {
	h := new(Head)
	if err := h.parse(s); err != nil {
		return nil, err
	}
	return h, nil
}

// memSink collects a body.
type memSink struct {
	bytes.Buffer
	head    *Head
	flushes int
	ended   bool
}

func (m *memSink) WriteHead(h *Head) error { m.head = h; return nil }
func (m *memSink) Flush() error            { m.flushes++; return nil }
func (m *memSink) End() error              { m.ended = true; return nil }

func TestParseHead(t *testing.T) {
	for _, tc := range []struct {
		name, raw, method string
		status            int
		cl                int64
		chunked, close    bool
		body              string
		bad               bool
	}{
		{name: "length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef", status: 200, cl: 3, body: "abc"},
		{name: "bare LF", raw: "HTTP/1.1 200 OK\nContent-Length: 2\n\nab", status: 200, cl: 2, body: "ab"},
		{name: "no reason", raw: "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", status: 404, cl: 0},
		{name: "chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n", status: 200, cl: -1, chunked: true, body: "abcde"},
		{name: "CL and TE", raw: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", status: 200, cl: -1, chunked: true, close: true, body: "a"},
		{name: "until close", raw: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, cl: -1, body: "all of it"},
		{name: "1.0 closes", raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, cl: 1, close: true, body: "x"},
		{name: "1.0 keep-alive", raw: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", status: 200, cl: 1, body: "x"},
		{name: "connection close", raw: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", status: 200, cl: 1, close: true, body: "x"},
		{name: "HEAD", raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method: "HEAD", status: 200, cl: 10},
		{name: "304", raw: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", status: 304, cl: 10},
		{name: "103 skipped", raw: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, cl: 1, body: "x"},
		{name: "same CL twice", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", status: 200, cl: 1, body: "x"},
		{name: "two CL", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", bad: true},
		{name: "CL sign", raw: "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", bad: true},
		{name: "CL list", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx", bad: true},
		{name: "TE gzip", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", bad: true},
		{name: "two TE", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", bad: true},
		{name: "TE on 1.0", raw: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", bad: true},
		{name: "obs-fold", raw: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", bad: true},
		{name: "space before colon", raw: "HTTP/1.1 200 OK\r\nX : a\r\n\r\n", bad: true},
		{name: "NUL in value", raw: "HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", bad: true},
		{name: "HTTP/2 line", raw: "HTTP/2 200\r\n\r\n", bad: true},
		{name: "status 2 digits", raw: "HTTP/1.1 20 OK\r\n\r\n", bad: true},
		{name: "status 099", raw: "HTTP/1.1 099 X\r\n\r\n", bad: true},
		{name: "status letters", raw: "HTTP/1.1 2x0 OK\r\n\r\n", bad: true},
		{name: "unsolicited 101", raw: "HTTP/1.1 101 Switching\r\n\r\n", bad: true},
		{name: "truncated head", raw: "HTTP/1.1 200 OK\r\nContent-", bad: true},
		{name: "short body", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", bad: true},
		{name: "bad chunk size", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", bad: true},
		{name: "chunk too long", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", bad: true},
		{name: "chunk size overflow", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", bad: true},
		{name: "head too large", raw: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxHead) + "\r\n\r\n", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, body, err := parse(tc.raw, cmpOr(tc.method, "GET"))
			if tc.bad {
				if err == nil {
					t.Fatalf("accepted: %+v %q", h, body)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Status != tc.status || h.ContentLength != tc.cl || h.Chunked != tc.chunked || h.Close != tc.close || body != tc.body {
				t.Errorf("got status %d cl %d chunked %v close %v body %q", h.Status, h.ContentLength, h.Chunked, h.Close, body)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestHopFields: hop-by-hop fields and those Connection names stay behind;
// names reach net/http canonical.
func TestHopFields(t *testing.T) {
	h, _, err := parse("HTTP/1.1 200 OK\r\nconnection: x-secret, close\r\nX-Secret: s\r\nKeep-Alive: t=5\r\n"+
		"content-type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n", "GET")
	if err != nil {
		t.Fatal(err)
	}
	got := http.Header{}
	CopyHeader(got, h)
	want := http.Header{"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}, "Content-Length": {"0"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if strings.Join(got[k], "|") != strings.Join(v, "|") {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// FuzzParseHead: whatever the bytes, the parser never panics and is never
// more lenient than net/http's ReadResponse: a response it accepts,
// ReadResponse accepts too, with the same status, framing, end-to-end
// fields and body.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b\r\nx\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.1 200 OK\nConnection: x-a\nX-A: 1\nContent-Length: 0\n\n",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		h, body, err := parse(raw, method)
		if err != nil {
			return
		}
		if h.Status < 200 || h.Status > 999 {
			t.Fatalf("status %d", h.Status)
		}
		if h.Chunked && h.ContentLength != -1 {
			t.Fatalf("chunked with length %d", h.ContentLength)
		}
		br := bufio.NewReader(strings.NewReader(raw))
		var res *http.Response
		for {
			var rerr error
			res, rerr = http.ReadResponse(br, &http.Request{Method: method})
			if rerr != nil {
				t.Fatalf("accepted what ReadResponse refuses (%v): %q", rerr, raw)
			}
			if res.StatusCode >= 200 {
				break
			}
		}
		want, berr := io.ReadAll(res.Body)
		if berr != nil && !errors.Is(berr, io.ErrUnexpectedEOF) {
			t.Fatalf("body ReadResponse refuses (%v): %q", berr, raw)
		}
		if berr != nil {
			t.Fatalf("read a body ReadResponse finds short: %q", raw)
		}
		if res.StatusCode != h.Status || string(want) != body {
			t.Fatalf("status %d body %q, ReadResponse %d %q", h.Status, body, res.StatusCode, want)
		}
		if h.Chunked != (len(res.TransferEncoding) > 0) {
			t.Fatalf("chunked %v, ReadResponse %v", h.Chunked, res.TransferEncoding)
		}
		if !h.bodyless(method) && !h.Chunked && h.ContentLength != res.ContentLength {
			t.Fatalf("length %d, ReadResponse %d", h.ContentLength, res.ContentLength)
		}
		got := http.Header{}
		CopyHeader(got, h)
		for k, v := range got {
			if strings.Join(v, "\x00") != strings.Join(res.Header[k], "\x00") {
				t.Fatalf("%s = %q, ReadResponse %q", k, v, res.Header[k])
			}
		}
		// The first head (an interim one, if any) twice on one
		// connection: the copy of the last head is what a fresh parse
		// gives, whatever a sink did to the first one.
		var hc headCache
		first, err := readHead(bufio.NewReaderSize(strings.NewReader(raw), readBuffer), &hc)
		if err != nil {
			t.Fatalf("the first head fails read alone: %v", err)
		}
		want1 := *first
		want1.Fields = append([]Field(nil), first.Fields...)
		want1.hop = append([]bool(nil), first.hop...)
		for i := range first.Fields {
			first.Fields[i].Value = "edited"
			first.Drop(i)
		}
		again, err := readHead(bufio.NewReaderSize(strings.NewReader(raw), readBuffer), &hc)
		if err != nil {
			t.Fatalf("a head read once fails the second time: %v", err)
		}
		if again.Status != want1.Status || again.ContentLength != want1.ContentLength || again.Chunked != want1.Chunked ||
			again.Close != want1.Close || !slices.Equal(again.Fields, want1.Fields) || !slices.Equal(again.hop, want1.hop) {
			t.Fatalf("repeat %+v, first %+v", again, want1)
		}
	})
}

// BenchmarkReadHead reads nginx's head for a static file, as a target
// sends it for every relayed request: parsed (a new head), and copied (the
// same head again, as the connection's last one).
func BenchmarkReadHead(b *testing.B) {
	raw := "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 23:21:28 GMT\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n" +
		"Last-Modified: Sun, 06 Dec 2026 23:03:52 GMT\r\nConnection: keep-alive\r\n" +
		"ETag: \"6b15e9d8-400\"\r\nAccept-Ranges: bytes\r\n\r\n"
	for _, repeat := range []bool{false, true} {
		name := "new"
		if repeat {
			name = "repeat"
		}
		b.Run(name, func(b *testing.B) {
			rd := strings.NewReader(raw)
			br := bufio.NewReaderSize(rd, readBuffer)
			var hc headCache
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(raw)
				br.Reset(rd)
				if !repeat {
					hc.last.raw = "" // no last head: parse
				}
				if h, err := readHead(br, &hc); err != nil || h.ContentLength != 1024 {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestIsToken: the bit table is RFC 9110's tchar, byte for byte.
func TestIsToken(t *testing.T) {
	const tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for c := 0; c < 256; c++ {
		if want := strings.IndexByte(tchar, byte(c)) >= 0; isToken(byte(c)) != want {
			t.Errorf("isToken(%q) = %v, want %v", byte(c), !want, want)
		}
	}
}

// TestReadHeadRepeat: a head that repeats the connection's last one byte
// for byte is copied from the untouched copy, not parsed again: what a
// sink changed in the last one (a Location rewritten, a field dropped)
// does not show, and a different head is parsed afresh.
func TestReadHeadRepeat(t *testing.T) {
	a := "HTTP/1.1 301 Moved\r\nLocation: http://target/x\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"
	b := "HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\n"
	var hc headCache
	read := func(raw string) *Head {
		t.Helper()
		h, err := readHead(bufio.NewReaderSize(strings.NewReader(raw), readBuffer), &hc)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := read(a)
	first := h.raw
	h.Fields[0].Value = "http://client/x" // as a sink rewrites it
	h.Drop(1)
	h = read(a)
	if h.Status != 301 || len(h.Fields) != 3 || h.Fields[0].Value != "http://target/x" || h.Hop(1) {
		t.Fatalf("repeat: %d %v hop %v; want the head as received", h.Status, h.Fields, h.hop)
	}
	if unsafe.StringData(h.raw) != unsafe.StringData(first) {
		t.Error("a repeated head was copied again")
	}
	if &h.Fields[0] != &hc.cur.fieldBuf[0] {
		t.Error("the repeat's fields are not the current head's own")
	}
	h = read(b)
	if h.Status != 404 || len(h.Fields) != 1 || h.ContentLength != 1 || h.raw != b {
		t.Fatalf("different head: %d %v %q", h.Status, h.Fields, h.raw)
	}
	// Many fields: the lists outgrow the head's own room and are copied.
	many := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-F: v\r\n", 20) + "Content-Length: 0\r\n\r\n"
	read(many).Fields[0].Value = "edited"
	if h := read(many); len(h.Fields) != 21 || h.Fields[0].Value != "v" {
		t.Fatalf("repeat of a long head: %d fields, first %q", len(h.Fields), h.Fields[0].Value)
	}
}
