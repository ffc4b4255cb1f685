package forward

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPool dials addr over TCP.
func tcpPool(t testing.TB, addr string) *Pool {
	d := &net.Dialer{Timeout: 5 * time.Second}
	p := NewPool(PoolOptions{Dial: func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }})
	t.Cleanup(p.Close)
	return p
}

// app is a net/http application counting the connections it accepted.
func app(t testing.TB, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var conns atomic.Int32
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

func get(target string) *Request {
	return &Request{Method: "GET", Target: target, Host: "app", Header: http.Header{}}
}

// TestForwardReuse: sequential requests share one kept connection.
func TestForwardReuse(t *testing.T) {
	s, conns := app(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.URL.Path) })
	p := tcpPool(t, s.Listener.Addr().String())
	for i := range 5 {
		var m memSink
		if err := p.Forward(context.Background(), get("/x"), &m); err != nil {
			t.Fatal(i, err)
		}
		if m.head.Status != 200 || m.String() != "hello /x" {
			t.Fatalf("%d %q", m.head.Status, m.String())
		}
	}
	if conns.Load() != 1 || p.Idle() != 1 {
		t.Errorf("%d connections, %d idle; want 1 and 1", conns.Load(), p.Idle())
	}
}

// TestPoolRetiresOldest: an idle connection past the idle timeout is
// closed by a later put, though newer ones stay above it.
func TestPoolRetiresOldest(t *testing.T) {
	p := NewPool(PoolOptions{Dial: nil, IdleTimeout: time.Minute})
	a, b := net.Pipe()
	defer b.Close()
	old := &conn{nc: a}
	p.put(old)
	old.idleAt = time.Now().Add(-2 * time.Minute)
	x, y := net.Pipe()
	defer x.Close()
	defer y.Close()
	p.put(&conn{nc: x})
	if p.Idle() != 1 || p.idle[0].nc != x {
		t.Fatalf("%d idle", p.Idle())
	}
	if !closedPipe(a) {
		t.Error("the stale connection is still open")
	}
	p.idle[0].idleAt = time.Now().Add(-2 * time.Minute)
	if n := p.Prune(); n != 0 {
		t.Errorf("Prune kept %d", n)
	}
	if !closedPipe(x) {
		t.Error("a pruned connection is still open")
	}
}

// closedPipe reports whether this end of a net.Pipe was closed.
func closedPipe(c net.Conn) bool {
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Write([]byte("x"))
	return errors.Is(err, io.ErrClosedPipe)
}

// TestForwardRequestHead: what the application receives: no hop-by-hop
// field, none the client's Connection names, none dropped, the extra
// ones, the Host given, the body framed by length or chunked.
func TestForwardRequestHead(t *testing.T) {
	type seen struct {
		host, body string
		hdr        http.Header
		cl         int64
		te         []string
	}
	got := make(chan seen, 1)
	s, _ := app(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Host, string(b), r.Header, r.ContentLength, r.TransferEncoding}
	})
	p := tcpPool(t, s.Listener.Addr().String())
	client := http.Header{"Connection": {"X-Secret, keep-alive"}, "X-Secret": {"s"}, "Keep-Alive": {"1"},
		"Te": {"trailers"}, "Upgrade": {"x"}, "Proxy-Authorization": {"p"}, "X-Forwarded-For": {"6.6.6.6"},
		"X-Shoal-Hop": {"forged"}, "Cookie": {"a=b"}, "Accept": {"*/*"}, "Content-Length": {"999"}}
	for _, tc := range []struct {
		name string
		cl   int64
		te   bool
	}{{"length", 5, false}, {"chunked", -1, true}, {"none", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			req := &Request{Method: "POST", Target: "/p?q=1", Host: "site.example", Header: client,
				Fields: []Field{{"x-list", "l"}, {"connection", "x-list2"}, {"X-List2", "no"}},
				Drop:   map[string]bool{"X-Forwarded-For": true}, DropPrefix: "X-Shoal-",
				Extra: []Field{{"X-Forwarded-For", "1.2.3.4"}}, ContentLength: tc.cl}
			if tc.cl != 0 {
				req.Body = strings.NewReader("hello")
			}
			var m memSink
			if err := p.Forward(context.Background(), req, &m); err != nil {
				t.Fatal(err)
			}
			g := <-got
			want := "hello"
			if tc.cl == 0 {
				want = ""
			}
			if g.host != "site.example" || g.body != want || (len(g.te) > 0) != tc.te {
				t.Errorf("host %q body %q te %v", g.host, g.body, g.te)
			}
			for _, k := range []string{"Connection", "X-Secret", "Keep-Alive", "Te", "Upgrade", "Proxy-Authorization", "X-Shoal-Hop", "X-List2"} {
				if v, ok := g.hdr[k]; ok {
					t.Errorf("%s passed: %q", k, v)
				}
			}
			if g.hdr.Get("X-Forwarded-For") != "1.2.3.4" || g.hdr.Get("Cookie") != "a=b" || g.hdr.Get("X-List") != "l" {
				t.Errorf("header %v", g.hdr)
			}
		})
	}
}

// TestForwardNoReuse: a response that closes and a body the client
// stopped taking half-way each cost their connection; the next request
// still works.
func TestForwardNoReuse(t *testing.T) {
	s, conns := app(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, strings.Repeat("x", 100000))
	})
	p := tcpPool(t, s.Listener.Addr().String())
	if err := p.Forward(context.Background(), get("/close"), &memSink{}); err != nil {
		t.Fatal(err)
	}
	if p.Idle() != 0 {
		t.Fatal("kept a connection the target closes")
	}
	err := p.Forward(context.Background(), get("/a"), failSink{})
	if err == nil || errors.Is(err, ErrNoResponse) || !errors.Is(err, errSinkWrite) {
		t.Fatalf("client gone half-way: %v", err)
	}
	var m memSink
	if err := p.Forward(context.Background(), get("/a"), &m); err != nil || m.Len() != 100000 {
		t.Fatalf("%v, %d bytes", err, m.Len())
	}
	if n := conns.Load(); n != 3 || p.Idle() != 1 {
		t.Errorf("%d connections (want 3), %d idle (want 1)", n, p.Idle())
	}
}

// failSink takes the head and refuses the body, as a client gone.
type failSink struct{}

func (failSink) WriteHead(*Head) error       { return nil }
func (failSink) Write(p []byte) (int, error) { return 0, errors.New("client gone") }
func (failSink) Flush() error                { return nil }
func (failSink) End() error                  { return nil }

// rawServer answers each connection with serve, on a real listener.
func rawServer(t testing.TB, serve func(c net.Conn)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return l.Addr().String()
}

// readRequest reads one request head and body.
func readRequest(br *bufio.Reader) (*http.Request, error) {
	r, err := http.ReadRequest(br)
	if err == nil {
		io.Copy(io.Discard, r.Body)
	}
	return r, err
}

// TestForwardStale: a kept connection the application closed while idle
// costs the next GET nothing: it goes again on a new connection.
func TestForwardStale(t *testing.T) {
	var conns atomic.Int32
	addr := rawServer(t, func(c net.Conn) {
		conns.Add(1)
		if _, err := readRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") // keep-alive, then closes
	})
	p := tcpPool(t, addr)
	for i := range 3 {
		var m memSink
		if err := p.Forward(context.Background(), get("/"), &m); err != nil || m.String() != "ok" {
			t.Fatalf("request %d: %v %q", i, err, m.String())
		}
		deadline := time.Now().Add(5 * time.Second)
		for p.Idle() == 1 && alive(p.idle[0].nc) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // until the close reached this side
		}
	}
	if conns.Load() != 3 {
		t.Errorf("%d connections, want 3", conns.Load())
	}
	// A DELETE, which may not run twice, is not put on a kept connection
	// the target closed.
	deadline := time.Now().Add(5 * time.Second)
	for p.Idle() == 1 && alive(p.idle[0].nc) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	del := get("/")
	del.Method = "DELETE"
	if err := p.Forward(context.Background(), del, &memSink{}); err != nil || conns.Load() != 4 {
		t.Errorf("DELETE after the target closed its kept connection: %v, %d connections", err, conns.Load())
	}
}

// TestForwardStaleBody: a request whose body cannot be sent twice is not
// put on a kept connection the application has closed.
func TestForwardStaleBody(t *testing.T) {
	var conns atomic.Int32
	addr := rawServer(t, func(c net.Conn) {
		conns.Add(1)
		r, err := readRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(r.Method))+"\r\n\r\n"+r.Method)
	})
	p := tcpPool(t, addr)
	var m memSink
	if err := p.Forward(context.Background(), get("/"), &m); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(p.idle[0].nc) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // until the close reached this side
	}
	m.Reset()
	put := &Request{Method: "PUT", Target: "/", Host: "h", Body: strings.NewReader("once"), ContentLength: 4}
	if err := p.Forward(context.Background(), put, &m); err != nil || m.String() != "PUT" {
		t.Fatalf("%v %q", err, m.String())
	}
	if conns.Load() != 2 {
		t.Errorf("%d connections, want 2", conns.Load())
	}
}

// TestForwardHeaderTimeout: an application that accepts and says nothing
// gives ErrNoResponse and ErrHeaderTimeout, a timeout net.Error, in time.
func TestForwardHeaderTimeout(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	p := tcpPool(t, addr)
	req := get("/")
	req.HeaderTimeout = 100 * time.Millisecond
	start := time.Now()
	err := p.Forward(context.Background(), req, &memSink{})
	var ne net.Error
	if !errors.Is(err, ErrNoResponse) || !errors.Is(err, ErrHeaderTimeout) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
	if p.Idle() != 0 {
		t.Error("a timed-out connection was kept")
	}
}

// TestForwardHeaderTimeoutKeptConn: on a kept connection, whose read
// deadline the last answer left in place (rawio's ReadWithin keeps one
// close enough), a silent target still times out, and never sooner than
// the header timeout after the request: whether the request comes while
// the last deadline is still ahead or after it has passed.
func TestForwardHeaderTimeoutKeptConn(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		io.Copy(io.Discard, br) // the second request gets no answer
	})
	p := tcpPool(t, addr)
	const timeout = 200 * time.Millisecond
	for _, wait := range []time.Duration{0, timeout / 2, timeout * 2} {
		req := get("/")
		req.HeaderTimeout = timeout
		var m memSink
		if err := p.Forward(context.Background(), req, &m); err != nil || m.String() != "ok" {
			t.Fatalf("first request: %v %q", err, m.String())
		}
		if p.Idle() != 1 {
			t.Fatalf("%d idle connections; want the first one kept", p.Idle())
		}
		time.Sleep(wait) // the gap between two requests this test is about
		req = get("/")
		req.HeaderTimeout = timeout
		start := time.Now()
		err := p.Forward(context.Background(), req, &memSink{})
		el := time.Since(start)
		if !errors.Is(err, ErrHeaderTimeout) {
			t.Fatalf("after %v: err %v; want a header timeout", wait, err)
		}
		if el < timeout || el > 3*time.Second {
			t.Fatalf("after %v: timed out after %v; want %v to %v", wait, el, timeout, timeout+timeout/16)
		}
		if p.Idle() != 0 {
			t.Fatal("the timed-out connection was kept")
		}
	}
}

// TestForwardTimeoutFromDial: with TimeoutFromDial, a connection dialed
// for the request has its header timeout run from the start of the dial
// (a slow connect does not add to it), and only for its first request;
// without it the timeout runs from the request.
func TestForwardTimeoutFromDial(t *testing.T) {
	const dialDelay, timeout = time.Second, time.Second
	// The target answers /quick at once and nothing else.
	addr := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := readRequest(br)
			if err != nil {
				return
			}
			if r.URL.Path == "/quick" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	})
	slowPool := func(delay time.Duration) *Pool {
		d := &net.Dialer{Timeout: 5 * time.Second}
		p := NewPool(PoolOptions{Dial: func(ctx context.Context) (net.Conn, error) {
			time.Sleep(delay) // the slow connect this test is about
			return d.DialContext(ctx, "tcp", addr)
		}})
		t.Cleanup(p.Close)
		return p
	}
	request := func(p *Pool, path string, fromDial bool) (time.Duration, error) {
		req := get(path)
		req.HeaderTimeout, req.TimeoutFromDial = timeout, fromDial
		start := time.Now()
		err := p.Forward(context.Background(), req, &memSink{})
		return time.Since(start), err
	}
	for _, fromDial := range []bool{true, false} {
		el, err := request(slowPool(dialDelay), "/silent", fromDial)
		if !errors.Is(err, ErrHeaderTimeout) {
			t.Fatalf("fromDial %v: err %v", fromDial, err)
		}
		switch {
		case el < timeout:
			t.Fatalf("fromDial %v: timed out after %v, sooner than the timeout", fromDial, el)
		case fromDial && el >= dialDelay+timeout:
			t.Fatalf("timed out after %v: the dial's %v came on top of the timeout", el, dialDelay)
		case !fromDial && el < dialDelay+timeout:
			t.Fatalf("without TimeoutFromDial, timed out after %v: the dial counted", el)
		}
	}
	// The dial counts for the connection's first request only: the next
	// one on it gets the whole timeout, not what the dial's deadline left.
	p := slowPool(dialDelay / 3)
	if _, err := request(p, "/quick", true); err != nil {
		t.Fatal(err)
	}
	el, err := request(p, "/silent", true)
	if !errors.Is(err, ErrHeaderTimeout) || el < timeout {
		t.Fatalf("second request on the connection: %v after %v; want a header timeout after %v", err, el, timeout)
	}
}

// TestForwardCancel: cancelling the context ends the wait at once, with
// the context's cause.
func TestForwardCancel(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	p := tcpPool(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := p.Forward(ctx, get("/"), &memSink{})
	if !errors.Is(err, ErrNoResponse) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

// TestForwardAbort: the Abort context ends the wait for an answer, and a
// dial, with its cause.
func TestForwardAbort(t *testing.T) {
	cause := errors.New("peer dead")
	addr := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	p := tcpPool(t, addr)
	abort, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	req := get("/")
	req.Abort = abort
	if err := p.Forward(context.Background(), req, &memSink{}); !errors.Is(err, ErrNoResponse) || !errors.Is(err, cause) {
		t.Fatalf("waiting: %v", err)
	}
	hung := NewPool(PoolOptions{Dial: func(ctx context.Context) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	if err := hung.Forward(context.Background(), req, &memSink{}); !errors.Is(err, ErrNoResponse) || !errors.Is(err, cause) {
		t.Fatalf("dialing: %v", err)
	}
}

// TestForwardEarlyAnswer: an application that answers without reading a
// large body does not hang the forwarder; the answer reaches the client
// and the connection is not kept.
func TestForwardEarlyAnswer(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig")
		time.Sleep(time.Second) // keeps the connection open without reading
	})
	p := tcpPool(t, addr)
	req := &Request{Method: "PUT", Target: "/", Host: "h", Body: io.LimitReader(zeros{}, 64<<20), ContentLength: 64 << 20}
	var m memSink
	done := make(chan error, 1)
	go func() { done <- p.Forward(context.Background(), req, &m) }()
	select {
	case err := <-done:
		if err != nil || m.head.Status != 413 || m.String() != "big" {
			t.Fatalf("%v %q", err, m.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hung")
	}
	if p.Idle() != 0 {
		t.Error("kept a connection with a body half sent")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestForwardFlush: a body without a length is flushed as it comes, one
// with a length is not.
func TestForwardFlush(t *testing.T) {
	s, _ := app(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/len" {
			w.Header().Set("Content-Length", "2")
		}
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		io.WriteString(w, "b")
	})
	p := tcpPool(t, s.Listener.Addr().String())
	for _, tc := range []struct {
		path  string
		flush bool
	}{{"/len", false}, {"/chunked", true}} {
		var m memSink
		if err := p.Forward(context.Background(), get(tc.path), &m); err != nil || m.String() != "ab" {
			t.Fatalf("%s: %v %q", tc.path, err, m.String())
		}
		if (m.flushes > 0) != tc.flush {
			t.Errorf("%s: %d flushes", tc.path, m.flushes)
		}
	}
}

// TestForwardBadRequestLine: a method, target or Host that would break
// the request line or the Host field is never sent.
func TestForwardBadRequestLine(t *testing.T) {
	var conns atomic.Int32
	addr := rawServer(t, func(c net.Conn) { conns.Add(1) })
	p := tcpPool(t, addr)
	for _, r := range []*Request{
		{Method: "GET", Target: "/a b", Host: "h"},
		{Method: "GET", Target: "/a\r\nX: 1", Host: "h"},
		{Method: "G T", Target: "/", Host: "h"},
		{Method: "GET", Target: "/", Host: "h\r\nX: 1"},
		{Method: "GET", Target: "", Host: "h"},
	} {
		if err := p.Forward(context.Background(), r, &memSink{}); !errors.Is(err, ErrNoResponse) {
			t.Errorf("%q %q %q: %v", r.Method, r.Target, r.Host, err)
		}
	}
	if conns.Load() != 0 {
		t.Errorf("%d connections opened", conns.Load())
	}
}

// TestForwardRefused: a target that refuses gives ErrNoResponse.
func TestForwardRefused(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if err := tcpPool(t, addr).Forward(context.Background(), get("/"), &memSink{}); !errors.Is(err, ErrNoResponse) {
		t.Fatalf("err %v", err)
	}
}

// BenchmarkForward is one 1 KiB GET through the forwarder to a net/http
// application on loopback, allocations reported.
func BenchmarkForward(b *testing.B) {
	payload := strings.Repeat("x", 1024)
	s, _ := app(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		io.WriteString(w, payload)
	})
	p := tcpPool(b, s.Listener.Addr().String())
	req := get("/1k")
	var m memSink
	b.ReportAllocs()
	for b.Loop() {
		m.Reset()
		if err := p.Forward(context.Background(), req, &m); err != nil || m.Len() != 1024 {
			b.Fatal(err, m.Len())
		}
	}
}

// TestForwardConcurrent: many requests at once share the pool without a
// mixed-up answer; it keeps no more connections than were in use.
func TestForwardConcurrent(t *testing.T) {
	s, conns := app(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path+strings.Repeat(".", len(r.URL.Path)*100))
	})
	p := tcpPool(t, s.Listener.Addr().String())
	const workers, each = 8, 40
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				path := "/" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				var m memSink
				if err := p.Forward(context.Background(), get(path), &m); err != nil {
					errs <- err
					return
				}
				if want := path + strings.Repeat(".", len(path)*100); m.String() != want {
					errs <- errors.New("answer of another request: " + m.String()[:min(20, m.Len())])
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n > workers || p.Idle() > workers {
		t.Errorf("%d connections, %d idle for %d workers", n, p.Idle(), workers)
	}
}

// Body sends nothing for a request of unknown length whose body is empty
// (an HTTP/2 or HTTP/3 GET), and all of it, chunked, when there is one.
func TestBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   io.Reader
		length int64
		want   string
		wantN  int64
		none   bool
	}{
		{"no body", http.NoBody, 0, "", 0, true},
		{"known length", strings.NewReader("hello"), 5, "hello", 5, false},
		{"unknown, empty", strings.NewReader(""), -1, "", 0, true},
		{"unknown, some", strings.NewReader("stream"), -1, "stream", -1, false},
	} {
		r := httptest.NewRequest("POST", "/", tc.body)
		r.ContentLength = tc.length
		body, n := Body(r)
		if (body == nil) != tc.none || n != tc.wantN {
			t.Errorf("%s: body %v length %d, want none=%v length %d", tc.name, body != nil, n, tc.none, tc.wantN)
			continue
		}
		if body != nil {
			if got, _ := io.ReadAll(body); string(got) != tc.want {
				t.Errorf("%s: sent %q, want %q", tc.name, got, tc.want)
			}
		}
	}
}
