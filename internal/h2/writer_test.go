package h2

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
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
