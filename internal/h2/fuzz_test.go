package h2

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzFrames feeds arbitrary bytes after a valid preface and SETTINGS to
// a connection: whatever comes, the server must neither panic nor hang,
// and it must let go of the connection once the client is gone.
func FuzzFrames(f *testing.F) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "x"}, {":path", "/echo"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	fr.WriteData(1, false, []byte("hello"))
	fr.WriteWindowUpdate(1, 100)
	fr.WriteData(1, true, []byte("bye"))
	fr.WritePing(false, [8]byte{})
	fr.WriteRSTStream(3, http2.ErrCodeCancel)
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 5, 1, 4, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 0x80})

	s := &Server{Fast: func(r *Request) *Answer {
		if r.Path == "/fast" {
			return &Answer{Status: 200, Body: []byte("fast")}
		}
		return nil
	}, Logger: discardLogger()}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
		w.Header().Set(http.TrailerPrefix+"X-T", "1")
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serveConn(t.Context(), server, &tls.ConnectionState{}, h)
		}()
		go io.Copy(io.Discard, client) // the server's frames
		var pre bytes.Buffer
		pre.WriteString(http2.ClientPreface)
		http2.NewFramer(&pre, nil).WriteSettings()
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(pre.Bytes())
		client.Write(data)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the connection was not let go after the client left")
		}
	})
}
