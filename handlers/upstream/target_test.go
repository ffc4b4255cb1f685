package upstream

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzParseTarget: any string either fails or gives an endpoint a dialer
// can use, with the kind its prefix says.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:3000", "https://h", "unix:/s.sock", "fastcgi://h:9000",
		"fastcgi+unix:/run/php.sock", "http://[::1]:80/", "http://:80", "fastcgi://h", "unix:", "http://h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseTarget(s)
		if err != nil {
			return
		}
		if e.Raw != s || e.Address == "" {
			t.Fatalf("%q: %+v", s, e)
		}
		switch e.Network {
		case "unix":
			if !strings.HasPrefix(e.Address, "/") || !strings.HasPrefix(s, "unix:") && !strings.HasPrefix(s, "fastcgi+unix:") {
				t.Fatalf("%q: %+v", s, e)
			}
		case "tcp":
			if e.FastCGI != strings.HasPrefix(s, "fastcgi://") || e.TLS != strings.HasPrefix(s, "https://") {
				t.Fatalf("%q: %+v", s, e)
			}
		default:
			t.Fatalf("%q: network %q", s, e.Network)
		}
	})
}

// TestHTTPSTarget: an https:// target is reached over TLS, verified with
// the configured roots.
func TestHTTPSTarget(t *testing.T) {
	app := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls "+r.Header.Get("X-Forwarded-Proto"))
	}))
	defer app.Close()
	roots := app.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	_, fe := front(t, Options{Name: "tls", Targets: []string{app.URL}, TLS: &tls.Config{RootCAs: roots}}, Site{})
	if status, body, _ := get(t, fe.Client(), fe.URL+"/"); status != 200 || body != "tls http" {
		t.Errorf("%d %q", status, body)
	}
	// Without the roots the certificate is refused: 502, not a silent pass.
	_, fe2 := front(t, Options{Name: "tls2", Targets: []string{app.URL}}, Site{})
	if status, _, _ := get(t, fe2.Client(), fe2.URL+"/"); status != 502 {
		t.Errorf("unverified target: %d", status)
	}
}

// TestHTTP2Client: a client speaking HTTP/2 to shoal gets proxied
// answers and events as they come, as over HTTP/1.1.
func TestHTTP2Client(t *testing.T) {
	next := make(chan struct{})
	app := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: two\n\n")
	})
	u, err := New(Options{Name: "h2", Targets: []string{app.URL}})
	if err != nil {
		t.Fatal(err)
	}
	fe := httptest.NewUnstartedServer(u)
	fe.EnableHTTP2 = true
	fe.StartTLS()
	t.Cleanup(func() { fe.Close(); u.Close() })
	resp, err := fe.Client().Get(fe.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s", resp.Proto)
	}
	buf := make([]byte, len("data: one\n\n"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "data: one\n\n" {
		t.Fatalf("%q %v", buf, err)
	}
	close(next)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "data: two\n\n" {
		t.Errorf("%q", rest)
	}
}
