package h2

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
)

// benchConn starts a connection served by s over loopback TCP (no TLS:
// the cost measured is the server's) and returns the client's side after
// the preface and SETTINGS, with the server's SETTINGS read.
func benchConn(b *testing.B, s *Server, h http.Handler) (net.Conn, *http2.Framer) {
	b.Helper()
	return benchConnWith(b, func(nc net.Conn) { s.serveConn(b.Context(), nc, &tls.ConnectionState{}, h) })
}

// benchConnWith is benchConn for any server of one connection.
func benchConnWith(b *testing.B, serve func(net.Conn)) (net.Conn, *http2.Framer) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		serve(nc)
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cc.Close()
		<-done
	})
	io.WriteString(cc, http2.ClientPreface)
	fr := http2.NewFramer(cc, cc)
	fr.WriteSettings()
	fr.WriteWindowUpdate(0, 1<<30)
	return cc, fr
}

// getBlock is a GET's header block, literal fields only, valid on any
// connection.
func getBlock(path string) []byte {
	var blk []byte
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "bench.test"}, {":path", path}} {
		blk = AppendField(blk, kv[0], kv[1])
	}
	return blk
}

// runBatches sends batch GETs in one write and reads their answers, b.N
// times.
func runBatches(b *testing.B, cc net.Conn, fr *http2.Framer, path string, batch int) {
	blk := getBlock(path)
	var out bytes.Buffer
	wfr := http2.NewFramer(&out, nil)
	id := uint32(1)
	b.ResetTimer()
	for range b.N {
		out.Reset()
		for range batch {
			wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
			id += 2
		}
		if _, err := cc.Write(out.Bytes()); err != nil {
			b.Fatal(err)
		}
		for ended := 0; ended < batch; {
			f, err := fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.DataFrame:
				if f.StreamEnded() {
					ended++
				}
			case *http2.HeadersFrame:
				if f.StreamEnded() {
					ended++
				}
			case *http2.RSTStreamFrame:
				b.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
			}
		}
	}
}

// BenchmarkFastBatch: 16 cached 1 KiB answers per round trip, the fast
// path's case.
func BenchmarkFastBatch(b *testing.B) {
	body := bytes.Repeat([]byte("f"), 1024)
	hdr := AppendField(nil, "content-type", "text/plain")
	s := &Server{Fast: func(r *Request) *Answer { return &Answer{Status: 200, Header: hdr, Body: body} }}
	cc, fr := benchConn(b, s, http.NotFoundHandler())
	runBatches(b, cc, fr, "/f", 16)
}

// BenchmarkFastOne: one cached answer per round trip.
func BenchmarkFastOne(b *testing.B) {
	body := bytes.Repeat([]byte("f"), 1024)
	s := &Server{Fast: func(r *Request) *Answer { return &Answer{Status: 200, Body: body} }}
	cc, fr := benchConn(b, s, http.NotFoundHandler())
	runBatches(b, cc, fr, "/f", 1)
}

// BenchmarkHandler: 16 requests per round trip through the handler.
func BenchmarkHandler(b *testing.B) {
	body := bytes.Repeat([]byte("h"), 1024)
	s := &Server{}
	cc, fr := benchConn(b, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	runBatches(b, cc, fr, "/h", 16)
}

// BenchmarkStdHandler: BenchmarkHandler's requests on golang.org/x/net's
// HTTP/2 server, for scale.
func BenchmarkStdHandler(b *testing.B) {
	body := bytes.Repeat([]byte("h"), 1024)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	cc, fr := benchConnWith(b, func(nc net.Conn) { (&http2.Server{}).ServeConn(nc, &http2.ServeConnOpts{Handler: h}) })
	runBatches(b, cc, fr, "/h", 16)
}

// BenchmarkStdOne: BenchmarkFastOne's round trip on x/net's server (its
// handler path: it has no fast path).
func BenchmarkStdOne(b *testing.B) {
	body := bytes.Repeat([]byte("f"), 1024)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	cc, fr := benchConnWith(b, func(nc net.Conn) { (&http2.Server{}).ServeConn(nc, &http2.ServeConnOpts{Handler: h}) })
	runBatches(b, cc, fr, "/f", 1)
}
