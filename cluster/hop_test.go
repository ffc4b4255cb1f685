package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// peerListener serves peer TLS and plain HTTP on one socket, as shoal's
// plain-HTTP listener does: a connection whose first byte opens a TLS
// handshake gets the peer configuration. Without peer TLS it is ln.
func peerListener(ln net.Listener, c *Cluster) net.Listener {
	cfg := c.PeerServerConfig()
	if cfg == nil {
		return ln
	}
	s := &sniffListener{Listener: ln, cfg: cfg, conns: make(chan net.Conn), done: make(chan struct{})}
	go s.loop()
	return s
}

type sniffListener struct {
	net.Listener
	cfg   *tls.Config
	conns chan net.Conn
	done  chan struct{}
}

func (s *sniffListener) loop() {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			close(s.done)
			return
		}
		go s.sniff(c)
	}
}

func (s *sniffListener) sniff(c net.Conn) {
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := br.Peek(1)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return
	}
	var out net.Conn = &bufConn{Conn: c, r: br}
	if b[0] == 0x16 {
		out = tls.Server(out, s.cfg)
	}
	select {
	case s.conns <- out:
	case <-s.done:
		out.Close()
	}
}

func (s *sniffListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// frozenPeer accepts connections and never answers, as a peer stopped by
// SIGSTOP does (the kernel still completes the TCP handshake). It reports
// how many connections it holds.
func frozenPeer(t *testing.T) (url string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = &atomic.Int64{}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			conns.Add(1)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String(), conns
}

// routes records how the node routed each request.
type routes struct {
	mu   sync.Mutex
	list []Route
}

func (rs *routes) observe(_ *http.Request, rt Route) {
	rs.mu.Lock()
	rs.list = append(rs.list, rt)
	rs.mu.Unlock()
}

func (rs *routes) last() Route {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.list) == 0 {
		return Route{}
	}
	return rs.list[len(rs.list)-1]
}

// timedGet is a GET that gives up after d, so a hang fails the test
// instead of stalling it.
func timedGet(t *testing.T, url string, d time.Duration) (string, time.Duration, error) {
	t.Helper()
	c := &http.Client{Timeout: d}
	start := time.Now()
	res, err := c.Get(url)
	if err != nil {
		return "", time.Since(start), err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return strings.TrimSpace(string(b)), time.Since(start), err
}

// A peer that accepted the connection and froze costs a client at most
// peer_timeout: the attempt is cancelled and the GET served elsewhere.
func TestPeerTimeoutRetriesElsewhere(t *testing.T) {
	for _, peerTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[peerTLS], func(t *testing.T) {
			const timeout = 400 * time.Millisecond
			frozen, conns := frozenPeer(t)
			var rs routes
			a := startNode(t, "n0", nil, func(o *Options) {
				o.PeerTimeout, o.PeerTLS, o.Observe = timeout, peerTLS, rs.observe
				o.Timings.StaleAfter = time.Hour // only the timeout may end the attempt
			})
			b := startNode(t, "n1", []string{a.c.GossipAddr()}, func(o *Options) {
				o.PeerURL, o.PeerTLS = frozen, peerTLS
				o.Timings.StaleAfter = time.Hour
			})
			nodes := []*testNode{a, b}
			converged(t, nodes...)
			full(t, nodes, a)
			body, took, err := timedGet(t, a.url+"/x", 5*time.Second)
			if err != nil {
				t.Fatalf("GET through a frozen peer: %v after %v", err, took)
			}
			if body != a.name || took > timeout+time.Second {
				t.Fatalf("served by %q after %v, want %s within peer_timeout %v plus a margin", body, took, a.name, timeout)
			}
			if conns.Load() == 0 {
				t.Fatal("the frozen peer was never tried")
			}
			if rt := rs.last(); rt.Retries != 1 || len(rt.FailedPeers) != 1 || rt.FailedPeers[0] != b.name {
				t.Fatalf("route %+v, want one retry after %s failed", rt, b.name)
			}
		})
	}
}

// An attempt in flight at a peer that turns suspect (its load reports
// stop) is cancelled at once and the GET retried, long before
// peer_timeout.
func TestSuspectPeerCancelsAttempts(t *testing.T) {
	frozen, conns := frozenPeer(t)
	a := startNode(t, "n0", nil, func(o *Options) { o.PeerTimeout = time.Minute })
	b := startNode(t, "n1", []string{a.c.GossipAddr()}, func(o *Options) { o.PeerURL = frozen })
	nodes := []*testNode{a, b}
	converged(t, nodes...)
	full(t, nodes, a)

	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		body, _, err := timedGet(t, a.url+"/x", 20*time.Second)
		done <- result{body, err}
	}()
	eventually(t, 5*time.Second, "attempt in flight at the frozen peer", func() bool { return conns.Load() > 0 })
	froze := time.Now()
	b.crash() // its gossip stops too, as a stopped process's does
	r := <-done
	took := time.Since(froze)
	if r.err != nil || r.body != a.name {
		t.Fatalf("got %q, %v", r.body, r.err)
	}
	// StaleAfter is 1s in the tests; the watch runs every 100ms.
	if limit := fastTimings.StaleAfter + time.Second; took > limit {
		t.Fatalf("answered %v after the peer froze, want within %v (suspect), not peer_timeout", took, limit)
	}
}

func TestPeerTLSProxies(t *testing.T) {
	nodes := startCluster(t, 2, func(o *Options) { o.PeerTLS = true })
	a, b := nodes[0], nodes[1]
	full(t, nodes, a)
	var conn *tls.ConnectionState // net/http shares one per connection
	for i := 0; i < 3; i++ {
		if _, body := get(t, a.url+"/x?i=1"); body != b.name {
			t.Fatalf("served by %q, want %s over peer TLS", body, b.name)
		}
		r := b.lastReq.Load()
		if i > 0 && r.TLS != conn {
			t.Fatalf("request %d took a new peer connection", i)
		}
		conn = r.TLS
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != a.name {
			t.Fatalf("the hop did not come over peer TLS from %s: %+v", a.name, r.TLS)
		}
		if r.TLS.Version != tls.VersionTLS13 {
			t.Fatalf("peer TLS version %x", r.TLS.Version)
		}
	}
	// A POST takes net/http's transport, over peer TLS too.
	res, err := testClient.Post(a.url+"/x", "text/plain", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.Header.Get("X-Node") != b.name || b.lastReq.Load().TLS == nil {
		t.Fatalf("POST served by %q (TLS %v)", res.Header.Get("X-Node"), b.lastReq.Load().TLS != nil)
	}
}

// With peer TLS, a hop header counts only on a peer TLS connection: one
// sent in the clear (captured, or forged by someone holding a signature)
// is a client's header, stripped.
func TestPeerTLSHopOnlyOverPeerTLS(t *testing.T) {
	nodes := startCluster(t, 2, func(o *Options) { o.PeerTLS = true })
	a, b := nodes[0], nodes[1]
	host := b.ln.Addr().String()
	send := func(c *http.Client) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", b.url+"/x", nil)
		req.Header.Set(hopHeader, a.c.keys.hopValue("GET", host, "/x", b.name, a.name, "192.0.2.9:1", time.Now()))
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	if res := send(testClient); res.Header.Get(loadHeader) != "" || res.Header.Get("X-Seen-Remote") == "192.0.2.9:1" {
		t.Fatal("a hop header sent in the clear was honoured")
	}
	peer := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return a.c.peerTLS.dial(ctx, &net.Dialer{}, network, addr)
	}}}
	if res := send(peer); res.Header.Get(loadHeader) == "" || res.Header.Get("X-Seen-Remote") != "192.0.2.9:1" {
		t.Fatal("a hop over peer TLS was not honoured")
	}
}

// A new connection to a peer resumes the TLS session: no certificate
// signatures, and the certificate is still checked (VerifyConnection runs
// on resumption too).
func TestPeerTLSResumes(t *testing.T) {
	b := startCluster(t, 1, func(o *Options) { o.PeerTLS = true })[0]
	own, err := newPeerTLS(testSecret, "friend")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true} {
		c, err := own.dial(t.Context(), &net.Dialer{}, "tcp", b.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// The session ticket comes after the handshake: read a response.
		io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		io.ReadAll(c)
		if got := c.(*tls.Conn).ConnectionState().DidResume; got != want {
			t.Fatalf("connection %d: resumed %v, want %v", i, got, want)
		}
		c.Close()
	}
}

// Nobody without the secret gets past the handshake, either way.
func TestPeerTLSStrangerRefused(t *testing.T) {
	nodes := startCluster(t, 1, func(o *Options) { o.PeerTLS = true })
	b := nodes[0]
	other, err := newPeerTLS([]byte("ffffffffffffffffffffffffffffffff"), "stranger")
	if err != nil {
		t.Fatal(err)
	}
	own, err := newPeerTLS(testSecret, "friend")
	if err != nil {
		t.Fatal(err)
	}
	noCert := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{peerALPN, "http/1.1"}}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"no certificate", noCert, false},
		{"other secret", other.client, false},
		{"self-signed", selfSigned(t), false},
		{"same secret", own.client, true},
	} {
		got, err := rawTLSGet(b.ln.Addr().String(), tc.cfg)
		switch {
		case tc.ok && !strings.HasPrefix(got, "HTTP/1.1 200"):
			t.Errorf("%s: refused: %q %v", tc.name, got, err)
		case !tc.ok && got != "":
			t.Errorf("%s: got an answer: %q", tc.name, got)
		case !tc.ok && err == nil:
			t.Errorf("%s: no handshake error", tc.name)
		}
	}
	// And this node does not talk to a stranger's listener.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", other.server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	_, err = b.c.peerTLS.dial(t.Context(), &net.Dialer{}, "tcp", ln.Addr().String())
	if !errors.Is(err, errStrangerCert) {
		t.Fatalf("dial to a stranger: %v, want %v", err, errStrangerCert)
	}
}

// rawTLSGet sends one GET over TLS with cfg and returns what came back.
func rawTLSGet(addr string, cfg *tls.Config) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// selfSigned is a client certificate made by a stranger for itself.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	p, err := newPeerTLS([]byte("0000000000000000"), "x")
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.client.Clone()
	cfg.VerifyConnection = nil
	return cfg
}

// Nothing the hop forwards carries both Content-Length and
// Transfer-Encoding (RFC 9112 6.1: such a message is a smuggling vector),
// in either direction.
func TestForwardNeverCLAndTE(t *testing.T) {
	peerURL, raw := rawPeer(t)
	a := startNode(t, "n0", nil)
	b := startNode(t, "n1", []string{a.c.GossipAddr()}, func(o *Options) { o.PeerURL = peerURL })
	nodes := []*testNode{a, b}
	converged(t, nodes...)
	full(t, nodes, a)
	for _, req := range []string{
		"POST /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
	} {
		c, err := net.Dial("tcp", a.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		got, err := io.ReadAll(c) // the response as sent, not as a parser sees it
		c.Close()
		line := strings.SplitN(req, "\r\n", 2)[0]
		if err != nil || !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
			t.Fatalf("%s: %q %v", line, got, err)
		}
		if head := <-raw.heads; bothCLAndTE(head) {
			t.Errorf("%s: the peer got both Content-Length and Transfer-Encoding:\n%s", line, head)
		}
		if head, _, _ := strings.Cut(string(got), "\r\n\r\n"); bothCLAndTE(head) {
			t.Errorf("%s: the client got both Content-Length and Transfer-Encoding:\n%s", line, head)
		}
	}
}

func bothCLAndTE(head string) bool {
	h := strings.ToLower(head)
	return strings.Contains(h, "\r\ncontent-length:") && strings.Contains(h, "\r\ntransfer-encoding:")
}

// rawPeerLog is what a raw peer saw: each request's header block.
type rawPeerLog struct{ heads chan string }

// rawPeer answers every request with a response carrying both
// Content-Length and Transfer-Encoding (chunked), as a broken or hostile
// backend might, and reports each request's header block.
func rawPeer(t *testing.T) (string, *rawPeerLog) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	log := &rawPeerLog{heads: make(chan string, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var seen bytes.Buffer // the bytes as they came, before any parsing
				br := bufio.NewReader(io.TeeReader(c, &seen))
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					head, _, _ := strings.Cut(seen.String(), "\r\n\r\n")
					io.Copy(io.Discard, req.Body)
					seen.Reset()
					log.heads <- head
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), log
}

// Attempts in flight together that all hit peer_timeout are one failure
// of the peer, not one each: counted each, the backoff doubled to its
// ceiling (Unhealthy x 16) and kept a peer that had merely been slow once
// out of the rotation long after (the scale bench's 2-node cluster served
// no more than one node).
func TestConcurrentTimeoutsOneFailure(t *testing.T) {
	const timeout, batch = time.Second, 6
	a := startNode(t, "n0", nil, func(o *Options) { o.PeerTimeout = timeout })
	b := startNode(t, "n1", []string{a.c.GossipAddr()})
	nodes := []*testNode{a, b}
	converged(t, nodes...)
	full(t, nodes, a)
	var wg sync.WaitGroup
	for range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Slower than peer_timeout at b; retried and served at a.
			if _, _, err := timedGet(t, a.url+"/x?sleep=1200", 10*time.Second); err != nil {
				t.Errorf("GET: %v", err)
			}
		}()
	}
	wg.Wait()
	m := a.c.peer(b.name)
	if m == nil {
		t.Fatalf("%s not a live peer of %s", b.name, a.name)
	}
	if n := m.fails.Load(); n != 1 {
		t.Fatalf("%d failures counted for %d attempts in flight together, want 1", n, batch)
	}
	stale := a.c.opts.Timings.staleAfter()
	eventually(t, fastTimings.Unhealthy+2*time.Second, "the peer available again after one backoff", func() bool {
		return m.available(time.Now().UnixNano(), stale)
	})
}

// The hop keeps its connections to a peer: sequential GETs and a POST
// with a body, plain and over peer TLS, go over one connection.
func TestHopReusesConnections(t *testing.T) {
	for _, peerTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[peerTLS], func(t *testing.T) {
			nodes := startCluster(t, 2, func(o *Options) { o.PeerTLS = peerTLS })
			a, b := nodes[0], nodes[1]
			var dials atomic.Int32
			dial := a.c.hops.dial
			a.c.hops.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return dial(ctx, network, addr)
			}
			full(t, nodes, a)
			for i := range 5 {
				body, _, err := timedGet(t, a.url+"/x", 5*time.Second)
				if err != nil || body != b.name {
					t.Fatalf("GET %d: %q %v", i, body, err)
				}
			}
			res, err := http.Post(a.url+"/x", "text/plain", strings.NewReader("payload"))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || res.Header.Get("X-Node") != b.name {
				t.Fatalf("POST: %d from %q", res.StatusCode, res.Header.Get("X-Node"))
			}
			if n := dials.Load(); n != 1 {
				t.Errorf("%d connections dialed to the peer, want 1", n)
			}
		})
	}
}
