package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/server/config"
)

// sniFixture: a.test and b.test with their own certs, *.c.test with a
// wildcard cert, d.test without one, and tls.cert as the default.
type sniFixture struct {
	ca    *testCA
	dir   string
	tls   config.TLS
	sites []config.Site
}

func newSNIFixture(t *testing.T) *sniFixture {
	ca := newTestCA(t)
	dir := t.TempDir()
	defCert, defKey := ca.writeLeaf(t, dir, "default", leafOpts{serial: 1, hosts: []string{"default.test"}})
	aCert, aKey := ca.writeLeaf(t, dir, "a", leafOpts{serial: 2, hosts: []string{"a.test"}})
	bCert, bKey := ca.writeLeaf(t, dir, "b", leafOpts{serial: 3, hosts: []string{"b.test"}})
	cCert, cKey := ca.writeLeaf(t, dir, "c", leafOpts{serial: 4, hosts: []string{"*.c.test"}})
	return &sniFixture{
		ca:  ca,
		dir: dir,
		tls: config.TLS{Cert: defCert, Key: defKey, MinVersion: "1.2"},
		sites: []config.Site{
			{Hosts: []string{"a.test"}, Cert: aCert, Key: aKey},
			{Hosts: []string{"B.Test"}, Cert: bCert, Key: bKey},
			{Hosts: []string{"*.c.test"}, Cert: cCert, Key: cKey},
			{Hosts: []string{"d.test"}},
		},
	}
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
}

func TestSNIChoosesCertificate(t *testing.T) {
	f := newSNIFixture(t)
	m := newManager(t, f.tls, f.sites)
	addr := serveTLS(t, m.TLSConfig(), okHandler())
	for _, tc := range []struct {
		sni  string
		want int64
	}{
		{"a.test", 2},
		{"A.TEST", 2},
		{"b.test", 3},
		{"x.c.test", 4},
		{"X.C.Test", 4},
		{"c.test", 1},       // a wildcard does not match its parent
		{"y.x.c.test", 4},   // deeper names do, as in vhost routing
		{"d.test", 1},       // a site without a cert gets the default
		{"unknown.test", 1}, // so does a name no site has
		{"", 1},             // and a client that sends no SNI
	} {
		if got := peerSerial(t, addr, tc.sni); got != tc.want {
			t.Errorf("SNI %q: serial %d, want %d", tc.sni, got, tc.want)
		}
	}
	// The chosen certificate also verifies for its name.
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "x.c.test", RootCAs: f.ca.pool})
	if err != nil {
		t.Fatalf("verified handshake for x.c.test: %v", err)
	}
	conn.Close()
}

// TestCertLookupOrder covers the fallbacks without a network: a catch-all
// site cert, then tls.cert, then self-signed, then the first site cert.
func TestCertLookupOrder(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	aCert, aKey := ca.writeLeaf(t, dir, "a", leafOpts{serial: 2, hosts: []string{"a.test"}})
	anyCert, anyKey := ca.writeLeaf(t, dir, "any", leafOpts{serial: 5, hosts: []string{"any.test"}})
	defCert, defKey := ca.writeLeaf(t, dir, "default", leafOpts{serial: 1})
	siteA := config.Site{Hosts: []string{"a.test"}, Cert: aCert, Key: aKey}
	catchAll := config.Site{Cert: anyCert, Key: anyKey}

	for _, tc := range []struct {
		name       string
		tls        config.TLS
		sites      []config.Site
		host       string
		want       int64 // 0: the self-signed cert
		wantHasTLS bool
	}{
		{"catch-all site before tls.cert", config.TLS{Cert: defCert, Key: defKey}, []config.Site{catchAll, siteA}, "other.test", 5, true},
		{"exact before catch-all", config.TLS{}, []config.Site{catchAll, siteA}, "a.test", 2, true},
		{"a later site with hosts = [] gets no requests", config.TLS{Cert: defCert, Key: defKey}, []config.Site{siteA, catchAll}, "other.test", 1, true},
		{"tls.cert default", config.TLS{Cert: defCert, Key: defKey}, []config.Site{siteA}, "other.test", 1, true},
		{"self-signed for the rest", config.TLS{SelfSigned: true}, []config.Site{siteA, {Hosts: []string{"dev.test"}}}, "dev.test", 0, true},
		{"self-signed never for a real host", config.TLS{SelfSigned: true}, []config.Site{siteA, {Hosts: []string{"dev.test"}}}, "a.test", 2, true},
		{"first site cert as last resort", config.TLS{}, []config.Site{{Hosts: []string{"x.test"}}, siteA}, "other.test", 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := buildCertSet(tc.tls, tc.sites, nil, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			cert, ok := set.lookup(tc.host)
			if ok != tc.wantHasTLS {
				t.Errorf("covered = %v, want %v", ok, tc.wantHasTLS)
			}
			if tc.want == 0 {
				if set.self == nil || cert != set.self.cert {
					t.Errorf("want the self-signed cert, got %v", cert.Leaf.Subject)
				}
				return
			}
			if got := cert.Leaf.SerialNumber.Int64(); got != tc.want {
				t.Errorf("serial %d, want %d", got, tc.want)
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	aCert, aKey := ca.writeLeaf(t, dir, "a", leafOpts{serial: 2, hosts: []string{"a.test"}})
	sites := []config.Site{
		{Hosts: []string{"a.test"}, Cert: aCert, Key: aKey},
		{Hosts: []string{"Dev.Test", "*.wild.test"}},
	}
	m := newManager(t, config.TLS{SelfSigned: true, MinVersion: "1.2"}, sites)
	self := m.certs.Load().self
	if self == nil {
		t.Fatal("no self-signed certificate made")
	}
	wantNames := []string{"*.wild.test", "127.0.0.1", "::1", "dev.test", "localhost"}
	if !slices.Equal(self.names, wantNames) {
		t.Errorf("self-signed names %v, want %v (a.test has real files)", self.names, wantNames)
	}
	if err := self.cert.Leaf.VerifyHostname("x.wild.test"); err != nil {
		t.Errorf("the self-signed certificate does not cover a name under its site's wildcard: %v", err)
	}
	if alg := self.cert.Leaf.PublicKeyAlgorithm; alg != x509.ECDSA {
		t.Errorf("self-signed key is %v, want ECDSA", alg)
	}
	addr := serveTLS(t, m.TLSConfig(), okHandler())

	roots := x509.NewCertPool()
	roots.AddCert(self.cert.Leaf)
	// 127.0.0.1 and localhost verify against the self-signed cert itself.
	for _, name := range []string{"", "localhost", "dev.test"} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
		if err != nil {
			t.Errorf("self-signed handshake for %q: %v", name, err)
			continue
		}
		conn.Close()
	}
	if got := peerSerial(t, addr, "a.test"); got != 2 {
		t.Errorf("a.test got serial %d, want its real cert", got)
	}

	// A reload with the same hosts keeps the certificate (a browser's
	// exception stays valid); a new host makes a new one with the same key.
	if err := m.Reload(config.TLS{SelfSigned: true, MinVersion: "1.2"}, sites); err != nil {
		t.Fatal(err)
	}
	if m.certs.Load().self != self {
		t.Error("reload with unchanged hosts replaced the self-signed certificate")
	}
	more := append(slices.Clone(sites), config.Site{Hosts: []string{"new.test"}})
	if err := m.Reload(config.TLS{SelfSigned: true, MinVersion: "1.2"}, more); err != nil {
		t.Fatal(err)
	}
	next := m.certs.Load().self
	if next == self || !slices.Contains(next.names, "new.test") || next.key != self.key {
		t.Errorf("reload with a new host: names %v, same key %v", next.names, next.key == self.key)
	}
}

func TestSelfSignedUnusedWithDefaultCert(t *testing.T) {
	ca := newTestCA(t)
	defCert, defKey := ca.writeLeaf(t, t.TempDir(), "default", leafOpts{serial: 1})
	set, err := buildCertSet(config.TLS{Cert: defCert, Key: defKey, SelfSigned: true}, []config.Site{{Hosts: []string{"x.test"}}}, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if set.self != nil || !set.selfSkipped {
		t.Errorf("self-signed made although tls.cert covers every host")
	}
}

func TestOldTLSVersionsRefused(t *testing.T) {
	f := newSNIFixture(t)
	for _, tc := range []struct {
		min        string
		clientMax  uint16
		wantRefuse bool
	}{
		{"1.2", tls.VersionTLS11, true},
		{"1.2", tls.VersionTLS10, true},
		{"1.2", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS12, true},
		{"1.3", tls.VersionTLS13, false},
	} {
		t.Run(fmt.Sprintf("min%s/client%x", tc.min, tc.clientMax), func(t *testing.T) {
			tc2 := f.tls
			tc2.MinVersion = tc.min
			m := newManager(t, tc2, f.sites)
			addr := serveTLS(t, m.TLSConfig(), okHandler())
			conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: f.ca.pool, MinVersion: tls.VersionTLS10, MaxVersion: tc.clientMax})
			if err == nil {
				conn.Close()
			}
			if refused := err != nil; refused != tc.wantRefuse {
				t.Errorf("refused = %v (err %v), want %v", refused, err, tc.wantRefuse)
			}
			if err != nil && !strings.Contains(err.Error(), "protocol version") {
				t.Errorf("refused for another reason than the version: %v", err)
			}
		})
	}
}

func TestNoCBCSuitesWithTLS12(t *testing.T) {
	f := newSNIFixture(t)
	m := newManager(t, f.tls, f.sites)
	addr := serveTLS(t, m.TLSConfig(), okHandler())
	cbc := &tls.Config{ServerName: "a.test", RootCAs: f.ca.pool, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}}
	if conn, err := tls.Dial("tcp", addr, cbc); err == nil {
		conn.Close()
		t.Fatal("a CBC-SHA1-only TLS 1.2 client got a connection")
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: f.ca.pool, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if s := tls.CipherSuiteName(conn.ConnectionState().CipherSuite); !strings.Contains(s, "GCM") && !strings.Contains(s, "CHACHA20") {
		t.Errorf("TLS 1.2 suite %s is not AEAD", s)
	}
}

func TestALPNOffersH2(t *testing.T) {
	f := newSNIFixture(t)
	m := newManager(t, f.tls, f.sites)
	addr := serveTLS(t, m.TLSConfig(), okHandler())
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: f.ca.pool, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("ALPN chose %q, want h2", p)
	}
}

// TestStaticSameOverH1AndH2 serves a file tree over the manager's config and
// checks that HTTP/1.1 and HTTP/2 clients see the same statuses, bodies and
// ranges.
func TestStaticSameOverH1AndH2(t *testing.T) {
	f := newSNIFixture(t)
	m := newManager(t, f.tls, f.sites)
	root := t.TempDir()
	content := bytes.Repeat([]byte("0123456789"), 1000)
	writeFile(t, filepath.Join(root, "f.txt"), content)
	addr := serveTLS(t, m.TLSConfig(), hsts("max-age=60")(http.FileServer(http.Dir(root))))

	for _, proto := range []int{1, 2} {
		t.Run(fmt.Sprintf("HTTP/%d", proto), func(t *testing.T) {
			client := protoClient(f.ca.pool, proto)
			defer client.CloseIdleConnections()
			for _, tc := range []struct {
				rng        string
				wantStatus int
				wantBody   []byte
			}{
				{"", 200, content},
				{"bytes=10-19", 206, content[10:20]},
				{"bytes=9990-", 206, content[9990:]},
				{"bytes=20000-", 416, nil},
			} {
				req, _ := http.NewRequest("GET", "https://"+addr+"/f.txt", nil)
				req.Host = "a.test"
				if tc.rng != "" {
					req.Header.Set("Range", tc.rng)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != proto {
					t.Fatalf("got HTTP/%d, want HTTP/%d", resp.ProtoMajor, proto)
				}
				if resp.StatusCode != tc.wantStatus || (tc.wantBody != nil && !bytes.Equal(body, tc.wantBody)) {
					t.Errorf("Range %q: %d, %d bytes; want %d, %d bytes", tc.rng, resp.StatusCode, len(body), tc.wantStatus, len(tc.wantBody))
				}
				if resp.Header.Get("Strict-Transport-Security") != "max-age=60" {
					t.Errorf("no HSTS over HTTP/%d", proto)
				}
			}
		})
	}
}

// protoClient trusts pool and speaks only HTTP/major over TLS.
func protoClient(pool *x509.CertPool, major int) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: pool}}
	tr.Protocols = new(http.Protocols)
	if major == 2 {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// TestReloadSwapsCertKeepsConnections: while a download over a connection
// made with the old cert is paused, the cert file is replaced and reloaded;
// a new handshake shows the new serial and the old download completes.
func TestReloadSwapsCertKeepsConnections(t *testing.T) {
	f := newSNIFixture(t)
	m := newManager(t, f.tls, f.sites)
	const chunk, chunks = 32 << 10, 64
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(chunk*chunks))
		buf := bytes.Repeat([]byte("x"), chunk)
		for i := 0; i < chunks; i++ {
			w.Write(buf)
			if i == 0 {
				w.(http.Flusher).Flush()
				close(started)
				<-release
			}
		}
	})
	addr := serveTLS(t, m.TLSConfig(), h)

	client := protoClient(f.ca.pool, 1)
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+addr+"/big", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-started
	if s := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); s != 2 {
		t.Fatalf("download connection has serial %d, want 2", s)
	}

	// Replace a.test's files in place, as an operator renewing a cert does.
	ca := f.ca
	newCert, newKey := ca.writeLeaf(t, t.TempDir(), "a", leafOpts{serial: 22, hosts: []string{"a.test"}})
	copyFile(t, newCert, f.sites[0].Cert)
	copyFile(t, newKey, f.sites[0].Key)
	if err := m.Reload(f.tls, f.sites); err != nil {
		t.Fatal(err)
	}
	if got := peerSerial(t, addr, "a.test"); got != 22 {
		t.Errorf("after reload a new handshake shows serial %d, want 22", got)
	}

	close(release)
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != chunk*chunks {
		t.Errorf("old download: %d bytes, err %v; want %d", n, err, chunk*chunks)
	}

	// A broken new key keeps the current certificate and says why.
	writeFile(t, f.sites[0].Key, []byte("not a key"))
	err = m.Reload(f.tls, f.sites)
	if err == nil || !strings.Contains(err.Error(), "site.0.key") || !strings.Contains(err.Error(), f.sites[0].Key) {
		t.Errorf("broken reload error = %v; want one naming site.0.key and the file", err)
	}
	if got := peerSerial(t, addr, "a.test"); got != 22 {
		t.Errorf("after a failed reload serial %d, want 22 kept", got)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, b)
}

// TestCheckTLS loads a real config file and expects each certificate
// problem at its key's position, naming the file.
func TestCheckTLS(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	ca.writeLeaf(t, dir, "expired", leafOpts{serial: 7, notAfter: time.Now().Add(-time.Hour)})
	ca.writeLeaf(t, dir, "a", leafOpts{serial: 2, hosts: []string{"a.test"}})
	ca.writeLeaf(t, dir, "other", leafOpts{serial: 3})
	ca.writeLeaf(t, dir, "good", leafOpts{serial: 4})
	writeFile(t, filepath.Join(dir, "garbage.pem"), []byte("hello"))
	if err := os.Mkdir(filepath.Join(dir, "adir.key"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := `[server]
https = "127.0.0.1:0"

[tls]
cert = "expired.pem"
key = "expired.key"

[[site]]
hosts = ["a.test"]
root = "www"
cert = "a.pem"
key = "other.key"

[[site]]
hosts = ["g.test"]
root = "www"
cert = "garbage.pem"
key = "good.key"

[[site]]
hosts = ["h.test"]
root = "www"
cert = "good.pem"
key = "adir.key"
`
	path := filepath.Join(dir, "config.toml")
	writeFile(t, path, []byte(src))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// Validate parses the certificates (so `shoal check` and start-up
	// refuse them) once every file exists.
	err = cfg.Validate()
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Validate = %v, want ConfigErrors", err)
	}
	want := []struct {
		line int
		key  string
		has  string
	}{
		{5, "tls.cert", "expired.pem expired on"},
		{12, "site.0.key", "other.key does not match the certificate in " + filepath.Join(dir, "a.pem")},
		{17, "site.1.cert", "garbage.pem: no PEM CERTIFICATE block"},
		{24, "site.2.key", "cannot read " + filepath.Join(dir, "adir.key")},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		e := errs[i]
		prefix := fmt.Sprintf("%s:%d:1: %s: ", path, w.line, w.key)
		if e.Key != w.key || !strings.HasPrefix(e.Error(), prefix) || !strings.Contains(e.Error(), w.has) {
			t.Errorf("error %d = %q (key %q); want prefix %q containing %q", i, e.Error(), e.Key, prefix, w.has)
		}
	}

	// The manager refuses the same config at start.
	if _, err := newCertManager(cfg.TLS, cfg.Sites, quietLog()); err == nil {
		t.Error("newCertManager accepted broken certificates")
	}
}

// TestSessionTicketRotation: a client resumes with its ticket until the key
// that sealed it has rotated out of the ring.
func TestSessionTicketRotation(t *testing.T) {
	f := newSNIFixture(t)
	m := newManager(t, f.tls, f.sites)
	addr := serveTLS(t, m.TLSConfig(), okHandler())
	cache := tls.NewLRUClientSessionCache(4)
	dial := func() bool {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: f.ca.pool, ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// TLS 1.3 tickets arrive after the handshake: a request and its
		// answer make the client read them.
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
		io.ReadAll(conn)
		return conn.ConnectionState().DidResume
	}
	if dial() {
		t.Fatal("first connection resumed")
	}
	if !dial() {
		t.Fatal("second connection did not resume")
	}
	m.tickets.rotate() // older keys still decrypt
	if !dial() {
		t.Fatal("no resumption after one rotation")
	}
	for i := 0; i < ticketKeysKept; i++ {
		m.tickets.rotate()
	}
	if dial() {
		t.Fatal("resumed with a ticket whose key was rotated out")
	}
}

// BenchmarkGetCertificate is the per-handshake cost of the SNI choice.
func BenchmarkGetCertificate(b *testing.B) {
	ca := newTestCA(b)
	dir := b.TempDir()
	var sites []config.Site
	for i := 0; i < 50; i++ {
		c, k := ca.writeLeaf(b, dir, fmt.Sprintf("s%d", i), leafOpts{serial: int64(i + 1), hosts: []string{fmt.Sprintf("s%d.test", i)}})
		sites = append(sites, config.Site{Hosts: []string{fmt.Sprintf("s%d.test", i), fmt.Sprintf("*.w%d.test", i)}, Cert: c, Key: k})
	}
	m, err := newCertManager(config.TLS{}, sites, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	hellos := []*tls.ClientHelloInfo{{ServerName: "s7.test"}, {ServerName: "x.w9.test"}, {ServerName: "Unknown.Test"}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := m.getCertificate(hellos[i%len(hellos)]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReloadDuringHandshakes reloads between two certificates while
// clients handshake; under -race this checks the swap, and every handshake
// must see one of the two whole certificates.
func TestReloadDuringHandshakes(t *testing.T) {
	f := newSNIFixture(t)
	m := newManager(t, f.tls, f.sites)
	addr := serveTLS(t, m.TLSConfig(), okHandler())
	other := slices.Clone(f.sites)
	c, k := f.ca.writeLeaf(t, t.TempDir(), "a2", leafOpts{serial: 99, hosts: []string{"a.test"}})
	other[0].Cert, other[0].Key = c, k

	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 20; i++ {
				conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: f.ca.pool})
				if err != nil {
					errs <- err
					return
				}
				s := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
				conn.Close()
				if s != 2 && s != 99 {
					errs <- fmt.Errorf("serial %d", s)
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < 10; i++ {
		sites := f.sites
		if i%2 == 0 {
			sites = other
		}
		if err := m.Reload(f.tls, sites); err != nil {
			t.Fatal(err)
		}
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
