package server

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hopNode runs a cluster node named name whose www/1k.bin holds body,
// with balance = "all", policy = "ip_hash", the more [cluster] keys
// (peer_tls stays at its default) and, when logs, its JSON access log at
// dir/access.log. With ip_hash, requests from 127.0.0.1 go to the node
// whose name wins the rendezvous: "origin" against "front", "hop-a"
// against "hop-b".
func hopNode(tb testing.TB, name, body, more string, logs bool) (n *Node, dir string) {
	tb.Helper()
	dir = tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "1k.bin"), []byte(body), 0o644); err != nil {
		tb.Fatal(err)
	}
	access := "[log]\naccess = \"off\"\n"
	if logs {
		access = "[log]\naccess = \"access.log\"\nformat = \"json\"\n"
	}
	src := access + "[server]\nname = \"" + name +
		"\"\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\nadmin = \"\"\ndrain_delay = \"0s\"\n" +
		"[tls]\nself_signed = true\nhttp3 = false\n" +
		"[cluster]\nenabled = true\ngossip = \"127.0.0.1:0\"\nsecret = \"" + retuneSecret + "\"\nbalance = \"all\"\npolicy = \"ip_hash\"\n" +
		more + "\n[[site]]\nroot = \"www\"\n"
	path := filepath.Join(dir, "shoal.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		tb.Fatal(err)
	}
	return runNode(tb, path), dir
}

// hopPair runs two nodes in one cluster, each serving a 1 KiB 1k.bin
// (same size, so the same site hash; the first byte names the node), and
// waits until each sees the other alive. moreB is added to the second's
// [cluster] keys. Both keep their access logs (dirA, dirB).
func hopPair(tb testing.TB, front, origin, more, moreB string) (a, b *Node, dirA, dirB string) {
	return hopPairLogs(tb, front, origin, more, moreB, true)
}

func hopPairLogs(tb testing.TB, front, origin, more, moreB string, logs bool) (a, b *Node, dirA, dirB string) {
	tb.Helper()
	a, dirA = hopNode(tb, front, "A"+strings.Repeat("x", 1023), more, logs)
	b, dirB = hopNode(tb, origin, "B"+strings.Repeat("x", 1023), more+"\n"+moreB+"\njoin = [\""+a.cl.get().GossipAddr()+"\"]", logs)
	waitMembers(tb, a, b)
	return a, b, dirA, dirB
}

// hopGet sends one request for /1k.bin?q=1 on a new connection to
// addr and returns the response with its body read.
func hopGet(t *testing.T, addr, method string, hdr ...string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return hopOn(t, conn, method, "/1k.bin?q=1", hdr...)
}

// hopOn sends one request on conn, reads the response and closes conn.
func hopOn(t *testing.T, conn net.Conn, method, target string, hdr ...string) (*http.Response, string) {
	t.Helper()
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	req := method + " " + target + " HTTP/1.1\r\nHost: shoal.test\r\nUser-Agent: hop-test\r\nReferer: http://r.test/\r\n"
	for i := 0; i+1 < len(hdr); i += 2 {
		req += hdr[i] + ": " + hdr[i+1] + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

// hopMetrics is booksMetrics with the cluster's proxied and failure
// counters.
func hopMetrics(t *testing.T, n *Node) map[string]float64 {
	t.Helper()
	out := booksMetrics(t, n)
	fams, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if name := f.GetName(); name == "shoal_cluster_proxied_total" || name == "shoal_cluster_peer_failures_total" {
			for _, m := range f.GetMetric() {
				key := name
				for _, l := range m.GetLabel() {
					key += "{" + l.GetName() + "=" + l.GetValue() + "}"
				}
				out[key] = m.Counter.GetValue()
			}
		}
	}
	return out
}

// logEntry reads the JSON access-log line i of dir/access.log, waiting
// for it, without the fields that differ between any two requests.
func logEntry(t *testing.T, dir string, i int) map[string]any {
	t.Helper()
	lines := waitLines(t, filepath.Join(dir, "access.log"), i+1)
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[i]), &e); err != nil {
		t.Fatalf("line %d: %v", i, err)
	}
	return e
}

// waitServed waits until n's cluster counts served local requests and
// none in flight.
func waitServed(t *testing.T, n *Node, served uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		inflight, s := n.cl.get().Accounting()
		if inflight == 0 && s == served {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster accounting: %d in flight, %d served; want 0 and %d", inflight, s, served)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHopRelaySameAsFullChain: a GET or HEAD that node A's cluster sends
// to node B gets the same answer, books (access-log line, metrics) and
// cluster accounting whether A's HTTP/1.1 fast path relays it or net/http
// proxies it (a TE field, which the hop drops, declines the fast path),
// over HTTP and HTTPS, for a file and for B's 404; B's fast path accepts
// the relayed hop's signature and logs the request ID A gave it.
func TestHopRelaySameAsFullChain(t *testing.T) {
	a, b, dirA, dirB := hopPair(t, "front", "origin", "", "")
	type result struct {
		status int
		header http.Header
		body   string
		books  string
		line   map[string]any
	}
	line := 0
	do := func(t *testing.T, listener, method, target string, fast bool) result {
		var hdr []string
		if !fast {
			hdr = []string{"Connection", "TE", "TE", "trailers"}
		}
		fastA, fastB := a.fastAnswered(), b.fastAnswered()
		m0 := hopMetrics(t, a)
		_, servedA := a.cl.get().Accounting()
		_, servedB := b.cl.get().Accounting()
		var conn net.Conn
		var err error
		if listener == "https" {
			conn, err = tls.Dial("tcp", a.Addrs()["https"], &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		} else {
			conn, err = net.Dial("tcp", a.Addrs()["http"])
		}
		if err != nil {
			t.Fatal(err)
		}
		res, body := hopOn(t, conn, method, target, hdr...)
		waitBooks(t, a, m0)
		m1 := hopMetrics(t, a)
		waitServed(t, a, servedA) // proxied: no local work on A
		waitServed(t, b, servedB+1)
		if got := a.fastAnswered() - fastA; got != map[bool]int64{true: 1, false: 0}[fast] {
			t.Errorf("A's fast path answered %d", got)
		}
		if got := b.fastAnswered() - fastB; res.StatusCode == 200 && got != 1 {
			t.Errorf("B's fast path answered %d of the hop, want 1 (signature refused?)", got)
		}
		la, lb := logEntry(t, dirA, line), logEntry(t, dirB, line)
		line++
		if la["request_id"] == nil || la["request_id"] != lb["request_id"] {
			t.Errorf("request ID %v on A, %v on B", la["request_id"], lb["request_id"])
		}
		if la["handler"] != "proxy" || la["peer"] != "origin" || lb["handler"] != "static" || lb["client"] != "127.0.0.1" {
			t.Errorf("A logged %v, B logged %v", la, lb)
		}
		for _, k := range []string{"time", "duration_ms", "request_id"} {
			delete(la, k)
		}
		res.Header.Del("Date")
		return result{status: res.StatusCode, header: res.Header, body: body, books: metricsDelta(m0, m1), line: la}
	}
	for _, tc := range []struct {
		listener, method, target string
		status                   int
		body                     string
	}{
		{"http", "GET", "/1k.bin?q=1", 200, "B" + strings.Repeat("x", 1023)},
		{"http", "HEAD", "/1k.bin", 200, ""},
		{"https", "GET", "/1k.bin?q=1", 200, "B" + strings.Repeat("x", 1023)},
		// Last: B hands a connection that brings a request its fast path
		// does not answer to net/http for good, and A keeps it in its pool.
		{"http", "GET", "/missing", 404, ""},
	} {
		t.Run(tc.listener+" "+tc.method+" "+tc.target, func(t *testing.T) {
			fast, full := do(t, tc.listener, tc.method, tc.target, true), do(t, tc.listener, tc.method, tc.target, false)
			if fast.status != tc.status || tc.body != "" && fast.body != tc.body {
				t.Fatalf("fast: %d %.8q", fast.status, fast.body)
			}
			if fast.status != full.status || fast.body != full.body {
				t.Errorf("fast %d %.8q, full %d %.8q", fast.status, fast.body, full.status, full.body)
			}
			if !equalHeader(fast.header, full.header) {
				t.Errorf("headers differ:\nfast %v\nfull %v", fast.header, full.header)
			}
			if fast.books != full.books || !strings.Contains(fast.books, "shoal_cluster_proxied_total{peer=origin}+1") {
				t.Errorf("metrics differ:\nfast %s\nfull %s", fast.books, full.books)
			}
			if !mapsEqual(fast.line, full.line) {
				t.Errorf("access log differs:\nfast %v\nfull %v", fast.line, full.line)
			}
		})
	}
}

func equalHeader(x, y http.Header) bool {
	if len(x) != len(y) {
		return false
	}
	for k, v := range x {
		if !slices.Equal(v, y[k]) {
			return false
		}
	}
	return true
}

func mapsEqual(x, y map[string]any) bool {
	if len(x) != len(y) {
		return false
	}
	for k, v := range x {
		if y[k] != v {
			return false
		}
	}
	return true
}

// TestHopRelayServesHere: a request balance = "all" covers that the
// cluster keeps on this node is answered by its fast path (not net/http),
// counted as local work.
func TestHopRelayServesHere(t *testing.T) {
	a, b, _, _ := hopPair(t, "hop-a", "hop-b", "", "")
	_, servedA := a.cl.get().Accounting()
	fastA, fastB := a.fastAnswered(), b.fastAnswered()
	res, body := hopGet(t, a.Addrs()["http"], "GET")
	if res.StatusCode != 200 || body[0] != 'A' {
		t.Fatalf("%d %.8q, want A's file", res.StatusCode, body)
	}
	waitServed(t, a, servedA+1)
	if a.fastAnswered()-fastA != 1 || b.fastAnswered() != fastB {
		t.Errorf("fast answers: A %d, B %d; want 1, 0", a.fastAnswered()-fastA, b.fastAnswered()-fastB)
	}
}

// peerGate is a TCP relay between node A and node B's listener (B's
// peer_url) that can freeze (accept and pass nothing either way) or
// refuse (close every connection).
type peerGate struct {
	ln     net.Listener
	target atomic.Value // string: B's host:port
	mode   atomic.Int32 // gateOpen, gateFrozen, gateRefused
	mu     sync.Mutex
	conns  []net.Conn
}

const (
	gateOpen int32 = iota
	gateFrozen
	gateRefused
)

func newPeerGate(t *testing.T) *peerGate {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &peerGate{ln: ln}
	t.Cleanup(func() { ln.Close(); g.set(gateRefused) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go g.serve(c)
		}
	}()
	return g
}

// set changes the mode; refusing closes what is open.
func (g *peerGate) set(mode int32) {
	g.mode.Store(mode)
	if mode == gateRefused {
		g.mu.Lock()
		for _, c := range g.conns {
			c.Close()
		}
		g.conns = nil
		g.mu.Unlock()
	}
}

func (g *peerGate) serve(c net.Conn) {
	if g.mode.Load() == gateRefused {
		c.Close()
		return
	}
	target, _ := g.target.Load().(string)
	if target == "" {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	g.mu.Lock()
	g.conns = append(g.conns, c, up)
	g.mu.Unlock()
	go g.pipe(up, c)
	g.pipe(c, up)
}

// pipe copies src to dst while the gate is open; frozen, it reads and
// drops.
func (g *peerGate) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && g.mode.Load() == gateOpen {
			dst.Write(buf[:n])
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// TestHopRelayPeerFails: when the peer the fast path relays to is frozen
// (no answer within peer_timeout) or refuses connections, the GET is
// still answered, by the full chain on another node (here A), within
// peer_timeout and a margin; the peer is counted failed, and the next
// request does not wait for it.
func TestHopRelayPeerFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode int32
	}{{"frozen", gateFrozen}, {"refused", gateRefused}} {
		t.Run(tc.name, func(t *testing.T) {
			g := newPeerGate(t)
			const peerTimeout = time.Second
			a, b, _, _ := hopPair(t, "front", "origin", "peer_timeout = \"1s\"", "peer_url = \"http://"+g.ln.Addr().String()+"\"")
			g.target.Store(b.Addrs()["http"])
			addr := a.Addrs()["http"]
			// Until A has B's site hash it serves here: wait for B.
			deadline := time.Now().Add(10 * time.Second)
			for {
				res, body := hopGet(t, addr, "GET")
				if res.StatusCode == 200 && body[0] == 'B' {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("A never proxied to B")
				}
				time.Sleep(20 * time.Millisecond)
			}
			m0 := hopMetrics(t, a)
			fastA := a.fastAnswered()
			g.set(tc.mode)
			for i := range 3 {
				start := time.Now()
				res, body := hopGet(t, addr, "GET")
				took := time.Since(start)
				if res.StatusCode != 200 || body[0] != 'A' {
					t.Fatalf("request %d: %d %.8q, want A's file", i, res.StatusCode, body)
				}
				if took > peerTimeout+2*time.Second {
					t.Errorf("request %d took %v, peer_timeout %v", i, took, peerTimeout)
				}
				if i > 0 && took > peerTimeout/2 {
					t.Errorf("request %d waited %v for the failed peer", i, took)
				}
			}
			m1 := hopMetrics(t, a)
			if d := m1["shoal_cluster_peer_failures_total{peer=origin}"] - m0["shoal_cluster_peer_failures_total{peer=origin}"]; d < 1 {
				t.Errorf("peer failures counted: %v (%s)", d, metricsDelta(m0, m1))
			}
			// The first went to net/http after the relay failed; the rest
			// are A's own, on its fast path.
			if got := a.fastAnswered() - fastA; got != 2 {
				t.Errorf("A's fast path answered %d of 3", got)
			}
		})
	}
}

// BenchmarkNodeWireHop proxies a 1 KiB GET from node A to node B (the
// cluster hop of bench/run.sh proxy: balance "all", ip_hash, peer_tls
// on, access logs off) over a real keep-alive connection: relayed by A's
// HTTP/1.1 fast path, and by net/http's full chain (a TE field, which
// the hop drops, declines the fast path: the path every hop took
// before). Both nodes run in this process, so cpu-ns/op counts both.
//
//	go test ./server -run '^$' -bench NodeWireHop -cpu 2
func BenchmarkNodeWireHop(b *testing.B) {
	front, _, _, _ := hopPairLogs(b, "front", "origin", "", "", false)
	for _, bc := range []struct {
		name, req string
		fast      bool
	}{
		{"fast", "GET /1k.bin HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"net/http", "GET /1k.bin HTTP/1.1\r\nHost: x\r\nConnection: TE\r\nTE: trailers\r\n\r\n", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conn, err := net.Dial("tcp", front.Addrs()["http"])
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			benchKeepAlive(b, front, conn, bc.req, bc.fast)
		})
	}
}
