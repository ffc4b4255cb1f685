package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// bufConn is a wireConn that keeps what is written.
type bufConn struct{ bytes.Buffer }

func (c *bufConn) WriteLast(p []byte) (int, error) { return c.Write(p) }

func (c *bufConn) DateLine(now time.Time) []byte {
	return []byte("Date: " + now.UTC().Format(http.TimeFormat) + "\r\n")
}

// wireAnswer is a response as a client reads it, Date apart.
type wireAnswer struct {
	status  int
	header  http.Header
	body    string
	length  int64
	chunked bool
	close   bool
}

func readWire(t *testing.T, r io.Reader, method string) wireAnswer {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(r), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Header.Del("Date")
	return wireAnswer{resp.StatusCode, resp.Header, string(body), resp.ContentLength,
		slices.Equal(resp.TransferEncoding, []string{"chunked"}), resp.Close}
}

// TestWireWriterAsNetHTTP: a handler answering through a wireWriter
// sends what net/http sends for the same calls: status, fields, body and
// framing (Content-Length when the body is whole at the end, chunked after
// a Flush or past the buffer), Connection: close when asked; a body
// between net/http's 2 KiB and the writer's 16 KiB gets a length where
// net/http chunks it.
func TestWireWriterAsNetHTTP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		close  bool
		h      func(w http.ResponseWriter)
		// lengthNotChunked: net/http chunks, the writer sends a length.
		lengthNotChunked bool
	}{
		{"small body", "GET", false, func(w http.ResponseWriter) { w.Header().Set("Content-Type", "text/plain"); io.WriteString(w, "hi\n") }, false},
		{"nothing written", "GET", false, func(w http.ResponseWriter) {}, false},
		{"sniffed type", "GET", false, func(w http.ResponseWriter) { io.WriteString(w, "<html><p>x</p></html>") }, false},
		{"no type, not sniffed", "GET", false, func(w http.ResponseWriter) { w.Header()["Content-Type"] = nil; io.WriteString(w, "<html>") }, false},
		{"204", "GET", false, func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(204)
			io.WriteString(w, "nope")
		}, false},
		{"304", "GET", false, func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("ETag", `"x"`)
			w.WriteHeader(304)
		}, false},
		{"declared length", "GET", false, func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "abcde")
		}, false},
		{"flushed", "GET", false, func(w http.ResponseWriter) {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		}, false},
		{"big", "GET", false, func(w http.ResponseWriter) {
			for range 5 {
				w.Write(bytes.Repeat([]byte("0123456789"), 1000))
			}
		}, false},
		{"middle-sized", "GET", false, func(w http.ResponseWriter) { w.Write(bytes.Repeat([]byte("x"), 3000)) }, true},
		{"HEAD", "HEAD", false, func(w http.ResponseWriter) { w.Header().Set("Content-Type", "text/plain") }, false},
		{"HEAD with a length", "HEAD", false, func(w http.ResponseWriter) { w.Header().Set("Content-Length", "42") }, false},
		{"status 418 with fields", "GET", false, func(w http.ResponseWriter) {
			w.Header().Add("X-B", "2")
			w.Header().Add("X-A", "1")
			w.Header().Add("X-A", "0")
			w.Header().Set("Date", "Thu, 01 Jan 2026 00:00:00 GMT")
			w.WriteHeader(418)
			io.WriteString(w, "teapot")
		}, false},
		{"odd status", "GET", false, func(w http.ResponseWriter) { w.WriteHeader(299) }, false},
		{"closing", "GET", true, func(w http.ResponseWriter) { io.WriteString(w, "bye") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.h(w) }))
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			closing := ""
			if tc.close {
				closing = "Connection: close\r\n"
			}
			fmt.Fprintf(conn, "%s / HTTP/1.1\r\nHost: x\r\n%s\r\n", tc.method, closing)
			want := readWire(t, conn, tc.method)

			var c bufConn
			var w wireWriter
			w.reset(&c, nil, tc.method == "HEAD", tc.close)
			tc.h(&w)
			keep, err := w.end()
			if err != nil || keep == tc.close {
				t.Fatalf("end: keep %v, %v", keep, err)
			}
			got := readWire(t, &c, tc.method)
			if tc.lengthNotChunked {
				if !want.chunked || got.chunked || got.length != int64(len(got.body)) {
					t.Errorf("framing: net/http chunked %v; writer chunked %v, length %d", want.chunked, got.chunked, got.length)
				}
				got.length, got.chunked = want.length, want.chunked
				got.header.Del("Content-Length")
			}
			if got.status != want.status || got.body != want.body || got.length != want.length ||
				got.chunked != want.chunked || got.close != want.close || !headersEqual(got.header, want.header) {
				t.Errorf("writer:   %+v\nnet/http: %+v", got, want)
			}
		})
	}
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestWireWriterHeadOrder: the head lists the fields sorted, as net/http
// writes them, with one Write for a small answer.
func TestWireWriterHeadOrder(t *testing.T) {
	var c bufConn
	var w wireWriter
	w.reset(&c, []byte("Alt-Svc: h3\r\n"), false, false)
	w.Header().Set("X-Z", "z")
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(&w, "body")
	if c.Len() != 0 {
		t.Fatal("wrote before the end")
	}
	w.end()
	head, _, _ := strings.Cut(c.String(), "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	if lines[0] != "HTTP/1.1 200 OK" || lines[1] != "Content-Type: text/plain" || lines[2] != "X-Z: z" ||
		!strings.HasPrefix(lines[3], "Date: ") || lines[4] != "Alt-Svc: h3" || lines[5] != "Content-Length: 4" {
		t.Errorf("head:\n%s", head)
	}
}
