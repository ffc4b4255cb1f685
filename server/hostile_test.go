package server_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Connection states a hostile case expects after its answers.
const (
	kept   = "kept open"
	closed = "closed"
)

// hostileCase is one line of the hostile suite: raw bytes sent to a real
// node, the statuses of the responses that must come back in order, and
// what the connection must do next: stay open (a following GET is
// answered 200) or close (nothing more is answered). A case runs on plain
// HTTP and, unless plainOnly, on HTTPS/1.1 too.
type hostileCase struct {
	name      string
	send      string
	want      []int
	conn      string // kept or closed
	plainOnly bool
}

// getIndex is a plain request every case can be followed with.
const getIndex = "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"

// hostileMaxHeader is max_header_bytes of the hostile node.
const hostileMaxHeader = 8 << 10

// headOf returns a GET of / padded with one header to exactly size bytes.
func headOf(size int) string {
	const start, end = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ", "\r\n\r\n"
	return start + strings.Repeat("a", size-len(start)-len(end)) + end
}

// hostileCases: add a line to test another attack. Statuses follow nginx
// where net/http differs from it, and net/http otherwise.
var hostileCases = []hostileCase{
	// Smuggling: both framings, and framings net/http reads otherwise
	// than a proxy in front might.
	{name: "CL and TE", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED", want: []int{400}, conn: closed},
	{name: "TE and CL", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", want: []int{400}, conn: closed},
	{name: "CL and TE on a GET", send: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []int{400}, conn: closed},
	{name: "CL and TE after a fast answer", send: getIndex + "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []int{200, 400}, conn: closed},
	{name: "CL and TE after a hand-off", send: "GET /index.html HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n" +
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []int{206, 400}, conn: closed},
	{name: "CL and TE after a chunked body", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n" +
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []int{405, 400}, conn: closed},
	{name: "CL and TE after a CL body", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []int{405, 400}, conn: closed},
	{name: "TE in HTTP/1.0", send: "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []int{400}, conn: closed},
	{name: "duplicate CL, same value", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", want: []int{405}, conn: kept},
	{name: "duplicate CL, differing", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", want: []int{400}, conn: closed},
	{name: "CL with plus sign", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", want: []int{400}, conn: closed},
	{name: "CL with minus sign", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", want: []int{400}, conn: closed},
	{name: "CL in hex", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", want: []int{400}, conn: closed},
	{name: "CL with inner space", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\nhello", want: []int{400}, conn: closed},
	{name: "CL with spaces around", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:  5 \r\n\r\nhello", want: []int{405}, conn: kept},
	{name: "chunk size not hex", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", want: []int{405}, conn: closed},
	{name: "chunk size overflow", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n", want: []int{405}, conn: closed},
	{name: "chunk size negative", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", want: []int{405}, conn: closed},
	{name: "chunk data longer than size", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", want: []int{405}, conn: closed},
	{name: "chunk extensions", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d\"\r\nhello\r\n0;z\r\n\r\n", want: []int{405}, conn: kept},
	{name: "TE not last chunked", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", want: []int{501}, conn: closed},
	{name: "TE gzip then chunked", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", want: []int{501}, conn: closed},
	{name: "TE twice", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []int{501}, conn: closed},
	{name: "TE xchunked", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", want: []int{501}, conn: closed},
	{name: "TE folded onto the next line", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\nhello", want: []int{400}, conn: closed},

	{name: "CL and TE in odd case", send: "POST / HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 5\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n", want: []int{400}, conn: closed},
	{name: "CL and TE with spaces", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding:   chunked  \r\n\r\n0\r\n\r\n", want: []int{400}, conn: closed},
	{name: "TE with space before colon", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello", want: []int{400}, conn: closed},
	{name: "CL as a list", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", want: []int{400}, conn: closed},

	// http1.Head syntax.
	{name: "bare CR in a header value", send: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", want: []int{400}, conn: closed},
	{name: "header name with a space", send: "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", want: []int{400}, conn: closed},
	{name: "obs-fold", send: "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", want: []int{400}, conn: closed},
	{name: "obs-fold with a tab", send: "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tfolded\r\n\r\n", want: []int{400}, conn: closed},
	{name: "bare LF", send: "GET /index.html HTTP/1.1\nHost: x\n\n", want: []int{200}, conn: kept},
	{name: "NUL in a header value", send: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", want: []int{400}, conn: closed},
	{name: "space before colon", send: "GET / HTTP/1.1\r\nHost : x\r\n\r\n", want: []int{400}, conn: closed},
	{name: "no Host", send: "GET / HTTP/1.1\r\n\r\n", want: []int{400}, conn: closed},
	{name: "two Hosts", send: "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", want: []int{400}, conn: closed},
	{name: "bad method", send: "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{400}, conn: closed},
	{name: "HTTP/2 preface over HTTP/1.1", send: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", want: []int{405}, conn: closed, plainOnly: true},
	{name: "absolute-form target", send: "GET http://x/index.html HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{200}, conn: kept},

	// Sizes: max_header_bytes is exact.
	{name: "head at max_header_bytes", send: headOf(hostileMaxHeader), want: []int{200}, conn: kept},
	{name: "head one byte over max_header_bytes", send: headOf(hostileMaxHeader + 1), want: []int{431}, conn: closed},
	{name: "head far over max_header_bytes", send: headOf(16 * hostileMaxHeader), want: []int{431}, conn: closed},
	{name: "request line too long", send: "GET /" + strings.Repeat("a", hostileMaxHeader) + " HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{414}, conn: closed},
	{name: "long request line within the limit", send: "GET /index.html?" + strings.Repeat("a", hostileMaxHeader/2) + " HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{200}, conn: kept},
	{name: "Expect 100-continue with a huge CL", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\nExpect: 100-continue\r\n\r\n", want: []int{413}, conn: closed},
	{name: "huge CL without a body", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n", want: []int{413}, conn: closed},

	// Paths.
	{name: "traversal %2e%2e", send: "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{400}, conn: kept},
	{name: "traversal ..", send: "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{400}, conn: kept},
	{name: "traversal %2f", send: "GET /sub%2f..%2f..%2fetc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{400}, conn: kept},
	{name: "encoded NUL", send: "GET /index.html%00.txt HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{400}, conn: kept},
	{name: "backslash traversal", send: "GET /..\\..\\etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{400}, conn: kept},

	// Ranges.
	{name: "overlong range", send: "GET /index.html HTTP/1.1\r\nHost: x\r\nRange: bytes=0-99999999999999999999\r\n\r\n", want: []int{200}, conn: kept},
	{name: "range past the end", send: "GET /index.html HTTP/1.1\r\nHost: x\r\nRange: bytes=99999-\r\n\r\n", want: []int{416}, conn: kept},
	{name: "many ranges", send: "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=" + manyRanges(600) + "\r\n\r\n", want: []int{200}, conn: kept},
}

func manyRanges(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("%d-%d", 2*i, 2*i)
	}
	return strings.Join(parts, ",")
}

// TestHostile runs every hostile case against one node over plain HTTP
// and HTTPS/1.1.
func TestHostile(t *testing.T) {
	tn := startNode(t, fmt.Sprintf("max_header_bytes = %d\nhttps = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\n", hostileMaxHeader))
	httpsAddr := tn.node.Addrs()["https"]
	for _, tc := range hostileCases {
		t.Run("http/"+tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.DialTimeout("tcp", tn.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			runHostile(t, c, tc)
		})
		if tc.plainOnly {
			continue
		}
		t.Run("https/"+tc.name, func(t *testing.T) {
			t.Parallel()
			d := &net.Dialer{Timeout: 5 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", httpsAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			runHostile(t, c, tc)
		})
	}
}

// runHostile sends tc on c, reads the answers it expects and checks the
// connection's state after them.
func runHostile(t *testing.T, c net.Conn, tc hostileCase) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	// Write while reading: the server may answer before it read it all.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		io.WriteString(c, tc.send)
	}()
	br := bufio.NewReader(c)
	for i, want := range tc.want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v (want %d)", i+1, err, want)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("response %d: status %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	switch tc.conn {
	case closed:
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := br.Read(make([]byte, 512))
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatal("connection still open: want it closed")
		case err == nil:
			t.Fatalf("more bytes after the answers (%d): want the connection closed", n)
		}
	case kept:
		<-wrote // the follow-up must not interleave with the case's bytes
		if _, err := io.WriteString(c, getIndex); err != nil {
			t.Fatalf("connection closed: want it kept open (%v)", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer on the kept connection: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("follow-up GET: %d, want 200", resp.StatusCode)
		}
	default:
		t.Fatalf("bad case: conn %q", tc.conn)
	}
}

// TestHTTPS1KeepsTLSState: requests over HTTPS/1.1, which reach net/http
// through the head rules as plain connections, still know they came over
// TLS (HSTS is only sent then).
func TestHTTPS1KeepsTLSState(t *testing.T) {
	tn := startNode(t, "https = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\nhsts = \"max-age=60\"\n")
	c, err := tls.Dial("tcp", tn.node.Addrs()["https"], &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") != "max-age=60" {
		t.Errorf("HTTPS/1.1: %d, Strict-Transport-Security %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
}
