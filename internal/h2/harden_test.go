package h2

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
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
