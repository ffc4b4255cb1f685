package main

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// specTLSExtra serves HTTPS with a cert and key kept under the root (the
// key must not be served), HSTS and the http->https redirect.
const specTLSExtra = `
[tls]
cert = "www/tls/cert.pem"
key = "www/tls/key.pem"
redirect_http = true
hsts = "max-age=600"
`

// TestSpecTLS: SPEC "TLS" and "Sessions": TLS 1.2 minimum, HTTP/2 by
// default, HSTS, 308 to https, Secure session cookies over HTTPS, HTTPS=on
// for CGI, an HTTP/2 body without a length given one, the key unserved.
func TestSpecTLS(t *testing.T) {
	t.Parallel()
	dir := specSite(t, specTLSExtra)
	if err := os.Mkdir(filepath.Join(dir, "www", "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	newE2ECA(t).leaf(t, filepath.Join(dir, "www", "tls", "cert.pem"), filepath.Join(dir, "www", "tls", "key.pem"), 7)
	var httpsAddr string
	p := startArgs(t, dir, func() []string {
		httpsAddr = freeAddr(t)
		return []string{"-https", httpsAddr}
	})
	base := "https://" + httpsAddr
	h2 := &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{ForceAttemptHTTP2: true, DisableCompression: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer h2.CloseIdleConnections()

	cases := []specCase{
		{name: "HSTS over HTTPS", req: specReq{path: "/"}, status: 200, hdr: map[string]string{"Strict-Transport-Security": "max-age=600"}},
		{name: "private key not served", req: specReq{path: "/tls/key.pem"}, status: 404, hasNot: []string{"PRIVATE KEY"}},
		{name: "page sees TLS", req: specReq{path: "/data"}, status: 200, has: []string{"TLS=true\n"}},
		{name: "CGI HTTPS=on", req: specReq{path: "/cgi-bin/env.sh"}, status: 200, has: []string{"HTTPS=on\n", "SERVER_PROTOCOL=HTTP/2.0\n"}},
		{name: "HTTP/2 body without length", req: specReq{method: "POST", path: "/cgi-bin/env.sh",
			body: io.MultiReader(strings.NewReader("h2 "), strings.NewReader("body"))},
			status: 200, has: []string{"CONTENT_LENGTH=7\n", "BODY=h2 body\n"}},
	}
	runSpecCases(t, p, h2, base, cases)

	t.Run("HTTP/2 negotiated", func(t *testing.T) {
		resp, _ := specDo(t, h2, base, specReq{path: "/"})
		if resp.ProtoMajor != 2 {
			t.Errorf("proto %s, want HTTP/2", resp.Proto)
		}
	})
	t.Run("redirect_http 308", func(t *testing.T) {
		resp, _ := specDo(t, specClient(), p.url, specReq{path: "/r.txt?x=1", hdr: []string{"Host", "a.test"}})
		_, port, _ := net.SplitHostPort(httpsAddr)
		if resp.StatusCode != 308 || resp.Header.Get("Location") != "https://a.test:"+port+"/r.txt?x=1" {
			t.Errorf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("Secure session cookie", func(t *testing.T) {
		resp, _ := specDo(t, h2, base, specReq{path: "/cgi-bin/sess.sh"})
		cookie := resp.Header.Get("Set-Cookie")
		for _, flag := range []string{"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} {
			if !strings.Contains(cookie, flag) {
				t.Errorf("Set-Cookie %q lacks %s", cookie, flag)
			}
		}
	})
	versions := []struct {
		name string
		max  uint16
		ok   bool
	}{
		{"TLS 1.0 refused", tls.VersionTLS10, false},
		{"TLS 1.1 refused", tls.VersionTLS11, false},
		{"TLS 1.2 accepted", tls.VersionTLS12, true},
		{"TLS 1.3 accepted", tls.VersionTLS13, true},
	}
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", httpsAddr,
				&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: v.max})
			if err == nil {
				conn.Close()
			}
			if (err == nil) != v.ok {
				t.Errorf("handshake with max version %x: err %v, want ok=%v", v.max, err, v.ok)
			}
		})
	}
}
