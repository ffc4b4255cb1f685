package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"shoal/internal/forward"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFront is one 1 KiB GET over a keep-alive connection through
// the upstream, with net/http in front (ServeHTTP) and with a bare
// HTTP/1.1 loop in front (Relay into a WireSink on the connection), as a
// server's fast path would call it. The backend and the client run in
// this process too: compare the two, not with other benchmarks.
//
//	go test ./handlers/upstream -run '^$' -bench Front
func BenchmarkFront(b *testing.B) {
	payload := strings.Repeat("x", 1024)
	app := backend(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		io.WriteString(w, payload)
	})
	u, err := New(Options{Name: "bench", Targets: []string{app.URL}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { u.Close() })
	h := u.Handler(Site{})
	b.Run("net/http", func(b *testing.B) {
		fe := httptest.NewServer(h)
		defer fe.Close()
		benchFront(b, fe.Listener.Addr().String())
	})
	b.Run("relay", func(b *testing.B) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		go relayLoop(l, h)
		benchFront(b, l.Addr().String())
	})
}

// relayLoop serves each connection of l with Relay: a minimal HTTP/1.1
// front that trusts its client.
func relayLoop(l net.Listener, h *Handler) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReaderSize(c, 4096)
			sink := &forward.WireSink{W: c}
			for {
				head, err := readHeadBlock(br)
				if err != nil {
					return
				}
				line, lines, _ := strings.Cut(head, "\r\n")
				method, rest, _ := strings.Cut(line, " ")
				target, _, _ := strings.Cut(rest, " ")
				in := Inbound{Method: method, Target: target, Host: "bench", Lines: lines, ClientIP: "127.0.0.1"}
				if wrote, err := h.Relay(context.Background(), &in, sink); !wrote || err != nil || !sink.Keep {
					return
				}
			}
		}()
	}
}

// readHeadBlock reads up to and including the blank line.
func readHeadBlock(br *bufio.Reader) (string, error) {
	for n := 0; ; {
		b, err := br.Peek(br.Buffered())
		if i := strings.Index(string(b[n:]), "\r\n\r\n"); i >= 0 {
			s := string(b[:n+i+4])
			br.Discard(n + i + 4)
			return s, nil
		}
		n = max(len(b)-3, 0)
		if _, err = br.Peek(len(b) + 1); err != nil {
			return "", err
		}
	}
}

// benchFront sends GETs on one keep-alive connection and reads each
// answer whole.
func benchFront(b *testing.B, addr string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("GET /1k HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n")
	conn.Write(req)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	buf := make([]byte, 64<<10)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := io.ReadFull(res.Body, buf[:1024]); n != 1024 {
			b.Fatalf("%d bytes", n)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
