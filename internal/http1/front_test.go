package http1

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// relayFunc adapts a function to Relay.
type relayFunc func(c *Conn, h *Head, head []byte, closing bool) (bool, bool)

func (f relayFunc) Relay(c *Conn, h *Head, head []byte, closing bool) (bool, bool) {
	return f(c, h, head, closing)
}

// startFront serves route's answers on a fast path in front of a
// net/http server that answers "net/http <path>".
func startFront(t *testing.T, route Route) (addr string, f *Front) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handoff := NewHandoff(ln.Addr())
	f = NewFront(ln, handoff, Limits{ReadHeader: 5 * time.Second, Send: 5 * time.Second, MaxHeader: 64 << 10},
		slog.New(slog.DiscardHandler), route)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "net/http "+r.URL.Path)
	})}
	go f.AcceptLoop()
	go srv.Serve(handoff)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.Shutdown(ctx)
		srv.Shutdown(ctx)
	})
	return ln.Addr().String(), f
}

// TestFrontRelay: a Relay's response goes out as it wrote it, on a
// connection that stays open for the next request; a Relay that writes
// nothing leaves the request, unread, to net/http, which answers it and
// keeps the connection from then on.
func TestFrontRelay(t *testing.T) {
	var sawHead string
	route := func(c *Conn, h *Head) (Answer, bool) {
		switch h.Path {
		case "/file":
			return Answer{StatusLine: []byte("HTTP/1.1 200 OK\r\n"), Header: []byte("Content-Length: 4\r\n\r\n"), Body: []byte("file")}, true
		case "/relay":
			return Answer{Relay: relayFunc(func(c *Conn, h *Head, head []byte, closing bool) (bool, bool) {
				sawHead = string(head)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nrelay")
				return true, true
			})}, true
		case "/decline":
			return Answer{Relay: relayFunc(func(*Conn, *Head, []byte, bool) (bool, bool) { return false, false })}, true
		}
		return Answer{}, false
	}
	addr, f := startFront(t, route)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, tc := range []struct{ path, want string }{
		{"/relay", "relay"},
		{"/file", "file"},
		{"/relay", "relay"},
		{"/decline", "net/http /decline"},
		{"/relay", "net/http /relay"}, // the connection is net/http's now
	} {
		req := "GET " + tc.path + " HTTP/1.1\r\nHost: x\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d %s: %v", i, tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != tc.want {
			t.Errorf("request %d %s: body %q, want %q", i, tc.path, body, tc.want)
		}
		if i == 0 && sawHead != req {
			t.Errorf("relay saw head %q, want %q", sawHead, req)
		}
	}
	if got := f.Answered(); got != 3 {
		t.Errorf("fast path answered %d, want 3 (two relays, one file)", got)
	}
}
