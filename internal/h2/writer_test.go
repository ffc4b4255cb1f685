package h2

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestConnWriter: frames reach the socket in order and whole through the
// writer goroutine; once written the connection holds no buffer.
func TestConnWriter(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	c := &conn{srv: &Server{}, nc: server}
	c.wcond = sync.NewCond(&c.wmu)
	c.bw = &connWriter{c: c}
	var want bytes.Buffer
	for _, n := range []int{10, 100, connWriteBuf - 50, 200, 3 * connWriteBuf, 1} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		want.Write(p)
		if err := c.writeLocked(func() error { _, err := c.bw.Write(p); return err }); err != nil {
			t.Fatalf("Write(%d bytes): %v", n, err)
		}
		if n == 200 {
			c.flush()
		}
	}
	if err := c.flushWait(); err != nil {
		t.Fatal(err)
	}
	c.wmu.Lock()
	if c.bw.buf != nil {
		t.Error("the buffer is kept after everything was written")
	}
	c.wmu.Unlock()
	server.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the socket got %d bytes, not the %d written in order", len(b), want.Len())
	}
}

// countingConn counts the writes to a connection.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// TestFastBatchOneWrite: the answers to a batch of requests Fast answers,
// read in one go, leave in one write to the socket, not one each.
func TestFastBatchOneWrite(t *testing.T) {
	s := &Server{Fast: func(r *Request) *Answer { return &Answer{Status: 200, Body: []byte("fast")} }}
	client, server := net.Pipe()
	defer client.Close()
	cc := &countingConn{Conn: server}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serveConn(t.Context(), cc, &tls.ConnectionState{}, http.NotFoundHandler())
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	fr := http2.NewFramer(client, client)
	io.WriteString(client, http2.ClientPreface)
	fr.WriteSettings()
	for acked := false; !acked; { // the server's SETTINGS, then its ack of ours
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && sf.IsAck() {
			acked = true
		}
	}
	before := cc.count()
	var batch bytes.Buffer
	bfr := http2.NewFramer(&batch, nil)
	blk := getBlock("/f")
	const n = 16
	for i := range uint32(n) {
		bfr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 1, BlockFragment: blk, EndStream: true, EndHeaders: true})
	}
	go client.Write(batch.Bytes())
	for ended := 0; ended < n; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamEnded() {
			ended++
		}
	}
	// One write, or two when the writer goroutine was still finishing the
	// SETTINGS ack and took the first answers on its way out (the reader
	// cannot tell when its Write returned): never one per answer.
	if w := cc.count() - before; w > 2 {
		t.Errorf("%d answers left in %d writes, want 1 (2 at most)", n, w)
	}
	client.Close()
	<-done
}
