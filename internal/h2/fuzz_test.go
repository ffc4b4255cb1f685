package h2

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzFrames feeds arbitrary bytes after a valid preface and SETTINGS to
// a connection and checks, beyond "no panic":
//   - every stream the client opened is answered (END_STREAM) or reset,
//     unless the server ended the connection (GOAWAY with an error, or
//     closing it): nothing is left hanging on a live connection;
//   - goroutines stay bounded while it runs (MaxConcurrentStreams and a
//     few of the connection's own);
//   - once the client is gone the connection is let go and every
//     goroutine it started has ended.
func FuzzFrames(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	const maxStreams = 8
	s := &Server{MaxConcurrentStreams: maxStreams, WriteTimeout: time.Second, Logger: discardLogger(),
		Fast: func(r *Request) *Answer {
			if r.Path == "/fast" {
				return &Answer{Status: 200, Body: []byte("fast")}
			}
			return nil
		}}
	// The handler answers without reading the body, so every stream can
	// be answered whatever the client sends after its HEADERS.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(http.TrailerPrefix+"X-T", "1")
		io.WriteString(w, "ok")
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		base := runtime.NumGoroutine()
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serveConn(t.Context(), server, &tls.ConnectionState{}, h)
		}()
		opened := clientStreams(data, s)
		var pre bytes.Buffer
		pre.WriteString(http2.ClientPreface)
		http2.NewFramer(&pre, nil).WriteSettings()
		pre.Write(data)
		go func() {
			client.SetWriteDeadline(time.Now().Add(2 * time.Second))
			client.Write(pre.Bytes()) // fails once the server closed: fine
		}()
		left, most := awaitAnswers(client, opened, base)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the connection was not let go after the client left")
		}
		if len(left) > 0 {
			t.Errorf("streams %v neither answered nor reset on a connection still open", left)
		}
		if most-base > maxStreams+6 {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines while serving, %d before: more than MaxConcurrentStreams allows; now:\n%s",
				most, base, buf[:runtime.Stack(buf, true)])
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// clientStreams parses data as the server does and returns the streams
// it opens that the client does not reset itself; parsing stops where
// the server would end the connection.
func clientStreams(data []byte, s *Server) map[uint32]bool {
	fr := http2.NewFramer(nil, bytes.NewReader(data))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = s.maxHeaderBytes()
	fr.SetMaxReadFrameSize(maxFrame)
	opened := map[uint32]bool{}
	var maxID uint32
	for {
		f, err := fr.ReadFrame()
		var se http2.StreamError
		if errors.As(err, &se) {
			delete(opened, se.StreamID) // reset by the server at once
			continue
		}
		if err != nil {
			return opened
		}
		id := f.Header().StreamID
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if id%2 == 1 && id > maxID {
				maxID = id
				opened[id] = true
			}
		case *http2.RSTStreamFrame:
			delete(opened, id)
		case *http2.GoAwayFrame:
			_ = f
			return opened // the server may close once its streams are done
		}
	}
}

// awaitAnswers reads the server's frames until every stream in opened is
// ended or reset, or the server ends the connection; it returns the
// streams left and the most goroutines seen meanwhile.
func awaitAnswers(client net.Conn, opened map[uint32]bool, most int) ([]uint32, int) {
	left := map[uint32]bool{}
	for id := range opened {
		left[id] = true
	}
	fr := http2.NewFramer(nil, client)
	fr.SetMaxReadFrameSize(1 << 24)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(left) > 0 {
		most = max(most, runtime.NumGoroutine())
		f, err := fr.ReadFrame()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				break // hanging: reported by the caller
			}
			return nil, most // the server closed the connection
		}
		id := f.Header().StreamID
		switch f := f.(type) {
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				delete(left, id)
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				delete(left, id)
			}
		case *http2.RSTStreamFrame:
			delete(left, id)
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeNo {
				return nil, most // a connection error: the streams die with it
			}
			for id := range left {
				if id > f.LastStreamID {
					delete(left, id) // never processed: the client may retry
				}
			}
		}
	}
	ids := make([]uint32, 0, len(left))
	for id := range left {
		ids = append(ids, id)
	}
	go io.Copy(io.Discard, client) // what else the server sends until it lets go
	return ids, most
}

// fuzzSeeds are frame sequences that reach the interesting states: a
// body in pieces, the fast path, resets, window changes, trailers.
func fuzzSeeds() [][]byte {
	block := func(kv ...string) []byte {
		var blk []byte
		for i := 0; i < len(kv); i += 2 {
			blk = AppendField(blk, kv[i], kv[i+1])
		}
		return blk
	}
	post := block(":method", "POST", ":scheme", "https", ":authority", "x", ":path", "/echo")
	fast := block(":method", "GET", ":scheme", "https", ":authority", "x", ":path", "/fast")
	var seeds [][]byte
	add := func(write func(fr *http2.Framer)) {
		var b bytes.Buffer
		write(http2.NewFramer(&b, nil))
		seeds = append(seeds, b.Bytes())
	}
	add(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: post, EndHeaders: true})
		fr.WriteData(1, false, []byte("hello"))
		fr.WriteWindowUpdate(1, 100)
		fr.WriteData(1, true, []byte("bye"))
		fr.WritePing(false, [8]byte{})
		fr.WriteRSTStream(3, http2.ErrCodeCancel)
	})
	add(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: fast, EndStream: true, EndHeaders: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: post, EndHeaders: true})
		fr.WriteRSTStream(3, http2.ErrCodeCancel)
		fr.WriteData(3, true, []byte("late"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: fast, EndStream: true, EndHeaders: true})
	})
	add(func(fr *http2.Framer) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: post, EndHeaders: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("x-trailer", "1"), EndStream: true, EndHeaders: true})
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
	})
	add(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: post[:3]})
		fr.WriteContinuation(1, true, post[3:])
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	seeds = append(seeds, []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}, []byte{0, 0, 5, 1, 4, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 0x80})
	return seeds
}
