package server_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/server"
)

// fastTLSConfig adds an https listener with a self-signed certificate,
// HSTS and HTTP/3 (whose Alt-Svc every HTTPS answer carries) to a test
// node's [server] section.
const fastTLSConfig = "https = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\nhsts = \"max-age=60\"\nhttp3 = true\n\n"

// dialTLS opens an HTTPS/1.1 connection to the node with an overall
// deadline.
func (tn *testNode) dialTLS(deadline time.Duration) *tls.Conn {
	tn.t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", tn.node.Addrs()["https"],
		&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(deadline))
	return c
}

// roundTripTLS is roundTrip over HTTPS/1.1.
func (tn *testNode) roundTripTLS(req string, head bool) rawResponse {
	tn.t.Helper()
	conn := tn.dialTLS(10 * time.Second)
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		tn.t.Fatal(err)
	}
	return readRaw(tn.t, bufio.NewReader(conn), head)
}

// TestFastPathTLSKeepAlive: on one HTTPS/1.1 connection, pipelined,
// cached files (one larger than a TLS record) are answered by the fast
// path and the rest by net/http, all in order, with r.TLS known to the
// handlers after the hand-off (HSTS on the 404).
func TestFastPathTLSKeepAlive(t *testing.T) {
	tn := startNodeIn(t, newFastSiteDir(t), fastTLSConfig+fastSiteConfig)
	conn := tn.dialTLS(10 * time.Second)
	reqs := []struct {
		target, hdr string
		status      int
		fast        bool
	}{
		{"/tiny.txt", "", 200, true},
		{"/data.bin", "", 200, true},
		{"/app.js", "", 200, true},
		{"/data.bin", "Range: bytes=2-5\r\n", 206, false},
		{"/nope.txt", "", 404, false},
		{"/tiny.txt", "", 200, false},
	}
	var b strings.Builder
	for _, r := range reqs {
		fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", r.target, r.hdr)
	}
	before := server.FastAnswered(tn.node)
	go io.WriteString(conn, b.String())
	br := bufio.NewReader(conn)
	fast := int64(0)
	for i, r := range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response %d body: %v", i+1, err)
		}
		if resp.StatusCode != r.status || resp.Header.Get("Strict-Transport-Security") != "max-age=60" {
			t.Errorf("response %d: %d, HSTS %q; want %d and HSTS", i+1, resp.StatusCode,
				resp.Header.Get("Strict-Transport-Security"), r.status)
		}
		if r.target == "/data.bin" && r.hdr == "" && len(body) != 20000 {
			t.Errorf("data.bin: %d bytes, want 20000", len(body))
		}
		if r.fast {
			fast++
		}
	}
	if got := server.FastAnswered(tn.node) - before; got != fast {
		t.Errorf("fast path answered %d, want %d", got, fast)
	}
}

// TestSelfSignedIsECDSAP256: the self-signed certificate's key is ECDSA
// P-256, whose handshakes cost a fraction of RSA's.
func TestSelfSignedIsECDSAP256(t *testing.T) {
	tn := startNode(t, "https = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\n")
	conn := tn.dialTLS(10 * time.Second)
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		t.Fatal("no certificate")
	}
	key, ok := certs[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("self-signed key is %T, want ECDSA P-256", certs[0].PublicKey)
	}
}

// TestHTTPSResumes: a client that keeps a session cache resumes its TLS
// session on its second connection, with TLS 1.3 and 1.2, and is answered
// there by the fast path.
func TestHTTPSResumes(t *testing.T) {
	tn := startNode(t, "https = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\n")
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}, MaxVersion: v,
				ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			get := func() (resumed bool) {
				t.Helper()
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tn.node.Addrs()["https"], cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				before := server.FastAnswered(tn.node)
				// TLS 1.3 tickets come after the handshake: reading the
				// answer makes the client take them.
				io.WriteString(c, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != 200 || server.FastAnswered(tn.node)-before != 1 {
					t.Errorf("status %d, fast path answered %d", resp.StatusCode, server.FastAnswered(tn.node)-before)
				}
				return c.ConnectionState().DidResume
			}
			if get() {
				t.Fatal("the first connection resumed")
			}
			if !get() {
				t.Fatal("the second connection did not resume")
			}
		})
	}
}

// TestMinSendRateHTTPSFast: a client pipelining requests for a cached file
// over HTTPS/1.1 and reading below min_send_rate is cut, though the fast
// path answers them; with the rate off it keeps its connection.
func TestMinSendRateHTTPSFast(t *testing.T) {
	for _, tc := range []struct {
		name, rate string
		cut        bool
	}{
		{"off", "0", false},
		{"above the reader's pace", "512KiB/s", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := newSiteDir(t)
			if err := os.WriteFile(filepath.Join(dir, "www", "cached.bin"), make([]byte, 200<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			tn := startNodeIn(t, dir, fmt.Sprintf("send_timeout = \"1s\"\nmin_send_rate = %q\nhttps = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\n", tc.rate))
			raw, err := net.DialTimeout("tcp", tn.node.Addrs()["https"], 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			raw.(*net.TCPConn).SetReadBuffer(4 << 10)
			c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			defer c.Close()
			// The first answer comes from net/http (the file is not cached
			// yet); the next from the fast path.
			go io.WriteString(c, strings.Repeat("GET /cached.bin HTTP/1.1\r\nHost: x\r\n\r\n", 200))
			before := server.FastAnswered(tn.node)
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
			if server.FastAnswered(tn.node) == before {
				t.Error("the fast path answered none of the requests")
			}
		})
	}
}

// TestFastPathTLSScheme: routes see HTTPS/1.1 fast requests as https: a
// header route per scheme gives each listener's fast answers its own
// header, and an http-only redirect leaves HTTPS alone.
func TestFastPathTLSScheme(t *testing.T) {
	tn := startNode(t, "https = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\n\n[[site]]\nroot = \"www\"\n"+
		"[[site.route]]\npath = \"/*\"\nscheme = \"https\"\nheaders = {\"X-Scheme\" = \"https\"}\n"+
		"[[site.route]]\npath = \"/*\"\nscheme = \"http\"\nheaders = {\"X-Scheme\" = \"http\"}\n"+
		"[[site.route]]\npath = \"/sub/*\"\nscheme = \"http\"\nredirect = \"https://{host}{uri}\"\nstatus = 308\n")
	for _, tc := range []struct {
		scheme, path string
		status       int
	}{
		{"http", "/index.html", 200},
		{"https", "/index.html", 200},
		{"https", "/sub/", 200},
		{"http", "/sub/", 308},
	} {
		t.Run(tc.scheme+tc.path, func(t *testing.T) {
			req := "GET " + tc.path + " HTTP/1.1\r\nHost: x\r\n\r\n"
			before := server.FastAnswered(tn.node)
			var r rawResponse
			if tc.scheme == "https" {
				r = tn.roundTripTLS(req, false)
			} else {
				r = tn.roundTrip(req, false)
			}
			if !strings.Contains(r.status, fmt.Sprint(tc.status)) || !slices.Contains(r.header, "X-Scheme: "+tc.scheme) {
				t.Fatalf("%s: %s %v; want %d and X-Scheme: %s", tc.path, r.status, r.header, tc.status, tc.scheme)
			}
			if fast := server.FastAnswered(tn.node)-before == 1; fast != (tc.status == 200) {
				t.Errorf("answered by the fast path: %v", fast)
			}
		})
	}
}

// TestFastPathTLSShutdown: an idle HTTPS/1.1 connection the fast path
// serves does not hold a graceful shutdown up, and is closed by it.
func TestFastPathTLSShutdown(t *testing.T) {
	tn := startNodeIn(t, newFastSiteDir(t), "shutdown_grace = \"20s\"\n"+fastTLSConfig+fastSiteConfig)
	conn := tn.dialTLS(30 * time.Second)
	before := server.FastAnswered(tn.node)
	io.WriteString(conn, "GET /tiny.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	if r := readRaw(t, br, false); string(r.body) != "tiny\n" || server.FastAnswered(tn.node)-before != 1 {
		t.Fatalf("body %q, fast answers %d", r.body, server.FastAnswered(tn.node)-before)
	}
	start := time.Now()
	if err := tn.stop(15 * time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Run took %v to return with one idle connection", el)
	}
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("idle connection after shutdown: %v, want closed", err)
	}
}

// TestFastPathTLSConcurrent: HTTPS/1.1 keep-alive connections at once,
// each asking in turn for a small file and one larger than the buffer an
// answer is gathered in (shared between connections), get every body
// whole and their own.
func TestFastPathTLSConcurrent(t *testing.T) {
	dir := newFastSiteDir(t)
	tn := startNodeIn(t, dir, fastTLSConfig+fastSiteConfig)
	want := map[string][]byte{}
	for _, name := range []string{"tiny.txt", "data.bin", "app.js"} {
		b, err := os.ReadFile(filepath.Join(dir, "www", name))
		if err != nil {
			t.Fatal(err)
		}
		want["/"+name] = b
	}
	paths := []string{"/tiny.txt", "/data.bin", "/app.js"}
	before := server.FastAnswered(tn.node)
	const conns, each = 6, 30
	errs := make(chan error, conns)
	for i := range conns {
		conn := tn.dialTLS(20 * time.Second) // here: dialTLS may end the test
		go func() {
			errs <- func() error {
				br := bufio.NewReader(conn)
				for j := range each {
					p := paths[(i+j)%len(paths)]
					if _, err := io.WriteString(conn, "GET "+p+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
						return err
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						return err
					}
					body, err := io.ReadAll(resp.Body)
					if err != nil {
						return err
					}
					if !bytes.Equal(body, want[p]) {
						return fmt.Errorf("%s: %d bytes, not the file's %d", p, len(body), len(want[p]))
					}
				}
				return nil
			}()
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := server.FastAnswered(tn.node) - before; got != conns*each {
		t.Errorf("fast path answered %d of %d", got, conns*each)
	}
}
