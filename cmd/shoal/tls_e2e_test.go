package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// e2eCA issues throwaway certificates for the TLS end-to-end tests.
type e2eCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newE2ECA(t *testing.T) *e2eCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1000), Subject: pkix.Name{CommonName: "shoal e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &e2eCA{cert: cert, key: key, pool: pool}
}

// leaf writes certFile and keyFile for a.test with the given serial.
func (ca *e2eCA) leaf(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "a.test"}, DNSNames: []string{"a.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
}

const tlsE2EConfig = `[server]
drain_delay = "100ms"
shutdown_grace = "30s"

[tls]
cert = "a.pem"
key = "a.key"
redirect_http = true
hsts = "max-age=600"
http3 = true

[[site]]
hosts = ["a.test"]
root = "www"
`

// TestE2ETLS runs the real binary with HTTPS, redirect_http, HSTS and
// HTTP/3, and renews the certificate with SIGHUP during a download.
func TestE2ETLS(t *testing.T) {
	ca := newE2ECA(t)
	dir := siteDir(t, tlsE2EConfig)
	certFile, keyFile := filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key")
	ca.leaf(t, certFile, keyFile, 1)

	var httpsAddr string
	p := startArgs(t, dir, func() []string {
		httpsAddr = freeAddr(t)
		return []string{"-https", httpsAddr}
	})
	httpAddr := p.addr
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)

	// redirect_http: a configured host keeps its name, a foreign one is not echoed.
	for host, want := range map[string]string{
		"a.test":       "https://a.test:" + httpsPort + "/index.html?q=1",
		"evil.example": "https://a.test:" + httpsPort + "/index.html?q=1",
	} {
		req, _ := http.NewRequest("GET", "http://"+httpAddr+"/index.html?q=1", nil)
		req.Host = host
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("http Host %s: %d %q, want 308 %q", host, resp.StatusCode, resp.Header.Get("Location"), want)
		}
		if resp.Header.Get("Strict-Transport-Security") != "" {
			t.Error("HSTS sent over plain HTTP")
		}
	}

	// HTTPS over HTTP/2: the page, HSTS, Alt-Svc.
	h2 := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: ca.pool}, ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	resp, err := (&http.Client{Transport: h2, Timeout: 10 * time.Second}).Get("https://" + httpsAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !strings.Contains(string(body), "shoal e2e") {
		t.Errorf("HTTPS: %s %q", resp.Proto, body)
	}
	if resp.Header.Get("Strict-Transport-Security") != "max-age=600" {
		t.Errorf("HSTS over HTTPS = %q", resp.Header.Get("Strict-Transport-Security"))
	}
	if want := `h3=":` + httpsPort + `"; ma=86400`; resp.Header.Get("Alt-Svc") != want {
		t.Errorf("Alt-Svc = %q, want %q", resp.Header.Get("Alt-Svc"), want)
	}

	// HTTP/3 on the same port number over UDP.
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: ca.pool}}
	defer h3.Close()
	resp, err = (&http.Client{Transport: h3, Timeout: 10 * time.Second}).Get("https://" + httpsAddr + "/")
	if err != nil {
		t.Fatalf("HTTP/3: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 3 || !strings.Contains(string(body), "shoal e2e") {
		t.Errorf("HTTP/3: %s %q", resp.Proto, body)
	}

	// A 16 MiB download starts with the old certificate and pauses (the
	// client stops reading); the cert is renewed and SIGHUP sent; a new
	// handshake shows the new serial; the download then completes.
	h1 := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: ca.pool}, DisableCompression: true}
	defer h1.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+httpsAddr+"/big.bin", nil)
	big, err := h1.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Body.Close()
	if _, err := io.ReadFull(big.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if s := big.TLS.PeerCertificates[0].SerialNumber.Int64(); s != 1 {
		t.Fatalf("download started with serial %d, want 1", s)
	}
	ca.leaf(t, certFile, keyFile, 2)
	p.signal(syscall.SIGHUP)
	serial := func() int64 {
		c, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: "a.test", RootCAs: ca.pool})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	pollFor(t, "the renewed certificate after SIGHUP", func() bool { return serial() == 2 })
	rest, err := io.Copy(io.Discard, big.Body)
	if err != nil || rest+64<<10 != bigSize {
		t.Errorf("download over the old connection: %d bytes, err %v; want %d", rest+64<<10, err, bigSize)
	}

	// A broken renewal keeps the current certificate and logs why.
	writeFile(t, keyFile, "not a key")
	p.signal(syscall.SIGHUP)
	pollFor(t, "the refused reload in the log", func() bool { return strings.Contains(p.stderr.String(), "tls.key") })
	if s := serial(); s != 2 {
		t.Errorf("after a broken renewal serial %d, want 2 kept", s)
	}

	p.signal(syscall.SIGTERM)
	if code := p.waitExit(20 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// TestE2ECheckTLS: `shoal check` reports a key that does not match its
// certificate at the key's line, naming the file, with exit code 2.
func TestE2ECheckTLS(t *testing.T) {
	ca := newE2ECA(t)
	good := strings.Replace(tlsE2EConfig, "[server]\n", "[server]\nhttps = \"127.0.0.1:0\"\n", 1)
	dir := siteDir(t, good)
	ca.leaf(t, filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key"), 1)
	ca.leaf(t, filepath.Join(dir, "other.pem"), filepath.Join(dir, "other.key"), 2)
	bad := strings.Replace(good, `key = "a.key"`, `key = "other.key"`, 1)
	writeFile(t, filepath.Join(dir, "bad.toml"), bad)
	if code, out, errOut := runShoal(t, dir, "check", "-config", "config.toml"); code != 0 {
		t.Fatalf("check of a good TLS config: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runShoal(t, dir, "check", "-config", "bad.toml")
	want := fmt.Sprintf("bad.toml:8:1: tls.key: %s does not match the certificate in %s", filepath.Join(dir, "other.key"), filepath.Join(dir, "a.pem"))
	if code != 2 || !strings.Contains(out+errOut, want) {
		t.Errorf("check: exit %d, output:\n%s%s\nwant exit 2 and %q", code, out, errOut, want)
	}
}
