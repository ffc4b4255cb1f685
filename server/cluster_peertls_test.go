package server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shoal/cluster"
	"shoal/internal/http1"
)

// peerNode runs a cluster node whose www/x.txt holds body; listeners is
// the [server] lines choosing them, more the extra [cluster] keys and any
// further sections.
func peerNode(t *testing.T, name, body, listeners, more string) *Node {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "x.txt"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "[log]\naccess = \"off\"\n[server]\nname = \"" + name + "\"\n" + listeners +
		"\nadmin = \"\"\ndrain_delay = \"0s\"\n[cluster]\nenabled = true\ngossip = \"127.0.0.1:0\"\nsecret = \"" +
		retuneSecret + "\"\nbalance = \"all\"\npolicy = \"round_robin\"\n" + more + "\n[[site]]\nroot = \"www\"\n"
	path := filepath.Join(dir, "shoal.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return runNode(t, path)
}

// With the default peer_tls, two nodes proxy to each other over mutual
// TLS on their ordinary listeners: the HTTP one (peer_url http://, the
// connection opens with a TLS handshake) or the HTTPS one (peer_url
// https://, the ClientHello offers the peer protocol). Clients see those
// listeners as before, and a TLS client without the secret is refused at
// the handshake.
func TestPeerTLSBetweenNodes(t *testing.T) {
	for _, tc := range []struct {
		name, listeners, more string
		role                  string // b's listener peers reach
	}{
		{"http", "http = \"127.0.0.1:0\"", "", "http"},
		{"https", "http = \"\"\nhttps = \"127.0.0.1:0\"", "\n[tls]\nself_signed = true", "https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := peerNode(t, "tls-a", "A", "http = \"127.0.0.1:0\"", "")
			b := peerNode(t, "tls-b", "B", tc.listeners, "join = [\""+a.cl.get().GossipAddr()+"\"]"+tc.more)
			waitMembers(t, a, b)
			c := &http.Client{Timeout: 10 * time.Second}
			defer c.CloseIdleConnections()
			served := map[string]int{}
			before := b.fastAnswered()
			for range 20 {
				body, status := fetch(t, c, "http://"+a.Addrs()["http"]+"/x.txt")
				if status != 200 {
					t.Fatalf("status %d", status)
				}
				served[body]++
			}
			if served["B"] == 0 {
				t.Fatalf("no request reached b over peer TLS: %v", served)
			}
			if got := b.fastAnswered() - before; tc.role == "http" && got != int64(served["B"]) {
				t.Errorf("b's fast path answered %d of the %d hops over peer TLS", got, served["B"])
			}
			// What the fast path declines (a range) goes on to net/http on
			// the same peer connection.
			for range 6 {
				req, _ := http.NewRequest("GET", "http://"+a.Addrs()["http"]+"/x.txt", nil)
				req.Header.Set("Range", "bytes=0-0")
				res, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode/100 != 2 || (string(body) != "A" && string(body) != "B") {
					t.Fatalf("range: %d %q", res.StatusCode, body)
				}
			}

			addr := b.Addrs()[tc.role]
			// Clients use b's listener as before.
			scheme := "http"
			client := c
			if tc.role == "https" {
				scheme = "https"
				client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
					TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
			}
			if body, status := fetch(t, client, scheme+"://"+addr+"/x.txt"); status != 200 || body != "B" {
				t.Fatalf("a client of b's %s listener got %d %q", tc.role, status, body)
			}
			// A stranger speaking the peer protocol without the secret.
			stranger := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"shoal-peer", "http/1.1"}}
			if got, err := tlsGet(addr, stranger); got != "" || err == nil {
				t.Fatalf("a stranger got %q (%v)", got, err)
			}
		})
	}
}

func waitMembers(t testing.TB, nodes ...*Node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for {
			alive := 0
			for _, m := range n.cl.get().Members() {
				if m.State == "alive" {
					alive++
				}
			}
			if alive == len(nodes) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("nodes did not see each other")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func fetch(t *testing.T, c *http.Client, url string) (string, int) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b), res.StatusCode
}

// tlsGet sends one GET over TLS with cfg and returns what came back.
func tlsGet(addr string, cfg *tls.Config) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET /x.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

// A peer connection the fast path hands to net/http carries no TLS state
// any more; its context says it is a peer's, and nothing else's does.
func TestPeerConnContext(t *testing.T) {
	for _, tc := range []struct {
		conn net.Conn
		peer bool
	}{
		{http1.NewPeerReplayConn(nil, nil), true},
		{&net.TCPConn{}, false},
	} {
		r := httptest.NewRequest("GET", "/", nil).WithContext(peerConnContext(context.Background(), tc.conn))
		if got := cluster.OverPeerTLS(r); got != tc.peer {
			t.Errorf("%T: from a peer %v, want %v", tc.conn, got, tc.peer)
		}
	}
}

// Peers proxy to a node as soon as they learn its site hashes, which it
// publishes before routing starts (before clusterRef.p is set): its
// listeners must take their TLS connections for peer TLS from the moment
// the cluster exists, or a peer's ClientHello is read as plain HTTP and
// its request hangs until peer_timeout.
func TestPeerTLSBeforeRouting(t *testing.T) {
	peerCfg := &tls.Config{ServerName: "peer"}
	base := &tls.Config{ServerName: "base"}
	for _, tc := range []struct {
		name    string
		cfg     *tls.Config // stored as the peer config; nil: cluster off or not started
		first   byte
		wantTLS bool
	}{
		{"peer hello, cluster started, not routing", peerCfg, http1.TLSHandshakeRecord, true},
		{"plain request, cluster started", peerCfg, 'G', false},
		{"peer hello, no cluster", nil, http1.TLSHandshakeRecord, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cr clusterRef // p stays nil: routing has not started
			if tc.cfg != nil {
				cr.peer.Store(tc.cfg)
			}
			c1, c2 := net.Pipe()
			defer c1.Close()
			defer c2.Close()
			if got := cr.peerConn(c1, []byte{tc.first}) != nil; got != tc.wantTLS {
				t.Errorf("taken as peer TLS %v, want %v", got, tc.wantTLS)
			}
			hello := &tls.ClientHelloInfo{SupportedProtos: []string{"shoal-peer", "http/1.1"}}
			got, err := cr.peerTLS(base).GetConfigForClient(hello)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]*tls.Config{true: peerCfg, false: base}[tc.cfg != nil]; got != want {
				t.Errorf("HTTPS listener answered a peer hello with %q's config, want %q's", got.ServerName, want.ServerName)
			}
		})
	}
}
