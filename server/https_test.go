package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"shoal/server/config"
)

func noFollowClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func TestRedirectHTTP(t *testing.T) {
	named := []config.Site{{Hosts: []string{"a.test", "*.c.test"}}, {Hosts: []string{"B.test"}}}
	catchAll := []config.Site{{}, {Hosts: []string{"a.test"}}}
	laterCatchAll := []config.Site{{Hosts: []string{"a.test"}}, {}}
	wildOnly := []config.Site{{Hosts: []string{"*.c.test"}}}
	for _, tc := range []struct {
		name     string
		sites    []config.Site
		port     string
		method   string
		host     string
		target   string
		hasTLS   func(string) bool
		status   int
		location string
	}{
		{"named host", named, "8443", "GET", "a.test", "/p/q?x=1&y=%2F", nil, 308, "https://a.test:8443/p/q?x=1&y=%2F"},
		{"case and port dropped", named, "8443", "GET", "B.TEST:8080", "/", nil, 308, "https://b.test:8443/"},
		{"wildcard host", named, "8443", "GET", "x.c.test", "/a", nil, 308, "https://x.c.test:8443/a"},
		{"port 443 left out", named, "443", "GET", "a.test", "/a", nil, 308, "https://a.test/a"},
		{"POST keeps 308", named, "443", "POST", "a.test", "/form", nil, 308, "https://a.test/form"},
		{"foreign host not echoed", named, "8443", "GET", "evil.example", "/x", nil, 308, "https://a.test:8443/x"},
		{"deeper wildcard host, as vhosts route it", named, "8443", "GET", "y.x.c.test", "/", nil, 308, "https://y.x.c.test:8443/"},
		{"wildcard parent itself not echoed", named, "8443", "GET", "c.test", "/", nil, 308, "https://a.test:8443/"},
		{"a later hosts=[] site does not open echo", laterCatchAll, "443", "GET", "evil.example", "/", nil, 308, "https://a.test/"},
		{"path that looks like a host stays a path", named, "443", "GET", "a.test", "//evil.example/x", nil, 308, "https://a.test//evil.example/x"},
		{"catch-all site echoes a name its cert covers", catchAll, "8443", "GET", "other.example", "/", nil, 308, "https://other.example:8443/"},
		{"catch-all site echoes a covered IPv4", catchAll, "443", "GET", "192.0.2.1:8080", "/", nil, 308, "https://192.0.2.1/"},
		{"catch-all site echoes a covered IPv6", catchAll, "8443", "GET", "[::1]:8080", "/", nil, 308, "https://[::1]:8443/"},
		{"catch-all never echoes a name no cert covers", catchAll, "8443", "GET", "evil.example", "/", nil, 400, ""},
		{"catch-all refuses a bad name", catchAll, "443", "GET", "bad_-.x-", "/", nil, 400, ""},
		{"no TLS for host: served over http", named, "443", "GET", "a.test", "/", func(string) bool { return false }, 200, ""},
		{"no host to send to", wildOnly, "443", "GET", "evil.example", "/", nil, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") })
			covers := func(h string) bool { return h != "evil.example" } // what the test's certificate names
			srv := httptest.NewServer(redirectHTTPS(redirectOptions{Sites: tc.sites, HTTPSPort: tc.port, HasTLS: tc.hasTLS, Covers: covers})(next))
			defer srv.Close()
			req, err := http.NewRequest(tc.method, srv.URL+tc.target, strings.NewReader(""))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			resp, err := noFollowClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
			}
		})
	}
}

// TestRedirectAbsoluteForm sends a raw absolute-form request whose URL
// names a foreign host; Go takes the Host from it, and it must not be echoed.
func TestRedirectAbsoluteForm(t *testing.T) {
	h := redirectHTTPS(redirectOptions{Sites: []config.Site{{Hosts: []string{"a.test"}}}, HTTPSPort: "443"})(okHandler())
	srv := httptest.NewServer(h)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET http://evil.example/x?y=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != 308 || loc != "https://a.test/x?y=1" {
		t.Errorf("got %d %q", resp.StatusCode, loc)
	}
}

func TestParseHostHeader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"Example.COM", "example.com", true},
		{"example.com.", "example.com", true},
		{"example.com:8080", "example.com", true},
		{"10.0.0.1:80", "10.0.0.1", true},
		{"[2001:db8::1]:443", "2001:db8::1", true},
		{"[2001:DB8::1]", "2001:db8::1", true},
		{"", "", false},
		{"user@evil.com", "", false},
		{"evil.com/path", "", false},
		{"evil.com\\x", "", false},
		{"evil%2ecom", "", false},
		{"a..b", "", false},
		{"-a.b", "", false},
		{"[fe80::1%25eth0]", "", false},
		{"[10.0.0.1]", "", false},
		{"2001:db8::1", "", false}, // IPv6 needs brackets
		{"host:port", "", false},
		{"host:123456", "", false},
		{strings.Repeat("a", 64) + ".com", "", false},
	} {
		got, ok := parseHostHeader(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseHostHeader(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestHSTSOnlyOverHTTPS serves one handler on a plain and a TLS listener.
func TestHSTSOnlyOverHTTPS(t *testing.T) {
	f := newSNIFixture(t)
	m := newManager(t, f.tls, f.sites)
	h := hsts("max-age=63072000; includeSubDomains")(okHandler())
	plain := httptest.NewServer(h)
	defer plain.Close()
	secure := serveTLS(t, m.TLSConfig(), h)

	resp, err := http.Get(plain.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("Strict-Transport-Security"); v != "" {
		t.Errorf("HSTS over plain HTTP: %q", v)
	}
	client := protoClient(f.ca.pool, 1)
	defer client.CloseIdleConnections()
	resp, err = client.Get("https://" + secure + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("Strict-Transport-Security"); v != "max-age=63072000; includeSubDomains" {
		t.Errorf("HSTS over HTTPS: %q", v)
	}
	// The per-request form behaves the same.
	hdr := http.Header{}
	setHTTPSHeaders(hdr, httptest.NewRequest("GET", "http://a.test/", nil), "max-age=1", "h3=\":1\"")
	if len(hdr) != 0 {
		t.Errorf("setHTTPSHeaders over plain HTTP set %v", hdr)
	}
	setHTTPSHeaders(hdr, httptest.NewRequest("GET", "https://a.test/", nil), "max-age=1", "")
	if hdr.Get("Strict-Transport-Security") != "max-age=1" || hdr.Get("Alt-Svc") != "" {
		t.Errorf("setHTTPSHeaders over HTTPS set %v", hdr)
	}
	if hsts("")(h) == nil {
		t.Error("hsts(\"\") must return next")
	}
}

// TestHTTP3 serves a page over QUIC with the manager's config, fetches it
// with quic-go's client, and checks Alt-Svc on the TCP listener.
func TestHTTP3(t *testing.T) {
	f := newSNIFixture(t)
	m := newManager(t, f.tls, f.sites)
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello over %s tls=%v", r.Proto, r.TLS != nil)
	})
	h3, err := startHTTP3(http3Options{Addr: "127.0.0.1:0", TLS: m.TLSConfig(), Handler: hsts("max-age=1")(page), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h3.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()

	tr := &http3.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: f.ca.pool}}
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get("https://" + h3.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 3 || string(body) != "hello over HTTP/3.0 tls=true" {
		t.Errorf("got %s %q", resp.Proto, body)
	}
	if resp.TLS == nil || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 2 {
		t.Error("HTTP/3 did not use the SNI-chosen certificate")
	}
	if resp.Header.Get("Strict-Transport-Security") != "max-age=1" {
		t.Error("no HSTS over HTTP/3")
	}

	port := h3.Addr().(*net.UDPAddr).Port
	want := fmt.Sprintf(`h3=":%d"; ma=86400`, port)
	if h3.AltSvc() != want {
		t.Errorf("AltSvc() = %q, want %q", h3.AltSvc(), want)
	}
	addr := serveTLS(t, m.TLSConfig(), altSvc(h3.AltSvc())(okHandler()))
	tcp := protoClient(f.ca.pool, 2)
	defer tcp.CloseIdleConnections()
	resp, err = tcp.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Alt-Svc"); got != want {
		t.Errorf("Alt-Svc over HTTPS = %q, want %q", got, want)
	}
	plain := httptest.NewServer(altSvc(h3.AltSvc())(okHandler()))
	defer plain.Close()
	resp, err = http.Get(plain.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Alt-Svc"); got != "" {
		t.Errorf("Alt-Svc over plain HTTP: %q", got)
	}
}
