package h2

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawConn is a client that writes frames by hand, to see how the server
// answers what a well-behaved client never sends.
type rawConn struct {
	mu   sync.Mutex // for tests that write from two goroutines
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

func dialRaw(t *testing.T, ts *httptest.Server, settings ...http2.Setting) *rawConn {
	t.Helper()
	c, err := tls.Dial("tcp", ts.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	rc := &rawConn{t: t, c: c, fr: http2.NewFramer(c, c)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	if err := rc.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return rc
}

// headers encodes pseudo and regular fields, "name", "value" by turns.
func (rc *rawConn) headers(id uint32, endStream bool, kv ...string) {
	rc.t.Helper()
	rc.hbuf.Reset()
	for i := 0; i < len(kv); i += 2 {
		rc.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.Bytes(), EndStream: endStream, EndHeaders: true}); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) get(id uint32, path string, kv ...string) {
	rc.t.Helper()
	rc.headers(id, true, append([]string{":method", "GET", ":scheme", "https", ":authority", "example.test", ":path", path}, kv...)...)
}

// waitFor reads frames until match accepts one, answering the server's
// SETTINGS; it fails the test at EOF or after the deadline.
func (rc *rawConn) waitFor(what string, match func(http2.Frame) bool) http2.Frame {
	rc.t.Helper()
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			rc.t.Fatalf("waiting for %s: %v", what, err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			rc.fr.WriteSettingsAck()
		}
		if match(f) {
			return f
		}
	}
}

func (rc *rawConn) waitGoAway(code http2.ErrCode) {
	rc.t.Helper()
	f := rc.waitFor("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if f.ErrCode != code {
		rc.t.Fatalf("GOAWAY %v, want %v", f.ErrCode, code)
	}
}

func (rc *rawConn) waitReset(id uint32, code http2.ErrCode) {
	rc.t.Helper()
	f := rc.waitFor("RST_STREAM", func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id
	}).(*http2.RSTStreamFrame)
	if f.ErrCode != code {
		rc.t.Fatalf("stream %d reset with %v, want %v", id, f.ErrCode, code)
	}
}

// waitResponse reads the response of stream id: its status and body.
func (rc *rawConn) waitResponse(id uint32) (string, string) {
	rc.t.Helper()
	status := ""
	var body bytes.Buffer
	for {
		f := rc.waitFor("the response", func(f http2.Frame) bool { return f.Header().StreamID == id })
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" && s[0] != '1' {
				status = s
			}
			if f.StreamEnded() {
				return status, body.String()
			}
		case *http2.DataFrame:
			body.Write(f.Data())
			if f.StreamEnded() {
				return status, body.String()
			}
		case *http2.RSTStreamFrame:
			rc.t.Fatalf("stream %d reset: %v", id, f.ErrCode)
		}
	}
}

func protoServer(t *testing.T, s *Server) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	mux.HandleFunc("/hundred", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("x"), 100)) })
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "waited")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	return newServer(t, s, mux)
}

func TestProtocolErrors(t *testing.T) {
	ts := protoServer(t, &Server{MaxConcurrentStreams: 2, MaxHeaderBytes: 4096})
	for _, tc := range []struct {
		name string
		run  func(rc *rawConn)
	}{
		{"PING is answered", func(rc *rawConn) {
			rc.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
			f := rc.waitFor("PING ack", func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() })
			if f.(*http2.PingFrame).Data != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
				t.Error("PING ack with other data")
			}
		}},
		{"HEADERS on an even stream", func(rc *rawConn) {
			rc.get(2, "/hello")
			rc.waitGoAway(http2.ErrCodeProtocol)
		}},
		{"DATA on an idle stream", func(rc *rawConn) {
			rc.fr.WriteData(5, true, []byte("x"))
			rc.waitGoAway(http2.ErrCodeProtocol)
		}},
		{"connection window overflow", func(rc *rawConn) {
			rc.fr.WriteWindowUpdate(0, 1<<31-1)
			rc.waitGoAway(http2.ErrCodeFlowControl)
		}},
		{"a frame over the frame size", func(rc *rawConn) {
			rc.headers(1, false, ":method", "POST", ":scheme", "https", ":authority", "x", ":path", "/echo")
			rc.fr.WriteData(1, true, make([]byte, maxFrame+1))
			rc.waitGoAway(http2.ErrCodeFrameSize)
		}},
		{"a stream id going backwards", func(rc *rawConn) {
			rc.get(5, "/hello")
			rc.waitResponse(5)
			rc.get(3, "/hello")
			rc.waitGoAway(http2.ErrCodeProtocol)
		}},
		{"connection-specific field", func(rc *rawConn) {
			rc.get(1, "/hello", "connection", "keep-alive")
			rc.waitReset(1, http2.ErrCodeProtocol)
			rc.get(3, "/hello")
			if st, body := rc.waitResponse(3); st != "200" || body != "hello" {
				t.Errorf("after a reset: %s %q", st, body)
			}
		}},
		{"missing :path", func(rc *rawConn) {
			rc.headers(1, true, ":method", "GET", ":scheme", "https", ":authority", "x")
			rc.waitReset(1, http2.ErrCodeProtocol)
		}},
		{"absolute-form :path", func(rc *rawConn) {
			rc.headers(1, true, ":method", "GET", ":scheme", "https", ":authority", "x", ":path", "https://x/hello")
			rc.waitReset(1, http2.ErrCodeProtocol)
		}},
		{"uppercase field name", func(rc *rawConn) {
			rc.get(1, "/hello", "X-Upper", "1")
			rc.waitReset(1, http2.ErrCodeProtocol)
		}},
		{"header list over the limit: 431", func(rc *rawConn) {
			v := strings.Repeat("a", 2000)
			rc.get(1, "/hello", "x-a", v, "x-b", v, "x-c", v)
			if st, _ := rc.waitResponse(1); st != "431" {
				t.Errorf("status %s, want 431", st)
			}
		}},
		{"more streams than allowed are refused", func(rc *rawConn) {
			rc.get(1, "/wait")
			rc.get(3, "/wait")
			rc.get(5, "/hello")
			rc.waitReset(5, http2.ErrCodeRefusedStream)
			rc.fr.WriteRSTStream(1, http2.ErrCodeCancel) // its handler returns at once
			rc.fr.WriteRSTStream(3, http2.ErrCodeCancel)
		}},
		{"body longer than Content-Length", func(rc *rawConn) {
			rc.headers(1, false, ":method", "POST", ":scheme", "https", ":authority", "x", ":path", "/echo", "content-length", "2")
			rc.fr.WriteData(1, true, []byte("four"))
			rc.waitReset(1, http2.ErrCodeProtocol)
		}},
		{"DATA over the stream window", func(rc *rawConn) {
			rc.headers(1, false, ":method", "POST", ":scheme", "https", ":authority", "x", ":path", "/wait")
			chunk := make([]byte, 16384)
			for range streamRecvWindow/len(chunk) + 1 {
				rc.fr.WriteData(1, false, chunk)
			}
			rc.waitReset(1, http2.ErrCodeFlowControl)
		}},
		{"DATA after END_STREAM", func(rc *rawConn) {
			rc.headers(1, true, ":method", "GET", ":scheme", "https", ":authority", "x", ":path", "/wait")
			rc.fr.WriteData(1, true, []byte("late"))
			rc.waitReset(1, http2.ErrCodeStreamClosed)
		}},
		{"unknown frame type is ignored", func(rc *rawConn) {
			rc.fr.WriteRawFrame(0xfa, 0, 0, []byte("whatever"))
			rc.get(1, "/hello")
			if st, body := rc.waitResponse(1); st != "200" || body != "hello" {
				t.Errorf("after an unknown frame: %s %q", st, body)
			}
		}},
		{"PRIORITY on itself", func(rc *rawConn) {
			rc.fr.WritePriority(1, http2.PriorityParam{StreamDep: 1})
			rc.waitReset(1, http2.ErrCodeProtocol)
		}},
		{"trailers without END_STREAM", func(rc *rawConn) {
			rc.headers(1, false, ":method", "POST", ":scheme", "https", ":authority", "x", ":path", "/echo")
			rc.headers(1, false, "x-trailer", "1")
			rc.waitReset(1, http2.ErrCodeProtocol)
		}},
		{"invalid SETTINGS value", func(rc *rawConn) {
			rc.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 2})
			rc.waitGoAway(http2.ErrCodeProtocol)
		}},
		{"HPACK garbage", func(rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndStream: true, EndHeaders: true})
			rc.waitGoAway(http2.ErrCodeCompression)
		}},
		{"DATA on a stream the client reset: STREAM_CLOSED", func(rc *rawConn) {
			rc.headers(1, false, ":method", "POST", ":scheme", "https", ":authority", "x", ":path", "/echo")
			rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
			rc.fr.WriteData(1, true, []byte("test"))
			rc.waitReset(1, http2.ErrCodeStreamClosed)
		}},
		{"HEADERS on a stream the client reset: STREAM_CLOSED", func(rc *rawConn) {
			rc.headers(1, false, ":method", "POST", ":scheme", "https", ":authority", "x", ":path", "/echo")
			rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
			rc.get(1, "/hello")
			rc.waitReset(1, http2.ErrCodeStreamClosed)
		}},
		{"HEADERS on an answered stream the client reset: STREAM_CLOSED", func(rc *rawConn) {
			rc.get(1, "/hello")
			rc.waitResponse(1)
			rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
			rc.get(1, "/hello")
			rc.waitReset(1, http2.ErrCodeStreamClosed)
		}},
		{"answered before its body: the next DATA gets NO_ERROR", func(rc *rawConn) {
			rc.headers(1, false, ":method", "POST", ":scheme", "https", ":authority", "x", ":path", "/hello")
			rc.waitResponse(1)
			rc.fr.WriteData(1, false, []byte("more"))
			rc.waitReset(1, http2.ErrCodeNo)
		}},
		{"answered before its body: a body over Content-Length is still PROTOCOL_ERROR", func(rc *rawConn) {
			rc.headers(1, false, ":method", "POST", ":scheme", "https", ":authority", "x", ":path", "/hello", "content-length", "1")
			rc.waitResponse(1)
			rc.fr.WriteData(1, true, []byte("test"))
			rc.waitReset(1, http2.ErrCodeProtocol)
		}},
		{"answered before its END_STREAM: window overflow is still FLOW_CONTROL_ERROR", func(rc *rawConn) {
			rc.headers(1, false, ":method", "GET", ":scheme", "https", ":authority", "x", ":path", "/hello")
			rc.waitResponse(1)
			rc.fr.WriteWindowUpdate(1, 1<<31-1)
			rc.fr.WriteWindowUpdate(1, 1<<31-1)
			rc.waitReset(1, http2.ErrCodeFlowControl)
		}},
		{"answered before its END_STREAM: a WINDOW_UPDATE of 0 is still PROTOCOL_ERROR", func(rc *rawConn) {
			rc.headers(1, false, ":method", "GET", ":scheme", "https", ":authority", "x", ":path", "/hello")
			rc.waitResponse(1)
			rc.fr.AllowIllegalWrites = true
			rc.fr.WriteWindowUpdate(1, 0)
			rc.waitReset(1, http2.ErrCodeProtocol)
		}},
		{"answered before its END_STREAM: the empty END_STREAM closes it quietly", func(rc *rawConn) {
			rc.headers(1, false, ":method", "GET", ":scheme", "https", ":authority", "x", ":path", "/hello")
			rc.waitResponse(1)
			rc.fr.WriteData(1, true, nil)
			rc.fr.WritePing(false, [8]byte{9})
			rc.waitFor("PING ack", func(f http2.Frame) bool {
				if r, ok := f.(*http2.RSTStreamFrame); ok {
					t.Errorf("stream %d reset: %v", r.StreamID, r.ErrCode)
				}
				p, ok := f.(*http2.PingFrame)
				return ok && p.IsAck()
			})
		}},
		{"HEADERS after END_STREAM: STREAM_CLOSED for the connection", func(rc *rawConn) {
			rc.get(1, "/wait")
			rc.get(1, "/wait")
			rc.waitGoAway(http2.ErrCodeStreamClosed)
		}},
		{"client reset ends the handler", func(rc *rawConn) {
			rc.get(1, "/wait")
			rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
			rc.get(3, "/hello")
			if st, body := rc.waitResponse(3); st != "200" || body != "hello" {
				t.Errorf("after a client reset: %s %q", st, body)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, ts)
			rc.t = t
			tc.run(rc)
		})
	}
}

func TestBadPreface(t *testing.T) {
	ts := protoServer(t, &Server{})
	c, err := tls.Dial("tcp", ts.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("the connection was not closed cleanly: %v", err)
	}
}

// TestFlowControl: with a zero window the response waits; each
// WINDOW_UPDATE lets exactly that much through.
func TestFlowControl(t *testing.T) {
	ts := protoServer(t, &Server{})
	rc := dialRaw(t, ts, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	rc.get(1, "/hundred")
	rc.waitFor("HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok })
	got := 0
	for _, grant := range []uint32{30, 70} {
		rc.fr.WriteWindowUpdate(1, grant)
		for got < 30 || grant == 70 && got < 100 {
			f := rc.waitFor("DATA", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
			got += len(f.Data())
			if f.StreamEnded() != (got == 100) {
				t.Fatalf("END_STREAM %v after %d bytes", f.StreamEnded(), got)
			}
		}
		if grant == 30 && got != 30 {
			t.Fatalf("%d bytes sent for a window of 30", got)
		}
	}
}

// TestUploadFlowControl: a body larger than every window gets through as
// the handler reads it.
func TestUploadFlowControl(t *testing.T) {
	ts := protoServer(t, &Server{})
	rc := dialRaw(t, ts)
	rc.headers(1, false, ":method", "POST", ":scheme", "https", ":authority", "x", ":path", "/echo")
	rc.waitFor("the server's SETTINGS", func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && !s.IsAck() })
	total := 3 * connRecvWindow
	credits := make(chan int, 1000)
	go func() {
		// Within the stream window the server announced, grown by its
		// WINDOW_UPDATEs as the handler reads.
		sent, avail := 0, streamRecvWindow
		chunk := make([]byte, 16384)
		for sent < total {
			n := min(len(chunk), total-sent)
			for avail < n {
				avail += <-credits
			}
			avail -= n
			sent += n
			rc.mu.Lock()
			err := rc.fr.WriteData(1, sent == total, chunk[:n])
			rc.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	got := 0
	for done := false; !done; {
		switch f := rc.waitFor("echo", func(f http2.Frame) bool { return f.Header().StreamID == 1 }).(type) {
		case *http2.WindowUpdateFrame:
			credits <- int(f.Increment)
		case *http2.DataFrame:
			got += len(f.Data())
			done = f.StreamEnded()
			rc.mu.Lock()
			rc.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
			rc.fr.WriteWindowUpdate(1, uint32(len(f.Data())))
			rc.mu.Unlock()
		case *http2.RSTStreamFrame:
			t.Fatalf("reset: %v", f.ErrCode)
		}
	}
	if got != total {
		t.Fatalf("echoed %d of %d bytes", got, total)
	}
}

// TestGracefulShutdown: GOAWAY names the last stream; a stream in flight
// finishes; then the connection closes.
func TestGracefulShutdown(t *testing.T) {
	s := &Server{}
	release := make(chan struct{})
	started := make(chan struct{})
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	}))
	rc := dialRaw(t, ts)
	rc.get(1, "/")
	<-started
	go s.Shutdown()
	f := rc.waitFor("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if f.LastStreamID != 1 || f.ErrCode != http2.ErrCodeNo {
		t.Fatalf("GOAWAY last %d code %v", f.LastStreamID, f.ErrCode)
	}
	close(release)
	if st, body := rc.waitResponse(1); st != "200" || body != "finished" {
		t.Fatalf("in-flight stream: %s %q", st, body)
	}
	for {
		if _, err := rc.fr.ReadFrame(); err != nil {
			break // closed
		}
	}
}

// TestIdleTimeout: a connection without streams is closed with GOAWAY
// after IdleTimeout; one kept busy by fast answers is not.
func TestIdleTimeout(t *testing.T) {
	s := &Server{IdleTimeout: 300 * time.Millisecond, Fast: func(r *Request) *Answer {
		return &Answer{Status: 200, Body: []byte("fast")}
	}}
	ts := protoServer(t, s)
	rc := dialRaw(t, ts)
	start := time.Now()
	for id := uint32(1); time.Since(start) < 600*time.Millisecond; id += 2 {
		rc.get(id, "/fast")
		if st, _ := rc.waitResponse(id); st != "200" {
			t.Fatalf("status %s", st)
		}
		time.Sleep(50 * time.Millisecond) // activity, not synchronisation
	}
	rc.waitGoAway(http2.ErrCodeNo)
	if waited := time.Since(start); waited < 600*time.Millisecond {
		t.Fatalf("closed after %v", waited)
	}
}

// TestFastSentOnlyWhenSent: an answer the client's window cannot take is
// dropped before its bookkeeping runs, and the handler answers instead.
func TestFastSentOnlyWhenSent(t *testing.T) {
	var sent, handled atomic.Int32
	s := &Server{Fast: func(r *Request) *Answer {
		return &Answer{Status: 200, Body: []byte("0123456789"), Sent: func() { sent.Add(1) }}
	}}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		io.WriteString(w, "handler")
	}))
	rc := dialRaw(t, ts, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 5})
	rc.waitFor("the server's SETTINGS ack", func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && s.IsAck() })
	rc.get(1, "/small-window")
	rc.fr.WriteWindowUpdate(1, 100)
	if st, body := rc.waitResponse(1); st != "200" || body != "handler" {
		t.Fatalf("%s %q", st, body)
	}
	rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
	rc.get(3, "/big-window")
	if st, body := rc.waitResponse(3); st != "200" || body != "0123456789" {
		t.Fatalf("%s %q", st, body)
	}
	if sent.Load() != 1 || handled.Load() != 1 {
		t.Errorf("Sent called %d times, handler %d; want 1 and 1", sent.Load(), handled.Load())
	}
}
