package h2

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// newServer starts a TLS listener on 127.0.0.1 whose "h2" connections s
// serves with h.
func newServer(t *testing.T, s *Server, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	ts.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){"h2": s.ServeTLS}
	ts.Config.RegisterOnShutdown(s.Shutdown)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// client is an HTTP/2 client (x/net's, a separate implementation).
func client() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func get(t *testing.T, c *http.Client, method, url string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

func TestResponses(t *testing.T) {
	big := make([]byte, 3<<20) // well over every window
	rand.Read(big)
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hello</html>") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	mux.HandleFunc("/typed", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/x-mine")
		w.Header().Set("Connection", "close") // HTTP/2 forbids it: left out
		w.Header().Set("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.WriteHeader(201)
		w.Header().Set("X-Late", "ignored") // after WriteHeader
		io.WriteString(w, "made")
	})
	mux.HandleFunc("/declared", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4")
		io.WriteString(w, "four")
		if _, err := io.WriteString(w, "more"); err != http.ErrContentLength {
			t.Errorf("write past Content-Length: %v", err)
		}
	})
	mux.HandleFunc("/trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "7")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Cookie", r.Header.Get("Cookie"))
		w.Header().Set("X-Length", strconv.FormatInt(r.ContentLength, 10))
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-URI", r.RequestURI)
		io.Copy(w, r.Body)
		w.Header().Set("Trailer", "ignored")
		if v := r.Trailer.Get("X-Check"); v != "" {
			w.Header().Set(http.TrailerPrefix+"X-Check", v)
		}
	})
	s := &Server{}
	ts := newServer(t, s, mux)
	c := client()

	t.Run("small body: length, sniffed type, date", func(t *testing.T) {
		resp, body := get(t, c, "GET", ts.URL+"/small", nil)
		if resp.ProtoMajor != 2 || string(body) != "<html>hello</html>" {
			t.Fatalf("proto %d body %q", resp.ProtoMajor, body)
		}
		if resp.ContentLength != 18 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || resp.Header.Get("Date") == "" {
			t.Errorf("header %v length %d", resp.Header, resp.ContentLength)
		}
	})
	t.Run("HEAD sends no body", func(t *testing.T) {
		resp, body := get(t, c, "HEAD", ts.URL+"/small", nil)
		if len(body) != 0 || resp.StatusCode != 200 {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("3 MiB through flow control", func(t *testing.T) {
		_, body := get(t, c, "GET", ts.URL+"/big", nil)
		if !bytes.Equal(body, big) {
			t.Fatalf("got %d bytes, want the %d written", len(body), len(big))
		}
	})
	t.Run("204", func(t *testing.T) {
		resp, body := get(t, c, "GET", ts.URL+"/nocontent", nil)
		if resp.StatusCode != 204 || len(body) != 0 {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("header as at WriteHeader, hop-by-hop left out", func(t *testing.T) {
		resp, body := get(t, c, "GET", ts.URL+"/typed", nil)
		if resp.StatusCode != 201 || string(body) != "made" || resp.Header.Get("Content-Type") != "text/x-mine" {
			t.Fatalf("status %d body %q header %v", resp.StatusCode, body, resp.Header)
		}
		if resp.Header.Get("Connection") != "" || resp.Header.Get("X-Late") != "" || strings.Join(resp.Header["X-Multi"], ",") != "a,b" {
			t.Errorf("header %v", resp.Header)
		}
	})
	t.Run("Content-Length declared", func(t *testing.T) {
		resp, body := get(t, c, "GET", ts.URL+"/declared", nil)
		if resp.ContentLength != 4 || string(body) != "four" {
			t.Fatalf("length %d body %q", resp.ContentLength, body)
		}
	})
	t.Run("trailers", func(t *testing.T) {
		resp, body := get(t, c, "GET", ts.URL+"/trailers", nil)
		if string(body) != "body" || resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "7" {
			t.Fatalf("body %q trailer %v", body, resp.Trailer)
		}
	})
	t.Run("request: body, cookies, host, trailers", func(t *testing.T) {
		up := big[:2<<20]
		req, _ := http.NewRequest("POST", ts.URL+"/echo?x=1", io.MultiReader(bytes.NewReader(up)))
		req.Header.Add("Cookie", "a=1")
		req.Header.Add("Cookie", "b=2")
		req.Trailer = http.Header{"X-Check": nil}
		req.Body = &trailerBody{r: bytes.NewReader(up), req: req}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(body, up) {
			t.Fatalf("echoed %d bytes, sent %d", len(body), len(up))
		}
		h := resp.Header
		if h.Get("X-Cookie") != "a=1; b=2" || h.Get("X-Length") != "-1" || h.Get("X-Proto") != "HTTP/2.0" ||
			h.Get("X-Host") != strings.TrimPrefix(ts.URL, "https://") || h.Get("X-URI") != "/echo?x=1" {
			t.Errorf("header %v", h)
		}
		if resp.Trailer.Get("X-Check") != "sum" {
			t.Errorf("request trailer not seen: %v", resp.Trailer)
		}
	})
	t.Run("known length body", func(t *testing.T) {
		resp, body := get(t, c, "PUT", ts.URL+"/echo", strings.NewReader("twelve bytes"))
		if string(body) != "twelve bytes" || resp.Header.Get("X-Length") != "12" {
			t.Fatalf("body %q header %v", body, resp.Header)
		}
	})
}

// trailerBody sets the request trailer once the body is read.
type trailerBody struct {
	r   io.Reader
	req *http.Request
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer.Set("X-Check", "sum")
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

// TestStreaming: a flushed chunk reaches the client while the handler
// still runs; a 103 arrives before the final response.
func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	s := &Server{}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "first,")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second")
	}))
	var got1xx atomic.Int32
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if code == 103 && h.Get("Link") != "" {
				got1xx.Add(1)
			}
			return nil
		},
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL, nil)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first," {
		t.Fatalf("first chunk %q, %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" || got1xx.Load() != 1 {
		t.Fatalf("rest %q, 103s seen %d", rest, got1xx.Load())
	}
}

// TestFast: Fast's answers go out as they are, HEAD without the body; a
// body larger than the window, and what Fast declines, reach the handler.
func TestFast(t *testing.T) {
	large := bytes.Repeat([]byte("L"), 8<<20) // over any client's stream window
	var handled atomic.Int32
	s := &Server{Fast: func(r *Request) *Answer {
		switch r.Path {
		case "/fast":
			v := fieldValue(r, "x-want")
			return &Answer{Status: 200, Header: AppendField(AppendField(nil, "content-type", "text/plain"), "x-want", v), Extra: AppendField(nil, "x-extra", "1"), Body: []byte("from memory")}
		case "/large":
			return &Answer{Status: 200, Body: large}
		}
		return nil
	}}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		io.WriteString(w, "from handler "+r.URL.Path)
	}))
	c := client()
	req, _ := http.NewRequest("GET", ts.URL+"/fast", nil)
	req.Header.Set("X-Want", "this")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "from memory" || resp.Header.Get("X-Want") != "this" || resp.Header.Get("X-Extra") != "1" || resp.Header.Get("Date") == "" {
		t.Fatalf("body %q header %v", body, resp.Header)
	}
	if resp, body := get(t, c, "HEAD", ts.URL+"/fast", nil); len(body) != 0 || resp.StatusCode != 200 {
		t.Fatalf("HEAD: status %d body %q", resp.StatusCode, body)
	}
	if _, body := get(t, c, "GET", ts.URL+"/large", nil); string(body) != "from handler /large" {
		t.Fatalf("a body over the window: %d bytes, not the handler's", len(body))
	}
	if _, body := get(t, c, "GET", ts.URL+"/other", nil); string(body) != "from handler /other" {
		t.Fatalf("declined: %q", body)
	}
	if _, body := get(t, c, "POST", ts.URL+"/fast", strings.NewReader("x")); string(body) != "from handler /fast" {
		t.Fatalf("POST: %q", body)
	}
	if handled.Load() != 3 {
		t.Errorf("handler ran %d times, want 3", handled.Load())
	}
}

// TestConcurrent: many streams at once on one connection, fast and not,
// with bodies both ways, all answered right (run with -race).
func TestConcurrent(t *testing.T) {
	s := &Server{Fast: func(r *Request) *Answer {
		if r.Path == "/fast" {
			return &Answer{Status: 200, Body: []byte("fast")}
		}
		return nil
	}}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%d", r.URL.Path, len(b))
	}))
	c := client()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, method, body, want := "/fast", "GET", io.Reader(nil), "fast"
			if i%2 == 1 {
				n := i * 1000
				path, method, body, want = "/slow", "POST", bytes.NewReader(make([]byte, n)), fmt.Sprintf("/slow:%d", n)
			}
			req, _ := http.NewRequest(method, ts.URL+path, body)
			resp, err := c.Do(req)
			if err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(got) != want {
				errs <- fmt.Errorf("%s %s: %q, %v; want %q", method, path, got, err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHandlerPanic: the stream is reset, the connection serves on.
func TestHandlerPanic(t *testing.T) {
	s := &Server{Logger: discardLogger()}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("on purpose")
		}
		io.WriteString(w, "fine")
	}))
	c := client()
	if resp, err := c.Get(ts.URL + "/panic"); err == nil {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("a panicking handler gave status %d body %q", resp.StatusCode, b)
		}
	}
	if _, body := get(t, c, "GET", ts.URL+"/ok", nil); string(body) != "fine" {
		t.Fatalf("after the panic: %q", body)
	}
}

// TestDeadlines: ResponseController's read deadline ends a body read that
// waits; the write deadline resets a stream the client gives no window.
func TestDeadlines(t *testing.T) {
	readErr := make(chan error, 1)
	s := &Server{}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := io.ReadAll(r.Body)
		readErr <- err
	}))
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", ts.URL, pr)
	go func() {
		pw.Write([]byte("some but not all"))
	}()
	go client().Do(req)
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("body read ended with %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read deadline did not end the read")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestUnreadBodies: handlers that answer without reading large bodies
// must not use up the connection's window: uploads after them still flow.
func TestUnreadBodies(t *testing.T) {
	s := &Server{}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" {
			io.Copy(w, r.Body)
			return
		}
		io.WriteString(w, "ignored your body")
	}))
	c := client()
	body := make([]byte, 600<<10)
	for range 10 {
		if resp, _ := get(t, c, "POST", ts.URL+"/ignore", bytes.NewReader(body)); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if _, got := get(t, c, "POST", ts.URL+"/echo", bytes.NewReader(body)); len(got) != len(body) {
		t.Fatalf("echoed %d of %d bytes", len(got), len(body))
	}
}

// TestWriteTimeoutPerWrite: WriteTimeout bounds each write, so a large
// response after the connection sat idle longer than it goes out whole.
func TestWriteTimeoutPerWrite(t *testing.T) {
	big := bytes.Repeat([]byte("b"), 200<<10)
	s := &Server{WriteTimeout: 200 * time.Millisecond}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		io.WriteString(w, "small")
	}))
	c := client()
	if _, body := get(t, c, "GET", ts.URL+"/small", nil); string(body) != "small" {
		t.Fatalf("small: %q", body)
	}
	time.Sleep(500 * time.Millisecond) // the idle time under test, past WriteTimeout
	if _, body := get(t, c, "GET", ts.URL+"/big", nil); len(body) != len(big) {
		t.Fatalf("big after idle: %d of %d bytes", len(body), len(big))
	}
}

// TestNoGoroutineLeft: once the clients are gone and the server closed,
// no goroutine of a connection, a handler or a body feeder is left,
// whatever the streams went through.
func TestNoGoroutineLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	s := &Server{Logger: discardLogger(), Fast: func(r *Request) *Answer {
		if r.Path == "/fast" {
			return &Answer{Status: 200, Body: []byte("fast")}
		}
		return nil
	}}
	ts := newServer(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("on purpose")
		case "/wait":
			<-r.Context().Done()
		case "/ignore":
			io.WriteString(w, "not reading")
		default:
			io.Copy(w, r.Body)
		}
	}))
	tr := &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get(t, c, "GET", ts.URL+"/fast", nil)
	get(t, c, "POST", ts.URL+"/echo", bytes.NewReader(make([]byte, 1<<20)))
	get(t, c, "POST", ts.URL+"/ignore", bytes.NewReader(make([]byte, 1<<20)))
	if resp, err := c.Get(ts.URL + "/panic"); err == nil {
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/wait", nil)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
	}
	cancel()
	pr, pw := io.Pipe()
	req, _ = http.NewRequest("POST", ts.URL+"/echo", pr)
	go func() {
		pw.Write([]byte("half a body"))
		pw.CloseWithError(errors.New("the client gives up"))
	}()
	if resp, err := c.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	ts.Close()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fieldValue is the first value of the request field named name.
func fieldValue(r *Request, name string) string {
	for _, f := range r.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}
