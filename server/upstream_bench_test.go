package server

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkNodeWireUpstream proxies a 1 KiB GET through a route's
// [[upstream]] over a real keep-alive connection, as bench/run.sh
// upstream does with wrk; the backend runs in this process, so cpu-ns/op
// counts it too.
//
//	go test ./server -run '^$' -bench NodeWireUpstream -cpuprofile cpu.out
func BenchmarkNodeWireUpstream(b *testing.B) {
	payload := strings.Repeat("x", 1024)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		io.WriteString(w, payload)
	}))
	defer app.Close()
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "www"), 0o755)
	n := runBenchNode(b, dir, benchConfig+"[[site]]\nroot = \"www\"\n[[site.route]]\npath = \"/*\"\nupstream = \"app\"\n"+
		"[[upstream]]\nname = \"app\"\ntargets = [\""+app.URL+"\"]\n")
	conn, err := net.Dial("tcp", n.Addrs()["http"])
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	benchKeepAlive(b, n, conn, "GET /1k.bin HTTP/1.1\r\nHost: x\r\n\r\n", true) // relayed by the fast path
}
