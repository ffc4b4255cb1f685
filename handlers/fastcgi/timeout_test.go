package fastcgi

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFPMTimeoutOnKeptConnection: the header timeout holds on a kept
// connection whose read deadline was armed by earlier requests (nap.php
// is silent 300 ms: 504 at the 200 ms timeout), and does not cut a body
// that streams longer than it (drip.php: 600 ms of lines after its
// header).
func TestFPMTimeoutOnKeptConnection(t *testing.T) {
	f := startFPM(t, "unix")
	c := &Client{Network: "unix", Address: f.address, MaxConns: 1}
	defer c.Close()
	srv := httptest.NewServer(&Handler{Client: c, Root: phpRoot(t), Timeout: 200 * time.Millisecond})
	defer srv.Close()
	for i := 0; i < 3; i++ {
		if resp, _ := get(t, srv.URL+"/status.php"); resp.StatusCode != 201 {
			t.Fatalf("status.php: %d", resp.StatusCode)
		}
	}
	start := time.Now()
	if resp, _ := get(t, srv.URL+"/nap.php"); resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("nap.php silent past the timeout: %d, want 504", resp.StatusCode)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("504 after %v, timeout 200ms", d)
	}
	resp, body := get(t, srv.URL+"/drip.php")
	if want := "drop 0\ndrop 1\ndrop 2\ndrop 3\ndrop 4\ndrop 5\n"; resp.StatusCode != 200 || body != want {
		t.Errorf("drip.php: %d %q, want the whole body", resp.StatusCode, body)
	}
}

// fakeApp is a FastCGI application that answers each request "ok" and
// then closes the connection, as php-fpm does when it recycles a worker
// right after a response (pm.max_requests).
type fakeApp struct {
	addr     string
	accepted chan struct{} // one value per connection accepted
	closed   chan struct{} // one value per connection closed
}

func startFakeApp(t *testing.T) *fakeApp {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeApp{addr: l.Addr().String(), accepted: make(chan struct{}, 16), closed: make(chan struct{}, 16)}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			a.accepted <- struct{}{}
			go func() {
				defer func() { nc.Close(); a.closed <- struct{}{} }()
				br := bufio.NewReader(nc)
				buf := make([]byte, maxContent)
				for {
					h, content, err := readRecord(br, buf)
					if err != nil {
						return
					}
					if h.Type == typeStdin && len(content) == 0 {
						break
					}
				}
				out := record(typeStdout, requestID, []byte("Content-Type: text/plain\r\n\r\nok"), 0)
				nc.Write(append(out, endRecord(statusRequestComplete)...))
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return a
}

// TestResendOnClosedKeptConnection: a kept connection the application
// closed while it sat idle costs the next request nothing: it goes again
// on a new connection.
func TestResendOnClosedKeptConnection(t *testing.T) {
	app := startFakeApp(t)
	c := &Client{Network: "tcp", Address: app.addr, MaxConns: 2}
	defer c.Close()
	srv := httptest.NewServer(&Handler{Client: c, Root: "/srv", Timeout: 5 * time.Second})
	defer srv.Close()
	for i := 0; i < 3; i++ {
		resp, body := get(t, srv.URL+"/x.php")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		select { // the application closed the connection the pool keeps
		case <-app.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the application did not close its connection")
		}
	}
	if n := len(app.accepted); n != 3 {
		t.Errorf("%d connections for 3 requests, want 3", n)
	}
	// A POST sent whole goes again too.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/x.php", strings.NewReader("a=1"))
	resp, body := do(t, req)
	if resp.StatusCode != 200 || body != "ok" {
		t.Errorf("POST on a closed kept connection: %d %q", resp.StatusCode, body)
	}
}

// keptApp is a FastCGI application that keeps its connections and answers
// "ok" at once, except a request for /hold, which it answers when the
// test closes hold.
type keptApp struct {
	addr string
	hold chan struct{}
}

func startKeptApp(t *testing.T) *keptApp {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &keptApp{addr: l.Addr().String(), hold: make(chan struct{})}
	var conns sync.WaitGroup
	t.Cleanup(func() { l.Close(); conns.Wait() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { a.serve(nc) })
		}
	}()
	return a
}

func (a *keptApp) serve(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	buf := make([]byte, maxContent)
	for {
		script := ""
		for {
			h, content, err := readRecord(br, buf)
			if err != nil {
				return
			}
			if h.Type == typeParams {
				parsePairs(content, func(n, v []byte) {
					if string(n) == "SCRIPT_NAME" {
						script = string(v)
					}
				})
			}
			if h.Type == typeStdin && len(content) == 0 {
				break
			}
		}
		if script == "/hold" {
			<-a.hold
		}
		out := record(typeStdout, requestID, []byte("Content-Type: text/plain\r\n\r\nok"), 0)
		if _, err := nc.Write(append(out, endRecord(statusRequestComplete)...)); err != nil {
			return
		}
	}
}

// TestSlowScriptOnKeptConnectionStarvesNothing: a request that waits long
// on a connection the application answered before has its worker, so the
// pool keeps the connections other requests give back (closing them,
// as for a request no worker took, would only cost new connections).
func TestSlowScriptOnKeptConnectionStarvesNothing(t *testing.T) {
	app := startKeptApp(t)
	c := &Client{Network: "tcp", Address: app.addr, MaxConns: 2}
	defer c.Close()
	do := func(path string) *Response {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		params, err := Params(r, ParamsOptions{Root: "/srv", ContentLength: -1})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(context.Background(), &Request{Params: params})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	finish := func(resp *Response) {
		if b, err := io.ReadAll(resp); err != nil || !strings.HasSuffix(string(b), "ok") {
			t.Fatalf("answer %q, %v", b, err)
		}
		resp.Close()
	}
	// Two connections, each answered once.
	a, b := do("/x.php"), do("/x.php")
	finish(a)
	finish(b)
	if c.Open() != 2 {
		t.Fatalf("%d connections open, want 2", c.Open())
	}
	slow := do("/hold")
	for start := time.Now(); time.Since(start) <= starveAfter; {
		time.Sleep(10 * time.Millisecond) // time itself is what the pool measures
	}
	finish(do("/x.php"))
	if n := c.relieved.Load(); n != 0 || c.Open() != 2 {
		t.Errorf("%d connections closed for a slow script on a kept one, %d open; want 0 and 2", n, c.Open())
	}
	close(app.hold)
	finish(slow)
}
