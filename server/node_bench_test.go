package server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"shoal/server/config"
)

// nopWriter is a ResponseWriter that costs nothing, so the benchmark
// measures the node's own request path: vhost, bookkeeping, metrics,
// routing and the static handler.
type nopWriter struct{ h http.Header }

func (d *nopWriter) Header() http.Header         { return d.h }
func (d *nopWriter) WriteHeader(int)             {}
func (d *nopWriter) Write(b []byte) (int, error) { return len(b), nil }

// benchConfig starts every benchmark node's config: no access log,
// loopback HTTP, no admin, no drain; more [server] keys may follow.
const benchConfig = "[log]\naccess = \"off\"\n[server]\nhttp = \"127.0.0.1:0\"\nadmin = \"\"\ndrain_delay = \"0s\"\n"

// newBenchNode builds (without starting) a node from the config text cfg,
// written in dir.
func newBenchNode(b *testing.B, dir, cfg string) *Node {
	b.Helper()
	cfgPath := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	n, err := New(func() (*config.Config, error) { return config.Load(cfgPath) }, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// runBenchNode is newBenchNode started, and stopped when the benchmark
// ends.
func runBenchNode(b *testing.B, dir, cfg string) *Node {
	b.Helper()
	n := newBenchNode(b, dir, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	<-n.Ready()
	return n
}

// benchNode builds (without starting) a node serving www/1k.html.
func benchNode(b *testing.B) *Node {
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "www"), 0o755)
	os.WriteFile(filepath.Join(dir, "www", "1k.html"), make([]byte, 1024), 0o644)
	return newBenchNode(b, dir, benchConfig+"[[site]]\nroot = \"www\"\n")
}

// BenchmarkNodeStatic serves a cached 1 KiB file through the whole site
// chain, with allocations reported.
func BenchmarkNodeStatic(b *testing.B) {
	n := benchNode(b)
	req := httptest.NewRequest("GET", "/1k.html", nil)
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		n.ServeHTTP(w, req)
	}
}

// BenchmarkNodeWire serves a cached 1 KiB file over a real keep-alive
// connection, as wrk does: a 200 and a 304 (If-None-Match) on the
// HTTP/1.1 fast path, and the same 304 from net/http (a Range header that
// does not apply, If-Range naming another version, sends the request down
// the full chain). The client side allocates nothing, so the allocations
// reported are the server's.
func BenchmarkNodeWire(b *testing.B) {
	n := benchNode(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-n.Ready()
	addr := n.Addrs()["http"]

	resp, err := http.Get("http://" + addr + "/1k.html")
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("Etag")
	for _, bc := range []struct {
		name, req string
		fast      bool
	}{
		{"200", "GET /1k.html HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"304", "GET /1k.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: " + etag + "\r\n\r\n", true},
		{"304-net/http", "GET /1k.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: " + etag + "\r\nRange: bytes=0-1\r\nIf-Range: \"other\"\r\n\r\n", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			benchKeepAlive(b, n, conn, bc.req, bc.fast)
		})
	}
}

// readOne reads one whole response (Content-Length framed) from conn.
func readOne(b *testing.B, conn net.Conn) []byte {
	var raw bytes.Buffer
	resp, err := http.ReadResponse(bufio.NewReader(io.TeeReader(conn, &raw)), nil)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return raw.Bytes()
}

// BenchmarkNodeWirePage serves bench/page/page.tmpl (the page bench/run.sh
// compares with a static file of the same bytes) over a real keep-alive
// connection, through net/http (pages never take the fast path),
// allocations reported.
func BenchmarkNodeWirePage(b *testing.B) {
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "www"), 0o755)
	os.CopyFS(filepath.Join(dir, "templates"), os.DirFS("../bench/page/templates"))
	page, err := os.ReadFile("../bench/page/page.tmpl")
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "www", "page.tmpl"), page, 0o644)
	n := runBenchNode(b, dir, benchConfig+"[[site]]\nroot = \"www\"\ntemplates = \"templates\"\n")
	conn, err := net.Dial("tcp", n.Addrs()["http"])
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.Write(req)
	first := readOne(b, conn)
	buf := make([]byte, len(first))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conn.Write(req)
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// benchKeepAlive sends req on conn b.N times, one response at a time, and
// reports the CPU per request; fast says whether the fast path must have
// answered every one.
func benchKeepAlive(b *testing.B, n *Node, conn net.Conn, request string, fast bool) {
	b.Helper()
	req := []byte(request)
	// Learn the response's length once, then read exactly that.
	before := n.fastAnswered()
	conn.Write(req)
	first := readOne(b, conn)
	buf := make([]byte, len(first))
	if fast {
		before++ // counted once it is out, maybe after the client read it
	} else {
		before = n.fastAnswered()
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	// A relay counts its answer once it is out: the client may read it
	// first.
	for deadline := time.Now().Add(time.Second); fast && n.fastAnswered()-before < int64(b.N) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := n.fastAnswered()-before == int64(b.N); got != fast {
		b.Fatalf("fast path used: %v, want %v (%d of %d)", got, fast, n.fastAnswered()-before, b.N)
	}
}
