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
// CPU per request (php-fpm's is not in it) and its allocations.
func BenchmarkNodeWireFastCGI(b *testing.B) {
	dir := b.TempDir()
	www := filepath.Join(dir, "www")
	os.MkdirAll(www, 0o755)
	os.WriteFile(filepath.Join(www, "hello.php"), []byte("<?php echo \"hello\\n\";\n"), 0o644)
	fpm := testenv.StartPHPFPM(b, testenv.FPMOptions{Listen: "tcp", Children: 8, NoIni: true})
	n := runBenchNode(b, dir, benchConfig+fmt.Sprintf("[[site]]\nroot = \"www\"\n[[site.route]]\npath = \"*.php\"\nupstream = \"php\"\n"+
		"[[upstream]]\nname = \"php\"\ntargets = [\"fastcgi://%s\"]\nroot = %q\n", fpm.Address, www))
	req := []byte("GET /hello.php HTTP/1.1\r\nHost: x\r\nUser-Agent: wrk\r\n\r\n")
	const conns = 4
	var cs [conns]net.Conn
	var size int
	for i := range cs {
		c, err := net.Dial("tcp", n.Addrs()["http"])
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		c.Write(req)
		first := readOne(b, c)
		if size = len(first); !bytesContain(first, "hello\n") {
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
