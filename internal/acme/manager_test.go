package acme

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/internal/acme/acmetest"
)

// testNode is a minimal server around a Manager: an http listener that
// answers http-01 and a TLS listener that answers tls-alpn-01 and serves
// the managed certificate, else a self-signed fallback.
type testNode struct {
	m        *Manager
	httpLn   net.Listener
	tlsLn    net.Listener
	hs, ts   *http.Server
	fallback *tls.Certificate
	logs     *logCount
}

// stop ends the node and closes its listeners, so another node can take
// their ports.
func (n *testNode) stop() {
	n.m.Close()
	n.hs.Close()
	n.ts.Close()
}

// listeners opens a node's two listeners on loopback port 0.
func listeners(t *testing.T) (httpLn, tlsLn net.Listener) {
	t.Helper()
	var err error
	if httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if tlsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { httpLn.Close(); tlsLn.Close() })
	return httpLn, tlsLn
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// startNode makes the Manager and serves the listeners.
func startNode(t *testing.T, o Options, httpLn, tlsLn net.Listener) *testNode {
	t.Helper()
	n := &testNode{httpLn: httpLn, tlsLn: tlsLn, fallback: selfSigned(t), logs: &logCount{}}
	o.HTTPAddr, o.TLSAddr = httpLn.Addr().String(), tlsLn.Addr().String()
	o.Logger = slog.New(slog.NewTextHandler(&testLog{t: t, count: n.logs, node: o.Node}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if o.RetryBase == 0 {
		o.RetryBase = 100 * time.Millisecond
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	n.m = m
	t.Cleanup(m.Close)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.HandleHTTPChallenge(w, r) {
			return
		}
		http.NotFound(w, r)
	})}
	n.hs = hs
	go hs.Serve(httpLn)
	t.Cleanup(func() { hs.Close() })
	tcfg := &tls.Config{NextProtos: []string{"http/1.1", ALPN}, GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if IsChallenge(h) {
			return m.ChallengeCertificate(h)
		}
		if c := m.Certificate(h.ServerName); c != nil {
			return c, nil
		}
		return n.fallback, nil
	}}
	ts := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: tcfg, ErrorLog: log.New(io.Discard, "", 0)}
	n.ts = ts
	go ts.Serve(tls.NewListener(tlsLn, tcfg))
	t.Cleanup(func() { ts.Close() })
	return n
}

// served is the leaf the node's TLS listener presents for name.
func (n *testNode) served(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", n.tlsLn.Addr().String(), &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake for %s: %v", name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// waitIssued polls until the node serves a certificate for name that
// chains to roots, and returns it.
func (n *testNode) waitIssued(t *testing.T, name string, roots *x509.CertPool, within time.Duration) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		conn, err := tls.Dial("tcp", n.tlsLn.Addr().String(), &tls.Config{ServerName: name, RootCAs: roots})
		if err == nil {
			leaf := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no certificate chaining to Pebble's root within %v: %v", name, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func selfSigned(t *testing.T) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "fallback"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"fallback.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// logCount counts log lines by message, so a test can tell how many
// orders a node made.
type logCount struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *logCount) add(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	for _, msg := range []string{"acme: certificate obtained", "acme: no certificate yet"} {
		if strings.Contains(line, `msg="`+msg) {
			c.counts[msg]++
		}
	}
}

func (c *logCount) get(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[msg]
}

type testLog struct {
	t     *testing.T
	count *logCount
	node  string
}

func (l *testLog) Write(b []byte) (int, error) {
	l.count.add(string(b))
	defer func() { _ = recover() }() // a line after the test ended
	// Shown with -v, or when the test fails.
	l.t.Logf("%s: %s", l.node, bytes.TrimSpace(b))
	return len(b), nil
}

func options(p *acmetest.Pebble, dir string, challenges ...string) Options {
	if len(challenges) == 0 {
		challenges = []string{HTTP01, TLSALPN01}
	}
	return Options{CA: p.Directory(), Roots: p.Roots, Challenges: challenges, Storage: dir,
		RenewBefore: 720 * time.Hour, Node: "node-a"}
}

// TestPebbleIssues gets a certificate from Pebble with each challenge
// allowed alone and both, and checks it chains to Pebble's root and is an
// ECDSA P-256 key.
func TestPebbleIssues(t *testing.T) {
	for _, tc := range []struct {
		name       string
		challenges []string
	}{
		{"both", []string{HTTP01, TLSALPN01}},
		{"http-01 only", []string{HTTP01}},
		{"tls-alpn-01 only", []string{TLSALPN01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			httpLn, tlsLn := listeners(t)
			hp, tp := portOf(httpLn), portOf(tlsLn)
			if len(tc.challenges) == 1 {
				// Point the other challenge's port at nothing, so only
				// the allowed one can pass.
				dead := deadPort(t)
				if tc.challenges[0] == HTTP01 {
					tp = dead
				} else {
					hp = dead
				}
			}
			p := acmetest.Start(t, acmetest.Options{HTTPPort: hp, TLSPort: tp})
			n := startNode(t, options(p, t.TempDir(), tc.challenges...), httpLn, tlsLn)
			n.m.Manage([]string{"www.shoal.test"})
			leaf := n.waitIssued(t, "www.shoal.test", p.IssuerRoots(), 60*time.Second)
			if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
				t.Errorf("key is %T, want ECDSA P-256", leaf.PublicKey)
			}
			if got := n.logs.get("acme: certificate obtained"); got != 1 {
				t.Errorf("orders = %d, want 1", got)
			}
		})
	}
}

// deadPort is a loopback port nothing listens on.
func deadPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := portOf(ln)
	ln.Close()
	return port
}

// TestRestartReusesCertificate: a second manager on the same storage
// serves the same certificate at once, without a new order, and the
// storage holds its secrets in 0600 files in 0700 folders.
func TestRestartReusesCertificate(t *testing.T) {
	httpLn, tlsLn := listeners(t)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: portOf(httpLn), TLSPort: portOf(tlsLn)})
	dir := filepath.Join(t.TempDir(), "acme")
	n := startNode(t, options(p, dir), httpLn, tlsLn)
	n.m.Manage([]string{"reuse.shoal.test"})
	roots := p.IssuerRoots()
	first := n.waitIssued(t, "reuse.shoal.test", roots, 60*time.Second)
	n.m.Close()

	p.Stop() // a restart needs no CA
	httpLn2, tlsLn2 := listeners(t)
	n2 := startNode(t, options(p, dir), httpLn2, tlsLn2)
	n2.m.Manage([]string{"reuse.shoal.test"})
	second := n2.waitIssued(t, "reuse.shoal.test", roots, 10*time.Second)
	if first.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Errorf("serial after restart = %x, want %x", second.SerialNumber, first.SerialNumber)
	}
	if got := n2.logs.get("acme: certificate obtained"); got != 0 {
		t.Errorf("restart made %d orders, want 0", got)
	}
	checkModes(t, dir)
}

func checkModes(t *testing.T, dir string) {
	t.Helper()
	files := 0
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("storage holds no file")
	}
}

// TestCADownServesFallbackAndRetries: with the CA down the name is served
// with the fallback certificate and the order is retried (and logged);
// once the CA is back the certificate arrives.
func TestCADownServesFallbackAndRetries(t *testing.T) {
	httpLn, tlsLn := listeners(t)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: portOf(httpLn), TLSPort: portOf(tlsLn), Stopped: true})
	n := startNode(t, options(p, t.TempDir()), httpLn, tlsLn)
	n.m.Manage([]string{"down.shoal.test"})
	deadline := time.Now().Add(20 * time.Second)
	for n.logs.get("acme: no certificate yet") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no retried failure logged")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := n.served(t, "down.shoal.test"); got.Subject.CommonName != "fallback" {
		t.Fatalf("served %q while the CA is down, want the fallback", got.Subject.CommonName)
	}
	p.Start()
	n.waitIssued(t, "down.shoal.test", p.IssuerRoots(), 60*time.Second)
}
