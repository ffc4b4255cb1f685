package server

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user and system) this process has used: the
// machine is shared, so wall time per op says little.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkNodeWireTLS is BenchmarkNodeWire over HTTPS/1.1 keep-alive: a
// cached 1 KiB file's 200 and 304 (the fast path) and the same 304 from
// net/http. cpu-ns/op is the process's CPU time (client and server) per
// request; the client's share is the same on both paths.
func BenchmarkNodeWireTLS(b *testing.B) {
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "www"), 0o755)
	os.WriteFile(filepath.Join(dir, "www", "1k.html"), make([]byte, 1024), 0o644)
	n := runBenchNode(b, dir, benchConfig+"https = \"127.0.0.1:0\"\n[tls]\nself_signed = true\n[[site]]\nroot = \"www\"\n")
	addr := n.Addrs()["https"]
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}

	tr := &http.Transport{TLSClientConfig: cfg}
	resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/1k.html")
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
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
			conn, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			benchKeepAlive(b, n, conn, bc.req, bc.fast)
		})
	}
	// A new connection per request: a full handshake (ECDSA P-256,
	// TLS 1.3), or one resumed from the session cache.
	for _, resume := range []bool{false, true} {
		b.Run(map[bool]string{false: "new-conn", true: "resumed-conn"}[resume], func(b *testing.B) {
			c := cfg.Clone()
			if resume {
				c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			}
			req := []byte("GET /1k.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			resumed := 0
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				conn, err := tls.Dial("tcp", addr, c)
				if err != nil {
					b.Fatal(err)
				}
				conn.Write(req)
				if _, err := io.Copy(io.Discard, conn); err != nil {
					b.Fatal(err)
				}
				if conn.ConnectionState().DidResume {
					resumed++
				}
				conn.Close()
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			if resume && resumed < b.N-1 {
				b.Fatalf("%d of %d connections resumed", resumed, b.N)
			}
		})
	}
}
