package server

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"shoal/internal/testenv"
)

// BenchmarkNodeWireFastCGI serves hello.php through a route's fastcgi
// upstream to a php-fpm the benchmark starts (8 workers, loopback TCP),
// over 4 keep-alive connections as wrk does, and reports this process's
// CPU per request (php-fpm's is not in it; the benchmark's own client's
// is) and its allocations: "fast" as wrk's request is, relayed by the
// HTTP/1.1 fast path (server/fcgirelay.go), "full" with a field the fast
// path leaves to net/http's full chain.
func BenchmarkNodeWireFastCGI(b *testing.B) {
	dir := b.TempDir()
	www := filepath.Join(dir, "www")
	os.MkdirAll(www, 0o755)
	os.WriteFile(filepath.Join(www, "hello.php"), []byte("<?php echo \"hello\\n\";\n"), 0o644)
	fpm := testenv.StartPHPFPM(b, testenv.FPMOptions{Listen: "tcp", Children: 8, NoIni: true})
	n := runBenchNode(b, dir, benchConfig+fmt.Sprintf("[[site]]\nroot = \"www\"\n[[site.route]]\npath = \"*.php\"\nupstream = \"php\"\n"+
		"[[upstream]]\nname = \"php\"\ntargets = [\"fastcgi://%s\"]\nroot = %q\n", fpm.Address, www))
	for _, mode := range []struct{ name, extra string }{{"fast", ""}, {"full", "X-Shoal-Load: 1\r\n"}} {
		b.Run(mode.name, func(b *testing.B) {
			req := []byte("GET /hello.php HTTP/1.1\r\nHost: x\r\nUser-Agent: wrk\r\n" + mode.extra + "\r\n")
			benchWire(b, n, req, "hello\n", 4)
		})
	}
}

// benchWire sends req over conns keep-alive connections to n's http
// listener, b.N times in all, and reports the process's CPU per request.
func benchWire(b *testing.B, n *Node, req []byte, tail string, conns int) {
	cs := make([]net.Conn, conns)
	var size int
	for i := range cs {
		c, err := net.Dial("tcp", n.Addrs()["http"])
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		c.Write(req)
		first := readOne(b, c)
		if size = len(first); !bytesContain(first, tail) {
			b.Fatalf("first answer: %q", first)
		}
		cs[i] = c
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	var wg sync.WaitGroup
	for i, c := range cs {
		share := b.N / conns
		if i < b.N%conns {
			share++
		}
		wg.Go(func() {
			buf := make([]byte, size)
			for range share {
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

func bytesContain(b []byte, s string) bool {
	return len(s) == 0 || len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}
