package fastcgi

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
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
