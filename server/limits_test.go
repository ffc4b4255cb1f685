package server_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"shoal/server/config"
)

func TestMaxHeaderBytes(t *testing.T) {
	cases := []struct {
		name   string
		limit  string // "" keeps the default, 64KiB
		header int    // bytes of one header value
		want   int
	}{
		{"small header under default", "", 1 << 10, 200},
		{"60KiB under default", "", 60 << 10, 200},
		{"twice the default", "", 128 << 10, 431},
		{"1MiB against default", "", 1 << 20, 431},
		{"under 4KiB limit", "4KiB", 2 << 10, 200},
		{"far over 4KiB limit", "4KiB", 32 << 10, 431},
	}
	nodes := map[string]*testNode{}
	for _, tc := range cases {
		if nodes[tc.limit] == nil {
			cfg := ""
			if tc.limit != "" {
				cfg = fmt.Sprintf("max_header_bytes = %q\n", tc.limit)
			}
			nodes[tc.limit] = startNode(t, cfg)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tn := nodes[tc.limit]
			conn := tn.dial(10 * time.Second)
			// Write while reading: the server may answer before it has
			// read the whole header block.
			go fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", tc.header))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%d-byte header with limit %q: %d, want %d", tc.header, tc.limit, resp.StatusCode, tc.want)
			}
		})
	}
}

func TestMaxBodyBytes(t *testing.T) {
	tn := startNode(t, "max_body_bytes = \"1KiB\"\n")
	cases := []struct {
		name string
		size int
		want int
	}{
		{"under the limit", 512, http.StatusMethodNotAllowed}, // static files take no POST
		{"at the limit", 1024, http.StatusMethodNotAllowed},
		{"over the limit", 1025, http.StatusRequestEntityTooLarge},
		{"far over the limit", 64 << 10, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Post(tn.url+"/index.html", "application/octet-stream", strings.NewReader(strings.Repeat("x", tc.size)))
			if err != nil {
				t.Fatalf("POST %d bytes: %v", tc.size, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("POST %d bytes: %d, want %d", tc.size, resp.StatusCode, tc.want)
			}
		})
	}
}

// TestBodyTooLargeBeforeReading: a Content-Length over max_body_bytes gets
// 413 at once, without the body being sent, also with Expect:
// 100-continue (the client must not be told to go on).
func TestBodyTooLargeBeforeReading(t *testing.T) {
	tn := startNode(t, "max_body_bytes = \"1MiB\"\n")
	for _, expect := range []string{"", "Expect: 100-continue\r\n"} {
		for _, method := range []string{"POST", "PUT"} {
			name := method + " " + strings.TrimSpace(expect)
			conn := tn.dial(5 * time.Second)
			fmt.Fprintf(conn, "%s /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10737418240\r\n%s\r\n", method, expect)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: no response without a body: %v", name, err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("%s: 413 body: %v", name, err)
			}
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("%s: status %d, want 413", name, resp.StatusCode)
			}
			// The connection must not be left waiting for 10 GiB.
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("%s: more bytes after the 413", name)
			} else if !closedByPeer(err) {
				t.Errorf("%s: connection not closed after 413: %v", name, err)
			}
		}
	}
}

// TestBodyTooLargeLingering: a client that sends a large body without
// waiting (no Expect: 100-continue, as browsers and `curl -H Expect:` do)
// and reads the answer only after its writes fail must still find the 413:
// the server must answer before closing, not just drop the connection.
func TestBodyTooLargeLingering(t *testing.T) {
	tn := startNode(t, "max_body_bytes = \"1MiB\"\n")
	const size = 64 << 20
	conn := tn.dial(20 * time.Second)
	fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
	chunk := make([]byte, 64<<10)
	var sent int64
	var werr error
	for sent < size && werr == nil {
		var n int
		n, werr = conn.Write(chunk)
		sent += int64(n)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no 413 for a client that sent its whole body first (sent %d of %d bytes, write error %v): %v", sent, size, werr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
}

// TestTrickledBodyUnread: a request whose body stalls must not hold the
// connection beyond body_timeout, also when the handler never reads the
// body (a POST to a static file): net/http then reads the rest of the body
// itself, before it sends the response, with no deadline of its own.
func TestTrickledBodyUnread(t *testing.T) {
	tn := startNode(t, "body_timeout = \"300ms\"\nidle_timeout = \"1s\"\n")
	cases := []struct {
		name, head, body string
	}{
		{"content-length", "POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "0123456789"},
		{"chunked", "POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n"},
		{"get with body", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "0123456789"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := tn.dial(3 * time.Second)
			fmt.Fprint(conn, tc.head+tc.body) // then the client stalls
			start := time.Now()
			_, err := io.Copy(io.Discard, conn) // a response, if any, then the close
			if isTimeout(err) {
				t.Fatalf("connection with a stalled body still open after %v (body_timeout 300ms)", time.Since(start))
			}
		})
	}
}

// TestSlowloris: a client trickling its header lines is cut off after
// read_header_timeout and the node keeps serving others.
func TestSlowloris(t *testing.T) {
	tn := startNode(t, "read_header_timeout = \"300ms\"\n")
	conn := tn.dial(10 * time.Second)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n")
		for i := 0; i < 200; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond): // the attack's pace
			}
			if _, err := fmt.Fprintf(conn, "X-%d: y\r\n", i); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	buf := make([]byte, 4096)
	var err error
	for err == nil {
		_, err = conn.Read(buf) // a 408 or nothing, then the close
	}
	el := time.Since(start)
	if isTimeout(err) {
		t.Fatalf("connection still open after %v", el)
	}
	if el < 250*time.Millisecond || el > 3*time.Second {
		t.Errorf("closed after %v, want about 300ms", el)
	}
	if resp, _ := tn.get("/", ""); resp.StatusCode != 200 {
		t.Errorf("node not serving after slowloris: %d", resp.StatusCode)
	}
}

// TestIdleTimeout: a keep-alive connection with nothing to do is closed
// after idle_timeout.
func TestIdleTimeout(t *testing.T) {
	tn := startNode(t, "idle_timeout = \"300ms\"\n")
	resp, br := tn.getKeepAlive(10 * time.Second)
	if resp.Close {
		t.Fatal("server closed the connection after the first response; want keep-alive")
	}
	start := time.Now()
	_, err := br.ReadByte()
	el := time.Since(start)
	if err == nil || isTimeout(err) {
		t.Fatalf("idle connection not closed within %v: %v", el, err)
	}
	if el < 250*time.Millisecond || el > 3*time.Second {
		t.Errorf("closed after %v, want about 300ms", el)
	}
}

// TestSendTimeout: a client that stops reading a large file is cut off
// after send_timeout instead of holding the connection.
func TestSendTimeout(t *testing.T) {
	tn := startNode(t, "send_timeout = \"300ms\"\n")
	conn := tn.dial(20 * time.Second)
	fmt.Fprintf(conn, "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReaderSize(conn, 4<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the stalled reader this test is about
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && n+0 >= bigSize {
		t.Fatalf("stalled reader got the whole file (%d bytes); want the connection cut", n)
	}
	if isTimeout(err) {
		t.Fatalf("connection still open after a stall of more than send_timeout (%d bytes read)", n)
	}
}

// TestSlowSteadyDownload: a slow reader that keeps reading is not cut off
// by send_timeout even when the whole download takes longer than it.
func TestSlowSteadyDownload(t *testing.T) {
	tn := startNode(t, "send_timeout = \"500ms\"\n")
	conn := tn.dial(30 * time.Second)
	conn.(*net.TCPConn).SetReadBuffer(16 << 10)
	fmt.Fprintf(conn, "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-2097151\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	start := time.Now()
	var got int64
	buf := make([]byte, 64<<10)
	for i := 0; i < 1000; i++ {
		n, err := io.ReadFull(resp.Body, buf)
		got += int64(n)
		if err != nil {
			break
		}
		time.Sleep(40 * time.Millisecond) // slow but steady
	}
	if got != 2<<20 {
		t.Fatalf("slow download cut at %d bytes after %v", got, time.Since(start))
	}
	if el := time.Since(start); el < 500*time.Millisecond {
		t.Errorf("download took only %v: not slower than send_timeout, proves nothing", el)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// closedByPeer reports whether err means the other side closed.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// TestTrickledBodyToCGI: a script's request body that stops arriving is cut
// off after body_timeout with 408, whether the body is read before the
// script starts (form-sized) or streamed to it (larger), and the node
// keeps serving.
func TestTrickledBodyToCGI(t *testing.T) {
	dir := newSiteDir(t)
	cgiDir := filepath.Join(dir, "cgi-bin")
	if err := os.Mkdir(cgiDir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\ncat >/dev/null\nprintf 'Content-Type: text/plain\\n\\nread all\\n'\n"
	if err := os.WriteFile(filepath.Join(cgiDir, "eat.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tn := startNodeIn(t, dir, "body_timeout = \"300ms\"\n[[site]]\nroot = \"www\"\n[[site.cgi]]\nprefix = \"/cgi-bin/\"\ndir = \"cgi-bin\"\n")
	for _, length := range []int{100, 1 << 20} {
		conn := tn.dial(5 * time.Second)
		fmt.Fprintf(conn, "POST /cgi-bin/eat.sh HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n0123456789", length)
		start := time.Now()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("length %d: no response to a stalled body: %v", length, err)
		}
		resp.Body.Close()
		conn.Close()
		// A streamed body may already have started the script, whose
		// headers then cannot change: then the connection is cut instead.
		if length == 100 && resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("length %d: status %d, want 408", length, resp.StatusCode)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("length %d: answered after %v (body_timeout 300ms)", length, took)
		}
	}
	if resp, body := tn.get("/index.html", ""); resp.StatusCode != 200 {
		t.Fatalf("node not serving after stalled bodies: %d %q", resp.StatusCode, body)
	}
}

// dialFrom opens a raw connection to addr from the loopback address src
// (127.0.0.2 plays another host: the cap counts per address).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from %s (no 127.0.0.0/8 on lo?): %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedAtOnce reports whether the server closes c within d without
// sending a byte.
func closedAtOnce(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 64))
	return n == 0 && closedByPeer(err)
}

// TestMaxConnsPerIP: beyond max_conns_per_ip, counted over the http and
// https listeners together, a new connection from that address is closed
// at once while other addresses are served; a closed one frees its place.
func TestMaxConnsPerIP(t *testing.T) {
	tn := startNode(t, "max_conns_per_ip = 4\ntrusted_proxies = [\"127.0.0.3\"]\nhttps = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\n")
	httpsAddr := tn.node.Addrs()["https"]
	var held []net.Conn
	for i := 0; i < 4; i++ {
		addr := tn.addr
		if i%2 == 1 {
			addr = httpsAddr
		}
		c := dialFrom(t, "127.0.0.2", addr)
		if i%2 == 1 {
			c = tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		}
		// Served once, so the node has accepted (and counted) it before
		// the one over the cap comes: the kernel completes a handshake
		// before the listener's Accept.
		fmt.Fprintf(c, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection %d not served: %v", i+1, err)
		}
		held = append(held, c)
	}
	for _, addr := range []string{tn.addr, httpsAddr} {
		if c := dialFrom(t, "127.0.0.2", addr); !closedAtOnce(c, 2*time.Second) {
			t.Errorf("connection over the cap to %s not closed at once", addr)
		}
	}
	if resp, _ := tn.get("/index.html", ""); resp.StatusCode != 200 {
		t.Fatalf("another address refused: %d", resp.StatusCode)
	}
	for i := 0; i < 6; i++ { // a trusted proxy carries many clients
		c := dialFrom(t, "127.0.0.3", tn.addr)
		fmt.Fprintf(c, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("trusted proxy's connection %d refused: %v", i+1, err)
		}
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dialFrom(t, "127.0.0.2", tn.addr)
		fmt.Fprintf(c, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection did not free its place: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // poll until the server saw the close
	}
}

// streamScript is a CGI script that streams big.bin through net/http's
// Write path (no sendfile, so send_timeout alone is moved forward by each
// write).
func streamScript(t *testing.T, dir string) {
	t.Helper()
	cgiDir := filepath.Join(dir, "cgi-bin")
	if err := os.MkdirAll(cgiDir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\nexec cat '" +
		filepath.Join(dir, "www", "big.bin") + "'\n"
	if err := os.WriteFile(filepath.Join(cgiDir, "stream.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

const cgiSite = "[[site]]\nroot = \"www\"\n[[site.cgi]]\nprefix = \"/cgi-bin/\"\ndir = \"cgi-bin\"\n"

// readSlowly reads c's response at about 64 KiB/s for at most d and
// returns the bytes read and the error that ended it (nil: still open).
// A TLS connection's caller makes its socket's read buffer small itself.
func readSlowly(c net.Conn, d time.Duration) (int64, error) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10)
	}
	end := time.Now().Add(d)
	var got int64
	buf := make([]byte, 4<<10)
	for time.Now().Before(end) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		got += int64(n)
		if err != nil {
			return got, err
		}
		time.Sleep(60 * time.Millisecond) // the slow reader's pace
	}
	return got, nil
}

// TestMinSendRate: a client that reads steadily but below min_send_rate
// is cut after about two windows of send_timeout; with the rate off, the
// same client holds its connection (every write moves send_timeout).
func TestMinSendRate(t *testing.T) {
	cases := []struct {
		name string
		rate string
		cut  bool
	}{
		{"off", "0", false},
		{"above the reader's pace", "512KiB/s", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := newSiteDir(t)
			streamScript(t, dir)
			tn := startNodeIn(t, dir, fmt.Sprintf("send_timeout = \"1s\"\nmin_send_rate = %q\n", tc.rate)+cgiSite)
			c := tn.dial(30 * time.Second)
			fmt.Fprintf(c, "GET /cgi-bin/stream.sh HTTP/1.1\r\nHost: x\r\n\r\n")
			start := time.Now()
			got, err := readSlowly(c, 6*time.Second)
			switch {
			case tc.cut && err == nil:
				t.Fatalf("slow reader not cut after %v (%d bytes)", time.Since(start), got)
			case tc.cut && !closedByPeer(err):
				t.Fatalf("slow reader ended by %v, want the server's close", err)
			case !tc.cut && err != nil:
				t.Fatalf("reader cut after %v (%d bytes) with the rate off: %v", time.Since(start), got, err)
			}
		})
	}
}

// TestSlowClientsTogether: slowloris, slow bodies, slow readers and
// connections over the cap, all from one address at once, while another
// address keeps getting answers; the slow headers and readers are cut.
func TestSlowClientsTogether(t *testing.T) {
	dir := newSiteDir(t)
	streamScript(t, dir)
	tn := startNodeIn(t, dir, "max_conns_per_ip = 12\nread_header_timeout = \"1s\"\nsend_timeout = \"1s\"\n"+
		"min_send_rate = \"256KiB/s\"\n"+cgiSite)
	stop := make(chan struct{})
	var attackers sync.WaitGroup
	t.Cleanup(func() { close(stop); attackers.Wait() })
	trickle := func(c net.Conn, first string, each func(i int) string) {
		attackers.Add(1)
		go func() {
			defer attackers.Done()
			io.WriteString(c, first)
			for i := 0; i < 100; i++ {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond): // the attack's pace
				}
				if _, err := io.WriteString(c, each(i)); err != nil {
					return
				}
			}
		}()
	}
	var loris, readers []net.Conn
	for i := 0; i < 4; i++ {
		c := dialFrom(t, "127.0.0.2", tn.addr)
		loris = append(loris, c)
		trickle(c, "GET / HTTP/1.1\r\nHost: x\r\n", func(i int) string { return fmt.Sprintf("X-%d: y\r\n", i) })
	}
	for i := 0; i < 4; i++ {
		c := dialFrom(t, "127.0.0.2", tn.addr)
		trickle(c, "POST /cgi-bin/stream.sh HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", func(int) string { return "x" })
	}
	for i := 0; i < 4; i++ {
		c := dialFrom(t, "127.0.0.2", tn.addr)
		fmt.Fprintf(c, "GET /cgi-bin/stream.sh HTTP/1.1\r\nHost: x\r\n\r\n")
		readers = append(readers, c)
	}
	type result struct {
		got int64
		err error
	}
	cut := make(chan result, len(readers))
	for _, c := range readers {
		go func() {
			got, err := readSlowly(c, 10*time.Second)
			cut <- result{got, err}
		}()
	}
	for i := 0; i < 5; i++ {
		if c := dialFrom(t, "127.0.0.2", tn.addr); !closedAtOnce(c, 2*time.Second) {
			t.Errorf("connection %d over the cap not closed at once", i+1)
		}
	}
	for i := 0; i < 20; i++ {
		start := time.Now()
		path := "/index.html"
		if i%5 == 0 {
			path = "/big.bin"
		}
		if resp, _ := tn.get(path, ""); resp.StatusCode != 200 {
			t.Fatalf("GET %s from another address during the attack: %d", path, resp.StatusCode)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("GET %s from another address took %v during the attack", path, took)
		}
	}
	for range readers {
		if r := <-cut; !closedByPeer(r.err) {
			t.Errorf("slow reader not cut (%d bytes, %v)", r.got, r.err)
		}
	}
	for i, c := range loris {
		if !closedAtOnce(c, 3*time.Second) {
			t.Errorf("slowloris %d still open past read_header_timeout", i)
		}
	}
}

func TestParseRate(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true},
		{"0", 0, true},
		{"512/s", 512, true},
		{"1KiB/s", 1 << 10, true},
		{"2 MiB/s", 2 << 20, true},
		{"1KiB", 0, false},
		{"1KiB/m", 0, false},
		{"-1KiB/s", 0, false},
		{"/s", 0, false},
	}
	for _, tc := range cases {
		got, err := config.ParseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
