// Package acmetest runs Pebble, Let's Encrypt's test ACME CA, and its DNS
// server pebble-challtestsrv as child processes for tests: both are Go
// tools of this module (go.mod's tool lines), so `go mod download` is all
// CI needs. Test names resolve to 127.0.0.1 through the DNS server, and
// Pebble validates on the ports a test names (the shoal node's).
package acmetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/internal/testenv"
)

// Pebble is one running (or stopped) Pebble CA.
type Pebble struct {
	t        testing.TB
	dir      string
	bin      string
	cfg      string
	dns      string       // challtestsrv address Pebble resolves with
	proxy    *http.Server // the NoARI proxy; nil without
	addr     string       // ACME listener clients use, fixed across Stop/Start
	listen   string       // Pebble's own ACME listener: addr, or behind the NoARI proxy
	mgmt     string
	RootsPEM []byte // trust for Pebble's own HTTPS (ca_root)
	Roots    *x509.CertPool

	// mu guards cmd and exited.
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited

	// issuedMu guards issued (apart from mu, which start holds while
	// Pebble logs).
	issuedMu sync.Mutex
	issued   []string // serials of the certificates Pebble issued, in order
}

// Options for Start.
type Options struct {
	HTTPPort, TLSPort int  // where Pebble validates http-01 and tls-alpn-01
	Stopped           bool // reserve the address but do not start (CA down)
	// Validity is the lifetime of the certificates Pebble issues, in
	// whole seconds; 0: 90 days.
	Validity time.Duration
	// NoARI hides Pebble's renewal info (ARI) from clients: for a
	// certificate shorter than three days Pebble suggests renewing at a
	// random moment of its whole life, which would make renewal tests
	// depend on chance.
	NoARI bool
}

// Directory is the ACME directory URL.
func (p *Pebble) Directory() string { return "https://" + p.addr + "/dir" }

// tool returns the path of a go tool's binary, building it if needed; it
// skips (fails under SHOAL_REQUIRE_TOOLS=1) when it cannot be built.
func tool(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "tool", "-n", name).Output()
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("go tool %s cannot be built (%v): run go mod download", name, err))
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Start runs pebble-challtestsrv and Pebble; both stop at the test's end.
func Start(t testing.TB, o Options) *Pebble {
	t.Helper()
	p := &Pebble{t: t, dir: t.TempDir(), bin: tool(t, "pebble")}
	p.dns = startDNS(t, tool(t, "pebble-challtestsrv"))
	t.Cleanup(p.Stop)
	for attempt := 1; ; attempt++ {
		ports := FreePorts(t, 3, o.HTTPPort, o.TLSPort)
		p.addr, p.mgmt = "127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1])
		p.listen = p.addr
		if o.NoARI {
			p.listen = "127.0.0.1:" + strconv.Itoa(ports[2])
		}
		p.writeConfig(o)
		if o.NoARI {
			p.serveWithoutARI()
		}
		if o.Stopped {
			return p
		}
		// A port freed by FreePorts may be taken again before Pebble
		// binds it: then Pebble exits and another pair is tried.
		if p.start() || attempt == 3 {
			break
		}
	}
	if p.cmd == nil {
		t.Fatal("pebble did not start")
	}
	return p
}

// FreePorts returns n distinct loopback TCP ports that were free a
// moment ago (Pebble and the node it validates take fixed ports from
// their configs), none of them in avoid.
func FreePorts(t testing.TB, n int, avoid ...int) []int {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	// Below Linux's ephemeral range (32768-60999): a port found free here
	// stays free for the node that binds it later, since the other
	// servers of the test (Pebble, its DNS) bind port 0, which the kernel
	// takes from the ephemeral range.
	for candidate, tries := 20000+mrand.IntN(10000), 0; len(ports) < n; candidate, tries = candidate+1, tries+1 {
		if tries > 2000 {
			t.Fatal("no free port below the ephemeral range")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(candidate))
		if err != nil {
			continue
		}
		lns = append(lns, ln) // held open until all are chosen: no duplicates
		if !slices.Contains(avoid, candidate) {
			ports = append(ports, candidate)
		}
	}
	return ports
}

func freeAddr(t testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(FreePorts(t, 1)[0])
}

// freeDNSAddr is a loopback port free for both UDP and TCP: the DNS
// server takes both, and Pebble asks over TCP.
func freeDNSAddr(t testing.TB) string {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		c, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			c.Close()
			return addr
		}
	}
}

// startDNS runs pebble-challtestsrv answering every A query with
// 127.0.0.1 and no AAAA, and returns its address once it answers.
func startDNS(t testing.TB, bin string) string {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		addr := freeDNSAddr(t)
		cmd := exec.Command(bin, "-dnsserver", addr, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
			"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-management", freeAddr(t))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if dnsAnswers(addr) {
			return addr
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Logf("pebble-challtestsrv on %s did not answer: %s", addr, out.String())
	}
	t.Fatal("pebble-challtestsrv did not start")
	return ""
}

// dnsAnswers reports whether the DNS server answers over TCP, as Pebble
// asks.
func dnsAnswers(addr string) bool {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		ips, err := r.LookupHost(ctx, "probe.shoal.test")
		cancel()
		if err == nil && len(ips) > 0 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// writeConfig makes the CA and certificate of Pebble's own HTTPS (Pebble's
// test certificates are MPL-licensed files; making ours keeps the repo
// free of them) and Pebble's JSON config.
func (p *Pebble) writeConfig(o Options) {
	t := p.t
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shoal test pebble https CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p.RootsPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	p.Roots = x509.NewCertPool()
	p.Roots.AddCert(ca)
	write := func(name string, b []byte) string {
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	certPath := write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPath := write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	write("ca.pem", p.RootsPEM)
	validity := int64(o.Validity / time.Second)
	if validity <= 0 {
		validity = 7776000
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": p.listen, "managementListenAddress": p.mgmt,
		"certificate": certPath, "privateKey": keyPath,
		"httpPort": o.HTTPPort, "tlsPort": o.TLSPort,
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "default", "validityPeriod": validity}},
	}}
	b, _ := json.Marshal(cfg)
	p.cfg = write("pebble.json", b)
}

// serveWithoutARI answers clients on p.addr for Pebble on p.listen,
// dropping renewalInfo from the directory (Options.NoARI). The Host header
// goes through unchanged: Pebble builds its URLs, and checks the URL each
// request signs, from it.
func (p *Pebble) serveWithoutARI() {
	t := p.t
	if p.proxy != nil {
		_ = p.proxy.Close() // an earlier attempt's, on a port Pebble lost
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(p.dir, "cert.pem"), filepath.Join(p.dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	target := &url.URL{Scheme: "https", Host: p.listen}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport:      &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Roots}},
		ModifyResponse: dropARI,
		ErrorLog:       log.New(io.Discard, "", 0), // Pebble down: 502, as a CA that is down
	}
	srv := &http.Server{Handler: rp, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	p.proxy = srv
	t.Cleanup(func() { _ = srv.Close() })
}

// dropARI removes renewalInfo from Pebble's directory.
func dropARI(r *http.Response) error {
	if r.Request.URL.Path != "/dir" || r.StatusCode != http.StatusOK {
		return nil
	}
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return err
	}
	var dir map[string]any
	if err := json.Unmarshal(b, &dir); err != nil {
		return fmt.Errorf("pebble directory: %w", err)
	}
	delete(dir, "renewalInfo")
	if b, err = json.Marshal(dir); err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	r.Header.Set("Content-Length", strconv.Itoa(len(b)))
	return nil
}

// CAPath is a file holding the CA of Pebble's HTTPS, for acme.ca_root.
func (p *Pebble) CAPath() string { return filepath.Join(p.dir, "ca.pem") }

// Start runs Pebble (again, after Stop) and waits until its directory
// answers.
func (p *Pebble) Start() {
	if !p.start() {
		p.t.Fatal("pebble did not start")
	}
}

// start runs Pebble and reports whether its directory answers; false when
// it exited first.
func (p *Pebble) start() bool {
	t := p.t
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return true
	}
	cmd := exec.Command(p.bin, "-config", p.cfg, "-dnsserver", p.dns)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_VA_ALWAYS_VALID=0",
		"PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = &logWriter{t: t, p: p}, &logWriter{t: t, p: p}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmd, p.exited = cmd, exited
	client := p.HTTPClient()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			p.cmd = nil
			return false
		default:
		}
		resp, err := client.Get("https://" + p.listen + "/dir")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("pebble did not answer within 30s")
	return false
}

// Stop ends Pebble (the CA goes down); Start brings it back.
func (p *Pebble) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
}

// HTTPClient trusts Pebble's HTTPS.
func (p *Pebble) HTTPClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.Roots}}}
}

// IssuerRoots fetches the roots Pebble's chains end in (they change at
// every Pebble start) from its management port.
func (p *Pebble) IssuerRoots() *x509.CertPool {
	t := p.t
	pool := x509.NewCertPool()
	for i := 0; ; i++ {
		resp, err := p.HTTPClient().Get("https://" + p.mgmt + "/roots/" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			break
		}
		if !pool.AppendCertsFromPEM(b) {
			t.Fatalf("pebble root %d: no PEM", i)
		}
	}
	return pool
}

// Issued lists the serials (hex) of the certificates Pebble issued so
// far, oldest first: the orders that reached the CA, whichever node
// placed them.
func (p *Pebble) Issued() []string {
	p.issuedMu.Lock()
	defer p.issuedMu.Unlock()
	return slices.Clone(p.issued)
}

// issuedLine is how Pebble logs an issuance: "Issued certificate serial
// <hex> for order <id>".
const issuedLine = "Issued certificate serial "

func (p *Pebble) noteIssued(line string) {
	_, rest, ok := strings.Cut(line, issuedLine)
	if !ok {
		return
	}
	serial, _, _ := strings.Cut(rest, " ")
	p.issuedMu.Lock()
	defer p.issuedMu.Unlock()
	p.issued = append(p.issued, serial)
}

type logWriter struct {
	t testing.TB
	p *Pebble // nil: lines are only logged
}

func (w *logWriter) Write(b []byte) (int, error) {
	if w.p != nil {
		// Pebble writes each log line with one Write.
		for line := range strings.SplitSeq(string(b), "\n") {
			w.p.noteIssued(line)
		}
	}
	defer func() { _ = recover() }() // a line after the test ended
	w.t.Logf("pebble: %s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
