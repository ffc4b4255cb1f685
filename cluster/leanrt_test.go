package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an httptest server that counts the connections it
// accepted.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func testLean(t *testing.T) *leanTransport {
	t.Helper()
	lt := newLeanTransport(newTransport(time.Second, nil), false)
	t.Cleanup(lt.close)
	return lt
}

func leanGet(t *testing.T, lt *leanTransport, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := lt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return res, string(body)
}

// TestLeanTransportReuse: sequential GETs and HEADs share one connection;
// bodies of every framing arrive whole.
func TestLeanTransportReuse(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
		default:
			w.Header().Set("Content-Length", "5")
			w.Write([]byte("hello"))
		}
	})
	lt := testLean(t)
	for i := range 20 {
		switch i % 3 {
		case 0:
			if _, body := leanGet(t, lt, "GET", srv.URL+"/x"); body != "hello" {
				t.Fatalf("body %q", body)
			}
		case 1:
			res, body := leanGet(t, lt, "HEAD", srv.URL+"/x")
			if body != "" || res.ContentLength != 5 {
				t.Fatalf("HEAD: body %q length %d", body, res.ContentLength)
			}
		case 2:
			if _, body := leanGet(t, lt, "GET", srv.URL+"/chunked"); body != "part one, part two" {
				t.Fatalf("chunked body %q", body)
			}
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 20 sequential requests, want 1", n)
	}
}

// TestLeanTransportNoReuse: a response that closes, a request that asks
// to close and a body abandoned half-way each cost their connection; the
// next request still works.
func TestLeanTransportNoReuse(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, strings.Repeat("x", 100000))
	})
	lt := testLean(t)
	leanGet(t, lt, "GET", srv.URL+"/close")
	leanGet(t, lt, "GET", srv.URL+"/a")
	req, _ := http.NewRequest("GET", srv.URL+"/a", nil)
	req.Close = true
	res, err := lt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	req, _ = http.NewRequest("GET", srv.URL+"/a", nil)
	res, err = lt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, res.Body, 10) // abandoned
	res.Body.Close()
	if _, body := leanGet(t, lt, "GET", srv.URL+"/a"); len(body) != 100000 {
		t.Fatalf("body of %d bytes", len(body))
	}
	// One for /close; one kept for /a and ended by req.Close; one for the
	// abandoned body; one for the last request.
	if n := conns.Load(); n != 4 {
		t.Errorf("%d connections, want 4", n)
	}
}

// TestLeanTransportStaleConn: the peer closed a kept connection while it
// was idle (its idle_timeout); the next request is sent again on a new
// connection and succeeds.
func TestLeanTransportStaleConn(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	lt := testLean(t)
	leanGet(t, lt, "GET", srv.URL+"/")
	srv.CloseClientConnections()
	deadline := time.Now().Add(5 * time.Second)
	for conns.Load() == 1 && time.Now().Before(deadline) {
		if _, body := leanGet(t, lt, "GET", srv.URL+"/"); body != "ok" {
			t.Fatalf("body %q", body)
		}
	}
	if conns.Load() < 2 {
		t.Fatal("no new connection after the peer closed the kept one")
	}
}

// TestLeanTransportCancel: a client that leaves ends the round trip at
// once, even while the peer is still thinking.
func TestLeanTransportCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	lt := testLean(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/", nil)
	start := time.Now()
	_, err := lt.RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("returned after %v", el)
	}
}

// TestLeanTransportInformational: 1xx responses before the final one are
// skipped, as net/http's Transport does.
func TestLeanTransportInformational(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		fmt.Fprint(c, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
	}()
	res, body := leanGet(t, testLean(t), "GET", "http://"+ln.Addr().String()+"/")
	if res.StatusCode != 200 || body != "done" {
		t.Errorf("got %d %q", res.StatusCode, body)
	}
}

// TestLeanTransportDelegates: requests with a body (and upgrades) go to
// net/http's Transport, which the lean pool never sees.
func TestLeanTransportDelegates(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	})
	lt := testLean(t)
	req, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader("payload"))
	res, err := lt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "POST payload" {
		t.Errorf("body %q", body)
	}
	lt.mu.Lock()
	pooled := len(lt.idle)
	lt.mu.Unlock()
	if pooled != 0 {
		t.Errorf("lean pool holds connections after a POST: %d", pooled)
	}
	for _, m := range []string{"GET", "HEAD"} {
		r, _ := http.NewRequest(m, "http://x/", nil)
		if !lt.lean(r) {
			t.Errorf("%s not carried by the lean transport", m)
		}
	}
	for _, r := range []*http.Request{
		httptest.NewRequest("POST", "http://x/", nil),
		httptest.NewRequest("GET", "https://x/", nil),
		func() *http.Request {
			r, _ := http.NewRequest("GET", "http://x/", nil)
			r.Header.Set("Upgrade", "websocket")
			return r
		}(),
	} {
		if lt.lean(r) {
			t.Errorf("%s %s (upgrade %q) carried by the lean transport", r.Method, r.URL, r.Header.Get("Upgrade"))
		}
	}
}
