package h2

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// TestConnWriter: frames reach the socket in order and whole, large ones
// without a copy; after a flush the connection holds no buffer.
func TestConnWriter(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	w := &connWriter{c: &conn{srv: &Server{}, nc: server}}
	var want bytes.Buffer
	for _, n := range []int{10, 100, connWriteBuf - 50, 200, 3 * connWriteBuf, 1} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		want.Write(p)
		if k, err := w.Write(p); k != n || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", n, k, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.buf != nil {
		t.Error("the buffer is kept after Flush")
	}
	server.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the socket got %d bytes, not the %d written in order", len(b), want.Len())
	}
}
