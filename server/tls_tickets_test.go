package server

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSessionTicketsShared: a Go client with one session cache resumes on
// a second node that shares the cluster secret (no key exchange between
// the nodes), not on one with another secret; both nodes rotate to the
// same keys, and tickets outlive a rotation but not the whole ring.
func TestSessionTicketsShared(t *testing.T) {
	f := newSNIFixture(t)
	secret := bytes.Repeat([]byte{7}, 32)
	node := func(secret []byte) (*certManager, string) {
		m := newManager(t, f.tls, f.sites)
		if err := m.tickets.share(secret); err != nil {
			t.Fatal(err)
		}
		return m, serveTLS(t, m.TLSConfig(), okHandler())
	}
	a, addrA := node(secret)
	b, addrB := node(secret)
	_, addrOther := node(bytes.Repeat([]byte{8}, 32))

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(fmt.Sprintf("tls%x", version), func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(4)
			dial := func(addr string) bool {
				t.Helper()
				conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: f.ca.pool,
					ClientSessionCache: cache, MinVersion: version, MaxVersion: version})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				// TLS 1.3 tickets arrive after the handshake: a request
				// and its answer make the client read them.
				fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
				io.ReadAll(conn)
				return conn.ConnectionState().DidResume
			}
			if dial(addrA) {
				t.Fatal("first connection resumed")
			}
			if !dial(addrB) {
				t.Fatal("node B did not resume node A's session")
			}
			if dial(addrOther) {
				t.Fatal("a node with another secret resumed the session")
			}
		})
	}

	// Rotation: both nodes move to the next epoch; old tickets still open.
	cache := tls.NewLRUClientSessionCache(4)
	dial := func(addr string) bool {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: f.ca.pool, ClientSessionCache: cache,
			MaxVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
		io.ReadAll(conn)
		return conn.ConnectionState().DidResume
	}
	dial(addrA)
	epoch := ticketEpoch(time.Now())
	for _, m := range []*certManager{a, b} {
		if err := m.tickets.setEpoch(epoch + 1); err != nil {
			t.Fatal(err)
		}
	}
	if !dial(addrB) {
		t.Fatal("no resumption on B after both rotated once")
	}
	for _, m := range []*certManager{a, b} {
		if err := m.tickets.setEpoch(epoch + 2 + ticketKeysKept); err != nil {
			t.Fatal(err)
		}
	}
	if dial(addrA) {
		t.Fatal("resumed with a ticket whose key left the ring")
	}
}

// TestDerivedTicketKeys: the ring is a pure function of secret and epoch,
// each epoch's key stays the same as the ring moves, and secrets differ.
func TestDerivedTicketKeys(t *testing.T) {
	s := []byte("0123456789abcdef0123456789abcdef")
	k1, err := derivedTicketKeys(s, 100, ticketKeysKept)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := derivedTicketKeys(s, 100, ticketKeysKept)
	next, _ := derivedTicketKeys(s, 101, ticketKeysKept)
	other, _ := derivedTicketKeys([]byte("another secret of 32 bytes......"), 100, ticketKeysKept)
	if len(k1) != ticketKeysKept+1 {
		t.Fatalf("ring holds %d keys, want %d", len(k1), ticketKeysKept+1)
	}
	if fmt.Sprint(k1) != fmt.Sprint(k2) {
		t.Error("same secret and epoch gave different rings")
	}
	if k1[1] != next[0] || k1[0] != next[2] {
		t.Error("epoch 101's own key or epoch 100's key changed as the ring moved")
	}
	if k1[0] == other[0] {
		t.Error("different secrets gave the same key")
	}
}

// TestNodesShareSessionTickets: two nodes started with the same
// cluster.secret resume each other's TLS sessions.
func TestNodesShareSessionTickets(t *testing.T) {
	start := func() string {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "shoal.toml"), []byte(`[log]
access = "off"
[server]
http = ""
https = "127.0.0.1:0"
admin = ""
drain_delay = "0s"
[tls]
self_signed = true
[cluster]
secret = "c2hvYWwtdGVzdC1zZWNyZXQtMzItYnl0ZXMtbG9uZyE="
[[site]]
hosts = ["a.test"]
root = "www"
`))
		return runNode(t, filepath.Join(dir, "shoal.toml")).Addrs()["https"]
	}
	addrA, addrB := start(), start()
	cache := tls.NewLRUClientSessionCache(4)
	dial := func(addr string) bool {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", InsecureSkipVerify: true, ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
		io.ReadAll(conn)
		return conn.ConnectionState().DidResume
	}
	if dial(addrA) {
		t.Fatal("first connection resumed")
	}
	if !dial(addrB) {
		t.Fatal("node B did not resume node A's session")
	}
}
