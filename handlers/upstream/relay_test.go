package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"shoal/internal/forward"
)

// relay runs h.Relay for in into a WireSink and reads the answer back.
func relay(t *testing.T, h *Handler, in *Inbound) (bool, error, *http.Response, string) {
	t.Helper()
	var out bytes.Buffer
	wrote, err := h.Relay(context.Background(), in, &forward.WireSink{W: &out, HEAD: in.Method == "HEAD"})
	if !wrote {
		return wrote, err, nil, ""
	}
	res, rerr := http.ReadResponse(bufio.NewReader(&out), &http.Request{Method: in.Method})
	if rerr != nil {
		t.Fatalf("relayed answer unreadable: %v", rerr)
	}
	body, _ := io.ReadAll(res.Body)
	return wrote, err, res, string(body)
}

// TestRelay: a request from a server's own HTTP/1.1 path reaches the
// target as ServeHTTP's does (fresh X-Forwarded-*, Via, the request's ID,
// strip_prefix, no forged or hop-by-hop field) and its answer comes back
// with the redirect pointed at the client's address.
func TestRelay(t *testing.T) {
	var got http.Header
	var gotURI, gotHost string
	var appHost string
	app := backend(t, func(w http.ResponseWriter, r *http.Request) {
		got, gotURI, gotHost = r.Header.Clone(), r.RequestURI, r.Host
		w.Header().Set("Location", "http://"+appHost+"/next")
		w.Header().Set("X-App", "1")
		io.WriteString(w, "app")
	})
	appHost = strings.TrimPrefix(app.URL, "http://")
	u, err := New(Options{Name: "r", Targets: []string{app.URL}, StripPrefix: "/api/",
		Headers: map[string]string{"X-Conf": "c", "-Cookie": ""}})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	in := &Inbound{Method: "GET", Target: "/api/v1?q=1", Host: "site.example", ClientIP: "192.0.2.7", TLS: true, RequestID: "id-9",
		Lines: "Host: site.example\r\nX-Forwarded-For: 6.6.6.6\r\nX-Shoal-Hop: forged\r\nConnection: x-drop\r\nX-Drop: 1\r\n" +
			"X-Request-ID: forged\r\nCookie: a=b\r\nAccept: text/plain\r\nVia: 1.1 cdn\r\n\r\n"}
	wrote, err, res, body := relay(t, u.Handler(Site{}), in)
	if !wrote || err != nil || res.StatusCode != 200 || body != "app" || res.Header.Get("X-App") != "1" {
		t.Fatalf("wrote %v err %v body %q", wrote, err, body)
	}
	if loc := res.Header.Get("Location"); loc != "https://site.example/next" {
		t.Errorf("Location %q", loc)
	}
	if gotURI != "/v1?q=1" || gotHost != appHost {
		t.Errorf("target got %s with Host %s", gotURI, gotHost)
	}
	want := map[string]string{"X-Forwarded-For": "192.0.2.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "site.example",
		"X-Request-Id": "id-9", "X-Conf": "c", "Accept": "text/plain", "X-Shoal-Hop": "", "X-Drop": "", "Cookie": "", "Connection": ""}
	for k, v := range want {
		if g := strings.Join(got.Values(k), ","); g != v {
			t.Errorf("target got %s = %q, want %q", k, g, v)
		}
	}
	if via := strings.Join(got.Values("Via"), ", "); via != "1.1 cdn, "+u.via {
		t.Errorf("Via %q", via)
	}
}

// TestRelayFailover: a refusing target is skipped for the next one and
// marked down, as by ServeHTTP; with every target down nothing is
// written and the caller is told why.
func TestRelayFailover(t *testing.T) {
	dead := refused(t)
	u, err := New(Options{Name: "f", Targets: []string{dead, named(t, "b").URL}, Policy: First, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	h := u.Handler(Site{})
	in := &Inbound{Method: "GET", Target: "/", Host: "h", ClientIP: "127.0.0.1"}
	if wrote, err, _, body := relay(t, h, in); !wrote || err != nil || body != "b" {
		t.Fatalf("wrote %v err %v body %q", wrote, err, body)
	}
	if s := u.Snapshot(); s.Targets[0].Healthy || s.Targets[0].Failures != 1 {
		t.Errorf("refusing target not marked: %+v", s.Targets[0])
	}
	u2, _ := New(Options{Name: "d", Targets: []string{dead}})
	defer u2.Close()
	if wrote, err, _, _ := relay(t, u2.Handler(Site{}), in); wrote || !errors.Is(err, forward.ErrNoResponse) {
		t.Errorf("all down: wrote %v err %v", wrote, err)
	}
}

// TestRelayDeclines: what Relay does not take is left, unwritten, to
// ServeHTTP: a method with a body, a request that looped, an escaped
// path under strip_prefix.
func TestRelayDeclines(t *testing.T) {
	u, err := New(Options{Name: "n", Targets: []string{named(t, "a").URL}, StripPrefix: "/api"})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	h := u.Handler(Site{})
	for _, in := range []*Inbound{
		{Method: "POST", Target: "/api/x", Host: "h"},
		{Method: "GET", Target: "/api/x", Host: "h", Lines: "Via: " + u.via + "\r\n\r\n"},
		{Method: "GET", Target: "/api/%78", Host: "h"},
		{Method: "GET", Target: "http://h/api/x", Host: "h"},
	} {
		if wrote, err, _, _ := relay(t, h, in); wrote || !errors.Is(err, errNotRelayed) {
			t.Errorf("%s %s: wrote %v err %v", in.Method, in.Target, wrote, err)
		}
	}
}

// TestStreamedUpload: a body of unknown length (chunked from the client)
// reaches the application whole, streamed, not held.
func TestStreamedUpload(t *testing.T) {
	app := backend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, strings.Join(r.TransferEncoding, ",")+" "+strconv.Itoa(len(b)))
	})
	_, fe := front(t, Options{Name: "up", Targets: []string{app.URL}}, Site{})
	pr, pw := io.Pipe()
	go func() {
		for range 64 {
			pw.Write(bytes.Repeat([]byte("x"), 1000))
		}
		pw.Close()
	}()
	res, err := http.Post(fe.URL+"/", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(body) != "chunked 64000" {
		t.Errorf("%d %q", res.StatusCode, body)
	}
}
