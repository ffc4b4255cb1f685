package rawio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// pair returns a raw Conn and the plain peer it is connected to, both on
// 127.0.0.1, closed when the test ends.
func pair(t *testing.T) (*Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	c := New(d.(*net.TCPConn))
	if c == nil {
		t.Fatal("New returned nil for a TCP connection")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer.(*net.TCPConn)
}

// readN reads exactly n bytes from r within a deadline.
func readN(t *testing.T, r *net.TCPConn, n int) []byte {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return b
}

func TestReadWrite(t *testing.T) {
	c, peer := pair(t)
	if n, err := c.Write([]byte("hello")); n != 5 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := readN(t, peer, 5); string(got) != "hello" {
		t.Fatalf("peer got %q", got)
	}
	go peer.Write([]byte("world"))
	b := make([]byte, 16)
	n, err := io.ReadAtLeast(c, b, 5)
	if err != nil || string(b[:n]) != "world" {
		t.Fatalf("Read = %q, %v", b[:n], err)
	}
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
	peer.Close()
	if _, err := c.Read(b); err != io.EOF {
		t.Fatalf("Read after the peer closed = %v; want io.EOF", err)
	}
}

func TestWritevBuffers(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB: more than a socket buffer
	cases := []struct {
		name string
		bufs [][]byte
	}{
		{"one", [][]byte{[]byte("abc")}},
		{"empty parts", [][]byte{nil, []byte("a"), {}, []byte("bc"), nil}},
		{"partial writes", [][]byte{[]byte("head\r\n"), big, []byte("tail")}},
		{"over IOV_MAX", func() [][]byte {
			var b [][]byte
			for range maxIovecs + 10 {
				b = append(b, []byte("x"))
			}
			return b
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := pair(t)
			want := bytes.Join(tc.bufs, nil)
			got := make(chan []byte, 1)
			go func() {
				peer.SetReadDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, len(want))
				if _, err := io.ReadFull(peer, b); err != nil {
					t.Errorf("peer read: %v", err)
				}
				got <- b
			}()
			bufs := net.Buffers(append([][]byte(nil), tc.bufs...))
			n, err := c.Writev(&bufs)
			if err != nil || n != int64(len(want)) {
				t.Fatalf("Writev = %d, %v; want %d", n, err, len(want))
			}
			if len(bufs) != 0 {
				t.Errorf("Writev left %d buffers; want them consumed", len(bufs))
			}
			if !bytes.Equal(<-got, want) {
				t.Fatal("peer got other bytes than were written")
			}
		})
	}
}

// echoOnce answers what peer reads (n bytes) with answer.
func echoOnce(t *testing.T, peer *net.TCPConn, n int, answer string) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, n)
		if _, err := io.ReadFull(peer, b); err != nil {
			t.Errorf("peer read: %v", err)
		}
		peer.Write([]byte(answer))
		got <- b
	}()
	return got
}

func TestDeferWrite(t *testing.T) {
	big := bytes.Repeat([]byte("r"), 8<<20) // more than the socket takes at once
	for _, req := range [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n"), big} {
		t.Run(fmt.Sprintf("%d bytes", len(req)), func(t *testing.T) {
			c, peer := pair(t)
			// Small buffers: a big request cannot leave in one go.
			c.SetWriteBuffer(64 << 10)
			peer.SetReadBuffer(64 << 10)
			got := echoOnce(t, peer, len(req), "answer")
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			c.DeferWrite()
			if n, err := c.Write(req); n != len(req) || err != nil {
				t.Fatalf("deferred Write = %d, %v", n, err)
			}
			b := make([]byte, 64)
			n, err := io.ReadAtLeast(c, b, len("answer"))
			if err != nil || string(b[:n]) != "answer" {
				t.Fatalf("Read = %q, %v; want the answer", b[:n], err)
			}
			if !bytes.Equal(<-got, req) {
				t.Fatal("the peer did not get the deferred bytes whole")
			}
			// The next Write is not deferred.
			go c.Write([]byte("next"))
			if got := readN(t, peer, 4); string(got) != "next" {
				t.Fatalf("after the deferred one, peer got %q", got)
			}
		})
	}
}

func TestDeferWriteSentByWhatComesFirst(t *testing.T) {
	cases := []struct {
		name string
		then func(c *Conn) error
		want string
	}{
		{"Write", func(c *Conn) error { _, err := c.Write([]byte("+w")); return err }, "kept+w"},
		{"Writev", func(c *Conn) error {
			b := net.Buffers{[]byte("+"), []byte("v")}
			_, err := c.Writev(&b)
			return err
		}, "kept+v"},
		{"Flush", func(c *Conn) error { return c.Flush() }, "kept"},
		{"Close", func(c *Conn) error { return c.Close() }, "kept"},
		{"CloseWrite", func(c *Conn) error { return c.CloseWrite() }, "kept"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := pair(t)
			c.DeferWrite()
			c.Write([]byte("kept"))
			if err := tc.then(c); err != nil {
				t.Fatal(err)
			}
			if got := readN(t, peer, len(tc.want)); string(got) != tc.want {
				t.Fatalf("peer got %q; want %q", got, tc.want)
			}
		})
	}
}

func TestDeferredWritevCopies(t *testing.T) {
	c, peer := pair(t)
	part := []byte("part")
	bufs := net.Buffers{[]byte("a "), part}
	c.DeferWrite()
	if n, err := c.Writev(&bufs); n != 6 || err != nil {
		t.Fatalf("deferred Writev = %d, %v", n, err)
	}
	copy(part, "XXXX") // the caller may reuse its buffers at once
	got := echoOnce(t, peer, 6, "ok")
	b := make([]byte, 8)
	if _, err := io.ReadAtLeast(c, b, 2); err != nil {
		t.Fatal(err)
	}
	if g := <-got; string(g) != "a part" {
		t.Fatalf("peer got %q; want %q", g, "a part")
	}
}

func TestDeadlinesAndClose(t *testing.T) {
	t.Run("read deadline", func(t *testing.T) {
		c, _ := pair(t)
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 8))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past its deadline = %v; want a timeout", err)
		}
	})
	t.Run("write deadline", func(t *testing.T) {
		c, _ := pair(t) // the peer never reads: the buffers fill
		c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := c.Write(make([]byte, 64<<20))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write past its deadline = %v; want a timeout", err)
		}
	})
	t.Run("deferred write with a passed read deadline", func(t *testing.T) {
		c, peer := pair(t)
		c.DeferWrite()
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(-time.Second))
		if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %v; want a timeout", err)
		}
		// The read failed before it began: the deferred bytes went out
		// all the same.
		if got := readN(t, peer, 1); string(got) != "x" {
			t.Fatalf("peer got %q; want the deferred write", got)
		}
	})
	t.Run("close during a read", func(t *testing.T) {
		c, _ := pair(t)
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 8))
			done <- err
		}()
		// Close until the read has seen it: a Close before the Read
		// starts fails it as well.
		c.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read on a closed conn = %v; want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Read did not return after Close")
		}
	})
	// A peer that reset the connection fails a write, and a deferred
	// write at the read that sends it (there an EOF may come first).
	resetCases := []struct {
		name string
		send func(c *Conn) error
	}{
		{"write to a reset peer", func(c *Conn) error { _, err := c.Write([]byte("data")); return err }},
		{"deferred write to a reset peer", func(c *Conn) error {
			c.DeferWrite()
			c.Write([]byte("request"))
			_, err := c.Read(make([]byte, 8))
			return err
		}},
	}
	for _, tc := range resetCases {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := pair(t)
			peer.SetLinger(0)
			peer.Close()
			var err error
			for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); {
				err = tc.send(c)
			}
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) && err != io.EOF {
				t.Fatalf("%s: %v; want ECONNRESET, EPIPE or EOF", tc.name, err)
			}
		})
	}
}
