package h2

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// plainServer serves connections with s and h over loopback TCP without
// TLS, the sockets' buffers small so that a client that stops reading is
// felt at once. served counts the connections that ended.
type plainServer struct {
	ln     net.Listener
	served atomic.Int32
}

func newPlainServer(t *testing.T, s *Server, h http.Handler) *plainServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ps := &plainServer{ln: ln}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			nc.(*net.TCPConn).SetWriteBuffer(16 << 10)
			go func() {
				s.serveConn(t.Context(), nc, &tls.ConnectionState{}, h)
				ps.served.Add(1)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-stopped
		s.Shutdown()
	})
	return ps
}

// dial opens a raw client connection with a small receive buffer.
func (ps *plainServer) dial(t *testing.T, settings ...http2.Setting) *rawConn {
	t.Helper()
	d := net.Dialer{Control: nil}
	c, err := d.Dial("tcp", ps.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetReadBuffer(16 << 10)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
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

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSteady waits until n stops changing for a while: the writer it
// counts is blocked.
func waitSteady(t *testing.T, n *atomic.Int64) {
	t.Helper()
	last, same := int64(-1), 0
	waitUntil(t, 10*time.Second, "the handler never stalled", func() bool {
		if v := n.Load(); v == last && v > 0 {
			same++
		} else {
			last, same = v, 0
		}
		return same >= 20
	})
}

// TestReaderStopsReading: a client that stops reading TCP while it keeps
// sending frames must not stall the connection's read loop (issue 12
// item 10): a handler blocked on the socket holds no lock the read loop
// needs, so the PING after it is queued and the request after that
// starts at once, long before WriteTimeout.
func TestReaderStopsReading(t *testing.T) {
	var written atomic.Int64
	marked := make(chan struct{})
	s := &Server{WriteTimeout: 30 * time.Second, Logger: discardLogger()}
	ps := newPlainServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mark" {
			close(marked)
			return
		}
		chunk := make([]byte, 16<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}))
	rc := ps.dial(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	rc.fr.WriteWindowUpdate(0, 1<<31-1-defaultWindow)
	rc.get(1, "/endless")
	waitSteady(t, &written) // the client reads nothing: the socket is full
	rc.fr.WritePing(false, [8]byte{1})
	rc.get(3, "/mark")
	select {
	case <-marked:
	case <-time.After(5 * time.Second):
		t.Fatal("the request after a PING did not start: the read loop is stalled on the socket")
	}
}

// TestPingFloodUnread: PINGs from a client that reads none of the acks
// pile up only so far: the connection is closed, not kept with its queue
// growing.
func TestPingFloodUnread(t *testing.T) {
	s := &Server{WriteTimeout: 30 * time.Second, Logger: discardLogger()}
	var written atomic.Int64
	ps := newPlainServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 16<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}))
	rc := ps.dial(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	rc.fr.WriteWindowUpdate(0, 1<<31-1-defaultWindow)
	rc.get(1, "/endless")
	waitSteady(t, &written)
	for i := range 20000 {
		if err := rc.fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			break // closed: what the test waits for
		}
	}
	waitUntil(t, 10*time.Second, "the connection is still served", func() bool { return ps.served.Load() == 1 })
}

// serverSettings reads the server's first SETTINGS.
func (rc *rawConn) serverSettings() map[http2.SettingID]uint32 {
	rc.t.Helper()
	f := rc.waitFor("SETTINGS", func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && !s.IsAck() }).(*http2.SettingsFrame)
	m := map[http2.SettingID]uint32{}
	f.ForeachSetting(func(s http2.Setting) error { m[s.ID] = s.Val; return nil })
	return m
}

// TestDefaultMaxStreams: a client is told it may open 100 streams at
// once (nginx: 128), not 250.
func TestDefaultMaxStreams(t *testing.T) {
	ts := protoServer(t, &Server{})
	rc := dialRaw(t, ts)
	if got := rc.serverSettings()[http2.SettingMaxConcurrentStreams]; got != 100 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want 100", got)
	}
}

// TestStalledStreamsBudget: with its window shut, one connection gets at
// most MaxStalledStreams handlers (each would hold an open file); the
// streams past that are refused, not started.
func TestStalledStreamsBudget(t *testing.T) {
	var in, most atomic.Int32
	release := make(chan struct{})
	s := &Server{Logger: discardLogger()}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := in.Add(1)
		defer in.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		w.Write(make([]byte, 64<<10)) // waits for window
		<-release
	}))
	defer close(release)
	rc := dialRaw(t, ts, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	rc.waitFor("the server's SETTINGS ack", func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && s.IsAck() })
	const streams = 100
	for i := range streams {
		rc.get(uint32(2*i+1), "/big")
	}
	refused := 0
	rc.waitFor("the refusals", func(f http2.Frame) bool {
		if r, ok := f.(*http2.RSTStreamFrame); ok && r.ErrCode == http2.ErrCodeRefusedStream {
			refused++
		}
		return refused == streams-32
	})
	if m := most.Load(); m > 32 {
		t.Fatalf("%d handlers ran at once on a connection with a shut window, want at most 32", m)
	}
}

// TestShutWindowClosesConnection: a connection whose client keeps the
// window shut past WriteTimeout is closed with GOAWAY, not only its
// streams reset (the client would open new ones).
func TestShutWindowClosesConnection(t *testing.T) {
	s := &Server{WriteTimeout: 300 * time.Millisecond, Logger: discardLogger()}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 64<<10))
	}))
	rc := dialRaw(t, ts, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	rc.c.SetDeadline(time.Now().Add(5 * time.Second))
	rc.get(1, "/big")
	rc.waitFor("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	for {
		if _, err := rc.fr.ReadFrame(); err != nil {
			break // closed
		}
	}
}

// TestPingKeepsNoConnection: PINGs are not requests: a connection that
// sends only PINGs is closed after IdleTimeout (net/http: the same).
func TestPingKeepsNoConnection(t *testing.T) {
	const idle = 300 * time.Millisecond
	ts := protoServer(t, &Server{IdleTimeout: idle})
	rc := dialRaw(t, ts)
	rc.c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	for i := 0; ; i++ {
		rc.fr.WritePing(false, [8]byte{byte(i)})
		f := rc.waitFor("PING ack or GOAWAY", func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.PingFrame:
				return f.IsAck()
			case *http2.GoAwayFrame:
				return true
			}
			return false
		})
		if _, ok := f.(*http2.GoAwayFrame); ok {
			break
		}
		if time.Since(start) > 4*idle {
			t.Fatalf("still open after %v of PINGs with IdleTimeout %v", time.Since(start), idle)
		}
		time.Sleep(idle / 10) // activity, not synchronisation
	}
}

// flood writes n copies of what frame writes, in one write.
func (rc *rawConn) flood(n int, frame func(fr *http2.Framer, i int)) error {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	for i := range n {
		frame(fr, i)
	}
	_, err := rc.c.Write(buf.Bytes())
	return err
}

// peaks samples the goroutine count and the heap until stop is closed.
func peaks(stop <-chan struct{}) (goroutines *atomic.Int64, heap *atomic.Uint64, done <-chan struct{}) {
	goroutines, heap = &atomic.Int64{}, &atomic.Uint64{}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		var ms runtime.MemStats
		for {
			if g := int64(runtime.NumGoroutine()); g > goroutines.Load() {
				goroutines.Store(g)
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > heap.Load() {
				heap.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return goroutines, heap, ch
}

// TestFloods: each flood ends in GOAWAY(ENHANCE_YOUR_CALM) (or, for
// CONTINUATION, the framer's own limit), with goroutines and memory
// bounded while it lasts: rapid reset (CVE-2023-44487), CONTINUATION
// (CVE-2024-27316), PING and SETTINGS floods.
func TestFloods(t *testing.T) {
	for _, tc := range []struct {
		name  string
		code  http2.ErrCode
		flood func(rc *rawConn) error
	}{
		{"rapid reset", http2.ErrCodeEnhanceYourCalm, func(rc *rawConn) error {
			blk := getBlock("/wait")
			return rc.flood(5000, func(fr *http2.Framer, i int) {
				id := uint32(2*i + 1)
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
				fr.WriteRSTStream(id, http2.ErrCodeCancel)
			})
		}},
		{"PING", http2.ErrCodeEnhanceYourCalm, func(rc *rawConn) error {
			return rc.flood(5000, func(fr *http2.Framer, i int) { fr.WritePing(false, [8]byte{byte(i)}) })
		}},
		{"SETTINGS", http2.ErrCodeEnhanceYourCalm, func(rc *rawConn) error {
			return rc.flood(5000, func(fr *http2.Framer, i int) { fr.WriteSettings() })
		}},
		{"CONTINUATION", 0, func(rc *rawConn) error {
			blk := getBlock("/hello")
			junk := AppendField(nil, "x-junk", strings.Repeat("j", 8000))
			if err := rc.flood(1, func(fr *http2.Framer, i int) {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true})
			}); err != nil {
				return err
			}
			for range 100 { // 100 writes of 50 frames of 8 KB: 40 MB if never stopped
				if err := rc.flood(50, func(fr *http2.Framer, i int) { fr.WriteContinuation(1, false, junk) }); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := protoServer(t, &Server{Logger: discardLogger()})
			rc := dialRaw(t, ts)
			rc.serverSettings()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			baseG, baseHeap := runtime.NumGoroutine(), ms.HeapAlloc
			stop := make(chan struct{})
			g, heap, sampled := peaks(stop)
			go tc.flood(rc) // fails once the server closes; the reader sees why
			var code http2.ErrCode = 0xff
			for code == 0xff {
				f, err := rc.fr.ReadFrame()
				if err != nil {
					if tc.code == 0 {
						break // the connection was closed: also an answer
					}
					t.Fatalf("no GOAWAY before: %v", err)
				}
				if ga, ok := f.(*http2.GoAwayFrame); ok {
					code = ga.ErrCode
				}
			}
			close(stop)
			<-sampled
			t.Logf("GOAWAY %v; peaks: %d goroutines more, heap %+d KiB", code, g.Load()-int64(baseG), (int64(heap.Load())-int64(baseHeap))>>10)
			if tc.code != 0 && code != tc.code {
				t.Errorf("GOAWAY %v, want %v", code, tc.code)
			}
			if tc.code == 0 && code == http2.ErrCodeNo {
				t.Errorf("GOAWAY %v, want an error", code)
			}
			if extra := g.Load() - int64(baseG); extra > 100+20 {
				t.Errorf("%d goroutines more during the flood, want at most MaxConcurrentStreams+20", extra)
			}
			if grew := int64(heap.Load()) - int64(baseHeap); grew > 48<<20 {
				t.Errorf("the heap grew by %d MiB during the flood", grew>>20)
			}
		})
	}
}
