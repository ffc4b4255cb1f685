package fastcgi

import (
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"shoal/internal/testenv"
)

// discardWriter is a ResponseWriter that keeps the header and drops the
// body, so a benchmark measures the FastCGI side alone.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(code int)        { d.status = code }
func (d *discardWriter) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
func (d *discardWriter) Flush()                      {}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFPMHello serves hello.php through php-fpm (4 workers on a
// loopback port, as bench/run.sh's fastcgi section) from 4 goroutines and
// reports this process's CPU per request (cpu-ns/op) beside ns/op, which
// php-fpm's time dominates.
func BenchmarkFPMHello(b *testing.B) {
	p := testenv.StartPHPFPM(b, testenv.FPMOptions{Listen: "tcp", Children: 4, NoIni: true})
	c := &Client{Network: p.Network, Address: p.Address, MaxConns: 4}
	defer c.Close()
	h := &Handler{Client: c, Root: phpRoot(b)}
	r := httptest.NewRequest(http.MethodGet, "/hello.php", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("User-Agent", "wrk")
	r.Header.Set("Accept", "*/*")
	b.ReportAllocs()
	b.SetParallelism(2) // 2 x GOMAXPROCS goroutines
	start := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			w.status, w.n = 0, 0
			h.ServeHTTP(w, r)
			if w.status != http.StatusOK || w.n != len("hello\n") {
				b.Errorf("status %d, %d bytes", w.status, w.n)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}
