package server

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"shoal/handlers/admin"
	"shoal/internal/acme/acmetest"
)

// acmeNodeConfig writes a config serving www/ for hosts with [acme] on.
func acmeNodeConfig(t *testing.T, dir string, httpPort, httpsPort int, ca, caRoot, acmeExtra string, hosts string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("home\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`[log]
access = "off"

[server]
http = "127.0.0.1:%d"
https = "127.0.0.1:%d"
admin = "127.0.0.1:0"
drain_delay = "0s"

[tls]
redirect_http = true

[acme]
enabled = true
ca = %q
ca_root = %q
storage = "acme-state"
%s

[[site]]
hosts = %s
root = "www"
`, httpPort, httpsPort, ca, caRoot, acmeExtra, hosts)
	path := filepath.Join(dir, "shoal.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestNodeACME: a node orders its site's name from Pebble, by http-01
// through an http listener that redirects everything else to https, or by
// tls-alpn-01 on its https listener; serves it chaining to Pebble's root,
// keeps localhost on the self-signed fallback, and lists both on
// /api/certificates.
func TestNodeACME(t *testing.T) {
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) { testNodeACME(t, challenge) })
	}
}

func testNodeACME(t *testing.T, challenge string) {
	ports := acmetest.FreePorts(t, 2)
	hp, tp := ports[0], ports[1]
	p := acmetest.Start(t, acmetest.Options{HTTPPort: hp, TLSPort: tp})
	roots := p.IssuerRoots()
	dir := t.TempDir()
	path := acmeNodeConfig(t, dir, hp, tp, p.Directory(), p.CAPath(), fmt.Sprintf("challenges = [%q]", challenge),
		`["www.shoal.test", "localhost"]`)
	n := runNode(t, path)
	httpsAddr := n.Addrs()["https"]

	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: "www.shoal.test", RootCAs: roots})
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate chaining to Pebble's root: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if org := conn.ConnectionState().PeerCertificates[0].Subject.Organization; len(org) == 0 || org[0] != "shoal self-signed" {
		t.Errorf("localhost served %v, want the self-signed certificate", org)
	}
	conn.Close()

	// Other http requests are still redirected.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(hp)+"/", nil)
	req.Host = "www.shoal.test"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("GET / on http = %d, want 308", resp.StatusCode)
	}

	resp, err = http.Get("http://" + n.Addrs()["admin"] + "/api/certificates")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct{ Certificates []admin.Certificate }
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("/api/certificates: %v: %s", err, body)
	}
	sources := map[string]admin.Certificate{}
	for _, c := range got.Certificates {
		sources[c.Source] = c
	}
	if a := sources["acme"]; len(a.Names) != 1 || a.Names[0] != "www.shoal.test" || a.NotAfter.Before(time.Now()) || a.OrderedBy == "" {
		t.Errorf("acme entry = %+v; body %s", a, body)
	}
	if _, ok := sources["self_signed"]; !ok {
		t.Errorf("no self_signed entry: %s", body)
	}
}

// TestNodeACMEFallbackWhileCADown: with the CA unreachable a node starts
// at once and serves the name with the self-signed fallback.
func TestNodeACMEFallbackWhileCADown(t *testing.T) {
	dir := t.TempDir()
	caRoot := filepath.Join(dir, "ca.pem")
	writeFile(t, caRoot, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newTestCA(t).cert.Raw}))
	path := acmeNodeConfig(t, dir, 0, 0, "https://127.0.0.1:"+strconv.Itoa(acmetest.FreePorts(t, 1)[0])+"/dir", caRoot, "", `["down.shoal.test"]`)
	n := runNode(t, path)
	conn, err := tls.Dial("tcp", n.Addrs()["https"], &tls.Config{ServerName: "down.shoal.test", InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake while the CA is down: %v", err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	if leaf.VerifyHostname("down.shoal.test") != nil {
		t.Errorf("fallback certificate does not name the host: %v", leaf.DNSNames)
	}
}
