package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Relay passes TCP connections from its own loopback address through to
// a target and counts them, until the test ends.
type Relay struct {
	Addr string

	mu    sync.Mutex
	n     int
	conns []net.Conn
}

// StartRelay relays to target. toClient copies the target's bytes to
// the client (nil: io.Copy); a test can pace or cut them there.
func StartRelay(t testing.TB, target string, toClient func(dst io.Writer, src io.Reader)) *Relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if toClient == nil {
		toClient = func(dst io.Writer, src io.Reader) { io.Copy(dst, src) }
	}
	r := &Relay{Addr: l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			r.mu.Lock()
			r.n++
			r.conns = append(r.conns, in, out)
			r.mu.Unlock()
			// The client's end of input reaches the target as a half
			// close, so the target can still answer.
			wg.Go(func() { io.Copy(out, in); out.(*net.TCPConn).CloseWrite() })
			wg.Go(func() { toClient(in, out); in.Close() })
		}
	})
	return r
}

// Count is how many connections the relay has passed on.
func (r *Relay) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
