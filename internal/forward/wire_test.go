package forward

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// writeCounter counts the Writes that reach it.
type writeCounter struct {
	bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

// TestWireSink: a response relayed as HTTP/1.1 reads back whole with
// net/http's ReadResponse, whatever the target's framing; hop-by-hop
// fields stay behind; a small response leaves in one Write.
func TestWireSink(t *testing.T) {
	big := strings.Repeat("b", 40000)
	s, _ := app(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		switch r.URL.Path {
		case "/len":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		case "/chunked":
			io.WriteString(w, "hel")
			w.(http.Flusher).Flush()
			io.WriteString(w, "lo")
		case "/big":
			io.WriteString(w, big)
		case "/204":
			w.WriteHeader(204)
		}
	})
	p := tcpPool(t, s.Listener.Addr().String())
	for _, tc := range []struct {
		path, method, body string
		status, writes     int
	}{
		{"/len", "GET", "hello", 200, 1},
		{"/len", "HEAD", "", 200, 1},
		{"/chunked", "GET", "hello", 200, 0},
		{"/big", "GET", big, 200, 0},
		{"/204", "GET", "", 204, 1},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			var out writeCounter
			sink := &WireSink{W: &out, HEAD: tc.method == "HEAD",
				Fields: func(b []byte, _ *Head) []byte { return append(b, "X-Mine: 2\r\n"...) }}
			req := get(tc.path)
			req.Method = tc.method
			if err := p.Forward(context.Background(), req, sink); err != nil {
				t.Fatal(err)
			}
			res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out.Bytes())), &http.Request{Method: tc.method})
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			if err != nil || res.StatusCode != tc.status || string(body) != tc.body || !sink.Keep {
				t.Fatalf("%d %q %v keep %v", res.StatusCode, body, err, sink.Keep)
			}
			if sink.Status != tc.status || sink.Bytes != int64(len(tc.body)) {
				t.Errorf("books: status %d, %d bytes", sink.Status, sink.Bytes)
			}
			if res.Header.Get("X-App") != "1" || res.Header.Get("X-Mine") != "2" || res.Header.Get("Keep-Alive") != "" {
				t.Errorf("header %v", res.Header)
			}
			if tc.writes > 0 && out.writes != tc.writes {
				t.Errorf("%d writes, want %d", out.writes, tc.writes)
			}
		})
	}
}

// TestRequestLines: a header block kept as sent goes out as the client's
// header does: hop-by-hop, Connection-named and dropped lines stay
// behind.
func TestRequestLines(t *testing.T) {
	got := make(chan http.Header, 1)
	s, _ := app(t, func(w http.ResponseWriter, r *http.Request) { got <- r.Header })
	p := tcpPool(t, s.Listener.Addr().String())
	req := get("/")
	req.Lines = "Host: client\r\nconnection: x-a\r\nX-A: 1\r\naccept: */*\r\nx-forwarded-for: 6.6.6.6\r\nX-Shoal-Hop: f\r\nbroken line\r\nX\rSmuggled: 1\r\n\r\nX-After: no\r\n"
	req.Drop, req.DropPrefix = map[string]bool{"X-Forwarded-For": true}, "X-Shoal-"
	if err := p.Forward(context.Background(), req, &memSink{}); err != nil {
		t.Fatal(err)
	}
	h := <-got
	if h.Get("Accept") != "*/*" || h.Get("X-A") != "" || h.Get("X-Forwarded-For") != "" || h.Get("X-Shoal-Hop") != "" || h.Get("X-After") != "" || len(h) != 1 {
		t.Fatalf("header %v", h)
	}
}

// plainWriter is a ResponseWriter that cannot flush.
type plainWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (p *plainWriter) Header() http.Header         { return p.h }
func (p *plainWriter) WriteHeader(code int)        { p.code = code }
func (p *plainWriter) Write(b []byte) (int, error) { return p.body.Write(b) }

// TestResponseWriterSinkNoFlush: a streamed answer reaches a writer that
// cannot flush whole, without an error.
func TestResponseWriterSinkNoFlush(t *testing.T) {
	s, _ := app(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		io.WriteString(w, "b")
	})
	p := tcpPool(t, s.Listener.Addr().String())
	w := &plainWriter{h: http.Header{}}
	if err := p.Forward(context.Background(), get("/"), &ResponseWriterSink{W: w}); err != nil || w.code != 200 || w.body.String() != "ab" {
		t.Fatalf("%v %d %q", err, w.code, w.body.String())
	}
}

// TestWireSinkEndTwice: Forward ends the sink itself, and a caller that
// ends it again must not add a second last chunk, which a keep-alive
// client would read as the start of the next response.
func TestWireSinkEndTwice(t *testing.T) {
	var out bytes.Buffer
	s := &WireSink{W: &out}
	h, err := parseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	s.WriteHead(h)
	s.Write([]byte("hi"))
	if err := s.End(); err != nil {
		t.Fatal(err)
	}
	if err := s.End(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "0\r\n\r\n"); got != 1 {
		t.Fatalf("%d last chunks in %q", got, out.String())
	}
}
