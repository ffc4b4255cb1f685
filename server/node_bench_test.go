package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// nopWriter is a ResponseWriter that costs nothing, so the benchmark
// measures the node's own request path: vhost, bookkeeping, metrics,
// routing and the static handler.
type nopWriter struct{ h http.Header }

func (d *nopWriter) Header() http.Header         { return d.h }
func (d *nopWriter) WriteHeader(int)             {}
func (d *nopWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkNodeStatic serves a cached 1 KiB file through the whole site
// chain, with allocations reported.
func BenchmarkNodeStatic(b *testing.B) {
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "www"), 0o755)
	os.WriteFile(filepath.Join(dir, "www", "1k.html"), make([]byte, 1024), 0o644)
	cfgPath := filepath.Join(dir, "c.toml")
	os.WriteFile(cfgPath, []byte("[server]\nhttp = \"127.0.0.1:0\"\nadmin = \"\"\n[log]\naccess = \"off\"\n[[site]]\nroot = \"www\"\n"), 0o644)
	n, err := New(func() (*Config, error) { return LoadConfig(cfgPath) }, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/1k.html", nil)
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		n.ServeHTTP(w, req)
	}
}
