package h2

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// diffMux is the handlers both servers run in TestDifferential.
func diffMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		var code int
		fmt.Sscan(r.PathValue("code"), &code)
		w.WriteHeader(code)
		io.WriteString(w, "body of "+r.PathValue("code"))
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Set-Cookie", "a=1")
		h.Add("Set-Cookie", "b=2")
		h.Set("X-Custom", "v")
		h.Set("Content-Type", "application/json")
		h.Set("Connection", "close")             // connection-specific: dropped
		h.Set("Transfer-Encoding", "chunked")    // likewise
		h.Set("X-Bad-Value", "a\r\nInjected: 1") // not sendable: dropped
		io.WriteString(w, `{"ok":true}`)
	})
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<!DOCTYPE html><p>sniffed") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("0123456789"), 10<<10)) })
	mux.HandleFunc("/length", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "exact")
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "short")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("on purpose") })
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "with trailers")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	})
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "second")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	mux.HandleFunc("/early", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "after hints")
	})
	mux.HandleFunc("/request", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s host=%s uri=%s proto=%s len=%d cookie=%q te=%q body=%q trailer=%v",
			r.Method, r.URL, r.Host, r.RequestURI, r.Proto, r.ContentLength, r.Header.Get("Cookie"), r.TransferEncoding, body, r.Trailer)
	})
	return mux
}

// diffResult is what the two servers' answers are compared on.
type diffResult struct {
	err     bool // the response failed (reset, short body)
	status  int
	header  string
	body    string
	trailer string
}

func diffDo(t *testing.T, c *http.Client, base string, method, path, body string, hdr http.Header) diffResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return diffResult{err: true}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return diffResult{err: true, status: resp.StatusCode}
	}
	return diffResult{status: resp.StatusCode, header: headerString(resp.Header, "Date"), body: string(b), trailer: headerString(resp.Trailer)}
}

func headerString(h http.Header, skip ...string) string {
	var lines []string
	for k, vv := range h {
		if !contains(skip, k) {
			lines = append(lines, k+": "+strings.Join(vv, " | "))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestDifferential: internal/h2 and net/http's own HTTP/2 server run the
// same handlers and give the same answers (status, header but Date, body,
// trailers, or both fail) to a table of requests, errors included.
func TestDifferential(t *testing.T) {
	mux := diffMux()
	quiet := discardLogger()
	ours := newServer(t, &Server{Logger: quiet}, mux)
	std := httptest.NewUnstartedServer(mux)
	std.EnableHTTP2 = true
	std.Config.ErrorLog = log.New(io.Discard, "", 0) // the panics are on purpose
	std.StartTLS()
	t.Cleanup(std.Close)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableCompression: true}}
	cookies := http.Header{"Cookie": {"a=1", "b=2"}}
	for _, tc := range []struct {
		method, path, body string
		hdr                http.Header
	}{
		{"GET", "/hello", "", nil},
		{"HEAD", "/hello", "", nil},
		{"GET", "/empty", "", nil},
		{"HEAD", "/empty", "", nil},
		{"GET", "/status/201", "", nil},
		{"GET", "/status/204", "", nil},
		{"GET", "/status/304", "", nil},
		{"GET", "/status/404", "", nil},
		{"GET", "/status/500", "", nil},
		{"GET", "/status/599", "", nil},
		{"GET", "/headers", "", nil},
		{"GET", "/sniff", "", nil},
		{"GET", "/big", "", nil},
		{"HEAD", "/big", "", nil},
		{"GET", "/length", "", nil},
		{"GET", "/short", "", nil},
		{"GET", "/panic", "", nil},
		{"GET", "/abort", "", nil},
		{"GET", "/trailers", "", nil},
		{"GET", "/flush", "", nil},
		{"POST", "/echo", "echo me", nil},
		{"POST", "/echo", strings.Repeat("u", 300<<10), nil},
		{"GET", "/early", "", nil},
		{"GET", "/request?q=1&r=%2F", "", cookies},
		{"POST", "/request", "a body", http.Header{"Content-Type": {"text/plain"}}},
		{"PUT", "/request", "", nil},
		{"GET", "/missing", "", nil},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			want := diffDo(t, c, std.URL, tc.method, tc.path, tc.body, tc.hdr)
			got := diffDo(t, c, ours.URL, tc.method, tc.path, tc.body, tc.hdr)
			// The servers' own addresses differ, nothing else may.
			want.body = strings.ReplaceAll(want.body, std.Listener.Addr().String(), "SERVER")
			got.body = strings.ReplaceAll(got.body, ours.Listener.Addr().String(), "SERVER")
			if got.err != want.err {
				t.Fatalf("failed: internal/h2 %v, net/http %v", got.err, want.err)
			}
			if got.err {
				return
			}
			if got.status != want.status {
				t.Errorf("status %d, net/http %d", got.status, want.status)
			}
			if got.header != want.header {
				t.Errorf("header:\n%s\nnet/http:\n%s", got.header, want.header)
			}
			if got.body != want.body {
				t.Errorf("body %.200q, net/http %.200q", got.body, want.body)
			}
			if got.trailer != want.trailer {
				t.Errorf("trailer %q, net/http %q", got.trailer, want.trailer)
			}
		})
	}
}
