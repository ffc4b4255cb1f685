// Command tlsnew is bench/run.sh's load generator for new TLS connections:
// each of -c workers loops opening a TLS 1.3 connection (no session cache,
// so every handshake is a full one), sending one GET with Connection:
// close, reading the response to EOF and starting over, for -d. wrk and
// h2load keep connections open, and openssl s_time runs one connection at
// a time, so neither measures a server's handshake rate under load.
//
// It prints one line, as run.sh's other runners do:
//
//	requests bad seconds p99-milliseconds
//
// where bad counts failed handshakes, errors and non-2xx answers.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	target := flag.String("url", "", "https://host:port/path to GET")
	workers := flag.Int("c", 16, "connections in flight at once")
	dur := flag.Duration("d", 3*time.Second, "how long to run")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		fmt.Fprintln(os.Stderr, "tlsnew: -url must be https://host:port/path")
		os.Exit(2)
	}
	res := run(u, *workers, *dur)
	fmt.Printf("%d %d %.3f %.2f\n", res.reqs, res.bad, res.secs, res.p99ms)
}

type result struct {
	reqs, bad int
	secs      float64
	p99ms     float64
}

// config is a client as a browser on first visit: TLS 1.3, X25519 only
// (Go's default would add a post-quantum hybrid that nginx built on
// OpenSSL 3.0 cannot use, making the servers do different work), no
// session cache. Certificates are not verified: the client's CPU is the
// bench's limit, not the thing measured.
func config(host string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		NextProtos:         []string{"http/1.1"},
		ServerName:         host,
		InsecureSkipVerify: true,
	}
}

func run(u *url.URL, workers int, dur time.Duration) result {
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nConnection: close\r\n\r\n"
	cfg := config(u.Hostname())
	start := time.Now()
	end := start.Add(dur)
	var (
		mu    sync.Mutex
		total result
		lats  []time.Duration
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ok, bad int
			var mine []time.Duration
			for time.Now().Before(end) {
				t0 := time.Now()
				if err := once(u.Host, cfg, req); err != nil {
					bad++
					continue
				}
				ok++
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			total.reqs += ok + bad
			total.bad += bad
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.secs = time.Since(start).Seconds()
	if len(lats) > 0 {
		slices.Sort(lats)
		total.p99ms = float64(lats[len(lats)*99/100]) / float64(time.Millisecond)
	}
	return total
}

// once makes one connection, one request; an error for anything but a 2xx
// answer read to the end.
func once(addr string, cfg *tls.Config, req string) error {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer raw.Close()
	if err := raw.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return fmt.Errorf("deadline: %w", err)
	}
	conn := tls.Client(raw, cfg)
	if _, err := io.WriteString(conn, req); err != nil {
		return fmt.Errorf("handshake or write: %w", err)
	}
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("status line: %w", err)
	}
	if f := strings.Fields(status); len(f) < 2 || !strings.HasPrefix(f[1], "2") {
		return fmt.Errorf("status %q", strings.TrimSpace(status))
	}
	// The server closes after the response (Connection: close): reading
	// to EOF leaves its TIME_WAIT on the server's side, not on the
	// client's ephemeral ports.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return nil
}
