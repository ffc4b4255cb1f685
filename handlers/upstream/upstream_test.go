package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"shoal/handlers/books"
)

// backend is a Go test application on a real loopback listener.
func backend(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// named answers with its own name, so a test sees which target served.
func named(t testing.TB, name string) *httptest.Server {
	return backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
}

// front serves an Upstream built from o on a real listener.
func front(t testing.TB, o Options, site Site) (*Upstream, *httptest.Server) {
	t.Helper()
	u, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(u.Handler(site))
	t.Cleanup(func() { s.Close(); u.Close() })
	return u, s
}

func get(t testing.TB, c *http.Client, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// refused is an address where nothing listens.
func refused(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in, network, addr string
		fcgi, tls, bad    bool
	}{
		{in: "http://127.0.0.1:3000", network: "tcp", addr: "127.0.0.1:3000"},
		{in: "http://app", network: "tcp", addr: "app:80"},
		{in: "https://app", network: "tcp", addr: "app:443", tls: true},
		{in: "http://[::1]:8080/", network: "tcp", addr: "[::1]:8080"},
		{in: "unix:/run/app.sock", network: "unix", addr: "/run/app.sock"},
		{in: "fastcgi://127.0.0.1:9000", network: "tcp", addr: "127.0.0.1:9000", fcgi: true},
		{in: "fastcgi+unix:/run/php/fpm.sock", network: "unix", addr: "/run/php/fpm.sock", fcgi: true},
		{in: "fastcgi://127.0.0.1", bad: true},
		{in: "unix:app.sock", bad: true},
		{in: "ftp://h:1", bad: true},
		{in: "http://h:1/sub", bad: true},
		{in: "http://u:p@h:1", bad: true},
		{in: "127.0.0.1:3000", bad: true},
		{in: "", bad: true},
	} {
		e, err := ParseTarget(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
			continue
		}
		if err != nil || e.Network != tc.network || e.Address != tc.addr || e.FastCGI != tc.fcgi || e.TLS != tc.tls {
			t.Errorf("%q: %+v %v", tc.in, e, err)
		}
	}
}

// TestForwardedHeaders: forged X-Forwarded-* and hop-by-hop headers do not
// reach the target; fresh X-Forwarded-*, X-Request-ID and the configured
// headers do; strip_prefix maps the path.
func TestForwardedHeaders(t *testing.T) {
	var got http.Header
	var gotPath, gotHost string
	app := backend(t, func(w http.ResponseWriter, r *http.Request) {
		got, gotPath, gotHost = r.Header.Clone(), r.URL.RequestURI(), r.Host
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "hop")
		w.Header().Set("Keep-Alive", "timeout=5")
		io.WriteString(w, "ok")
	})
	_, fe := front(t, Options{Name: "app", Targets: []string{app.URL}, StripPrefix: "/api/",
		Headers: map[string]string{"X-App": "shoal", "-Cookie": ""}}, Site{})
	status, body, hdr := get(t, fe.Client(), fe.URL+"/api/v1/items?q=1",
		"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil", "X-Forwarded-Proto", "https",
		"X-Real-IP", "6.6.6.6", "Forwarded", "for=6.6.6.6", "X-Shoal-Hop", "forged",
		"Connection", "X-Drop", "X-Drop", "1", "Proxy-Authorization", "x",
		"X-Request-ID", "req-42", "Cookie", "a=b")
	if status != 200 || body != "ok" {
		t.Fatalf("%d %q", status, body)
	}
	if gotPath != "/v1/items?q=1" {
		t.Errorf("path %q, want /v1/items?q=1", gotPath)
	}
	if gotHost != strings.TrimPrefix(app.URL, "http://") {
		t.Errorf("Host %q", gotHost)
	}
	want := map[string]string{
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": strings.TrimPrefix(fe.URL, "http://"),
		"X-Forwarded-Proto": "http", "X-Request-Id": "req-42", "X-App": "shoal",
		"X-Real-Ip": "", "Forwarded": "", "X-Shoal-Hop": "", "X-Drop": "", "Proxy-Authorization": "", "Cookie": "",
	}
	for k, v := range want {
		if g := strings.Join(got.Values(k), ","); g != v {
			t.Errorf("target got %s = %q, want %q", k, g, v)
		}
	}
	if hdr.Get("X-Secret") != "" || hdr.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop response headers passed: %v", hdr)
	}
}

func TestStripPrefix(t *testing.T) {
	for _, tc := range []struct{ prefix, in, out string }{
		{"/api", "/api/x", "/x"},
		{"/api/", "/api/x/y", "/x/y"},
		{"/api", "/api", "/"},
		{"/api", "/apix", "/apix"},
		{"/api", "/other", "/other"},
	} {
		u := &url.URL{Path: tc.in}
		stripPrefix(u, strings.TrimSuffix(tc.prefix, "/"))
		if u.Path != tc.out {
			t.Errorf("strip %q from %q = %q, want %q", tc.prefix, tc.in, u.Path, tc.out)
		}
	}
}

func TestPolicies(t *testing.T) {
	a, b, c := named(t, "a"), named(t, "b"), named(t, "c")
	targets := []string{a.URL, b.URL, c.URL}
	count := func(t *testing.T, policy string, n int, hdr ...string) map[string]int {
		_, fe := front(t, Options{Name: "p", Targets: targets, Policy: policy}, Site{})
		seen := map[string]int{}
		for range n {
			_, body, _ := get(t, fe.Client(), fe.URL+"/", hdr...)
			seen[body]++
		}
		return seen
	}
	t.Run("round_robin", func(t *testing.T) {
		if got := count(t, RoundRobin, 30); got["a"] != 10 || got["b"] != 10 || got["c"] != 10 {
			t.Errorf("%v, want 10 each", got)
		}
	})
	t.Run("first", func(t *testing.T) {
		if got := count(t, First, 10); got["a"] != 10 {
			t.Errorf("%v, want all on a", got)
		}
	})
	t.Run("random", func(t *testing.T) {
		if got := count(t, Random, 90); len(got) != 3 {
			t.Errorf("%v, want all three used", got)
		}
	})
	t.Run("least_loaded", func(t *testing.T) {
		if got := count(t, LeastLoaded, 60); len(got) != 3 {
			t.Errorf("%v, want all three used when idle", got)
		}
	})
	t.Run("ip_hash", func(t *testing.T) {
		// One client always lands on one target; clients spread.
		u, err := New(Options{Name: "h", Targets: targets, Policy: IPHash})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		spread := map[string]bool{}
		for i := range 50 {
			client := fmt.Sprintf("10.0.%d.%d", i/250, i%250)
			first := u.pick(client, nil, time.Now().UnixNano()).Raw
			for range 5 {
				if got := u.pick(client, nil, time.Now().UnixNano()).Raw; got != first {
					t.Fatalf("client %s moved from %s to %s", client, first, got)
				}
			}
			spread[first] = true
		}
		if len(spread) != 3 {
			t.Errorf("50 clients on %d targets", len(spread))
		}
		// Only the clients of a target that goes down move.
		home := u.pick("10.9.9.9", nil, time.Now().UnixNano())
		other := u.targets[0]
		if other == home {
			other = u.targets[1]
		}
		other.skipUntil(time.Now().Add(time.Hour))
		if got := u.pick("10.9.9.9", nil, time.Now().UnixNano()); got != home {
			t.Errorf("client moved from %s to %s when another target went down", home.Raw, got.Raw)
		}
	})
}

// TestLeastLoaded: a target holding requests (here or on other nodes)
// gets no new ones while another is idle.
func TestLeastLoaded(t *testing.T) {
	release := make(chan struct{})
	var held atomic.Int32
	slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
		held.Add(1)
		<-release
		io.WriteString(w, "slow")
	})
	fast := named(t, "fast")
	u, fe := front(t, Options{Name: "ll", Targets: []string{slow.URL, fast.URL}, Policy: LeastLoaded}, Site{})
	u.SetRemoteInflight(fast.URL, 100) // so the first request goes to slow
	var wg sync.WaitGroup
	wg.Go(func() { get(t, fe.Client(), fe.URL+"/") })
	eventually(t, "a request held on slow", func() bool { return held.Load() == 1 })
	u.SetRemoteInflight(fast.URL, 0)
	for range 20 {
		if _, body, _ := get(t, fe.Client(), fe.URL+"/"); body != "fast" {
			t.Fatalf("got %q while slow was busy", body)
		}
	}
	close(release)
	wg.Wait()
	// Other nodes' in-flight count as much as this node's own.
	u.SetRemoteInflight(fast.URL, 5)
	for range 20 {
		if _, body, _ := get(t, fe.Client(), fe.URL+"/"); body != "slow" {
			t.Fatalf("got %q while fast was busy on other nodes", body)
		}
	}
	if s := u.Snapshot(); s.Targets[1].ClusterInflight != 5 || s.Targets[1].Inflight != 0 {
		t.Errorf("snapshot %+v", s)
	}
}

// TestPassiveHealth: a target that refuses is skipped for fail_timeout,
// every GET meanwhile answered by another; the cluster hears of it.
func TestPassiveHealth(t *testing.T) {
	dead, live := refused(t), named(t, "live")
	var marked atomic.Value
	u, fe := front(t, Options{Name: "ph", Targets: []string{dead, live.URL}, Policy: RoundRobin, Retries: 1,
		FailTimeout: time.Hour, OnMarkDown: func(target string, until time.Time) { marked.Store(target) }}, Site{})
	for range 10 {
		if status, body, _ := get(t, fe.Client(), fe.URL+"/"); status != 200 || body != "live" {
			t.Fatalf("%d %q", status, body)
		}
	}
	s := u.Snapshot()
	if s.Targets[0].Healthy || s.Targets[0].Failures != 1 || !s.Targets[1].Healthy {
		t.Errorf("snapshot %+v: want the dead target down after one failure", s)
	}
	if marked.Load() != dead {
		t.Errorf("OnMarkDown got %v", marked.Load())
	}
}

// TestNotRetried: a POST is never sent twice; with no target left it
// gets the site's 502 page, which does not show the error.
func TestNotRetried(t *testing.T) {
	dead, live := refused(t), named(t, "live")
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "502.html"), []byte("site 502 page"), 0o644)
	site := Site{Errors: &books.ErrorPages{Root: root, Pages: map[int]string{502: "502.html"}}}
	_, fe := front(t, Options{Name: "nr", Targets: []string{dead, live.URL}, Policy: First, Retries: 3}, site)
	resp, err := fe.Client().Post(fe.URL+"/", "text/plain", strings.NewReader("data"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || string(b) != "site 502 page" {
		t.Errorf("%d %q, want 502 with the site's page", resp.StatusCode, b)
	}
	// The dead target is now skipped: the next POST goes to live.
	resp, err = fe.Client().Post(fe.URL+"/", "text/plain", strings.NewReader("data"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "live" {
		t.Errorf("second POST: %q", b)
	}
}

// TestReplayedPUT: a small PUT body is sent again, whole, to the next target.
func TestReplayedPUT(t *testing.T) {
	dead := refused(t)
	live := backend(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	_, fe := front(t, Options{Name: "put", Targets: []string{dead, live.URL}, Policy: First, Retries: 1}, Site{})
	req, _ := http.NewRequest(http.MethodPut, fe.URL+"/", strings.NewReader("payload"))
	resp, err := fe.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "payload" {
		t.Errorf("%d %q", resp.StatusCode, b)
	}
}

func TestAllDown(t *testing.T) {
	_, fe := front(t, Options{Name: "down", Targets: []string{refused(t), refused(t)}, Retries: 1}, Site{})
	for range 3 {
		status, body, _ := get(t, fe.Client(), fe.URL+"/")
		if status != 502 || strings.Contains(body, "refused") || strings.Contains(body, "127.0.0.1") {
			t.Errorf("%d %q", status, body)
		}
	}
}

// TestTimeout504: a target that sends no header within timeout gives 504
// and is skipped.
func TestTimeout504(t *testing.T) {
	stop := make(chan struct{})
	slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})
	defer close(stop)
	u, fe := front(t, Options{Name: "slow", Targets: []string{slow.URL}, Timeout: 200 * time.Millisecond}, Site{})
	status, _, _ := get(t, fe.Client(), fe.URL+"/")
	if status != 504 {
		t.Errorf("status %d, want 504", status)
	}
	if s := u.Snapshot(); s.Targets[0].Healthy || s.Targets[0].Failures != 1 {
		t.Errorf("snapshot %+v", s)
	}
}

// TestUpstream5xx: the application's own error answers pass untouched.
func TestUpstream5xx(t *testing.T) {
	app := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", "1")
		w.WriteHeader(503)
		io.WriteString(w, "app is down for maintenance")
	})
	u, fe := front(t, Options{Name: "5xx", Targets: []string{app.URL}}, Site{})
	status, body, hdr := get(t, fe.Client(), fe.URL+"/")
	if status != 503 || body != "app is down for maintenance" || hdr.Get("X-App") != "1" {
		t.Errorf("%d %q", status, body)
	}
	if !u.Snapshot().Targets[0].Healthy {
		t.Error("a 503 from the application marked the target down")
	}
}

func TestActiveHealth(t *testing.T) {
	var sick atomic.Bool
	var checks atomic.Int32
	app := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			checks.Add(1)
			if sick.Load() {
				w.WriteHeader(500)
			}
			return
		}
		io.WriteString(w, "app")
	})
	backup := named(t, "backup")
	u, fe := front(t, Options{Name: "ah", Targets: []string{app.URL, backup.URL}, Policy: First,
		Health: "/healthz", HealthInterval: 20 * time.Millisecond}, Site{})
	healthy := func() bool { return u.Snapshot().Targets[0].Healthy }
	eventually(t, "first checks", func() bool { return checks.Load() >= 2 })
	if !healthy() {
		t.Fatal("unhealthy while its checks pass")
	}
	sick.Store(true)
	eventually(t, "target seen down", func() bool { return !healthy() })
	if _, body, _ := get(t, fe.Client(), fe.URL+"/"); body != "backup" {
		t.Errorf("request went to %q while app was down", body)
	}
	sick.Store(false)
	eventually(t, "target seen up", healthy)
	u.Close()
	n := checks.Load()
	time.Sleep(100 * time.Millisecond) // nothing to poll: checks must not come
	if checks.Load() != n {
		t.Error("checks went on after Close")
	}
}

// TestMarkDown: a target another node found down is skipped here.
func TestMarkDown(t *testing.T) {
	a, b := named(t, "a"), named(t, "b")
	u, fe := front(t, Options{Name: "md", Targets: []string{a.URL, b.URL}, Policy: First}, Site{})
	if !u.MarkDown(a.URL, time.Now().Add(time.Hour)) || u.MarkDown("http://nope:1", time.Now()) {
		t.Fatal("MarkDown's answer is wrong")
	}
	if _, body, _ := get(t, fe.Client(), fe.URL+"/"); body != "b" {
		t.Errorf("got %q, want b", body)
	}
	u.MarkDown(a.URL, time.Now().Add(-time.Second)) // never moves a skip back
	if u.Snapshot().Targets[0].Healthy {
		t.Error("an earlier until shortened the skip")
	}
}

func TestRedirectRewritten(t *testing.T) {
	var self string
	app := backend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/own":
			http.Redirect(w, r, self+"/login?next=1", http.StatusFound)
		default:
			http.Redirect(w, r, "https://elsewhere.example/x", http.StatusFound)
		}
	})
	self = app.URL
	_, fe := front(t, Options{Name: "rd", Targets: []string{app.URL}}, Site{})
	c := fe.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	_, _, hdr := get(t, c, fe.URL+"/own")
	if got := hdr.Get("Location"); got != fe.URL+"/login?next=1" {
		t.Errorf("Location %q, want %q", got, fe.URL+"/login?next=1")
	}
	_, _, hdr = get(t, c, fe.URL+"/other")
	if got := hdr.Get("Location"); got != "https://elsewhere.example/x" {
		t.Errorf("foreign Location changed: %q", got)
	}
}

func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "unix %s %s", r.Host, r.URL.Path)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	_, fe := front(t, Options{Name: "ux", Targets: []string{"unix:" + sock}}, Site{})
	status, body, _ := get(t, fe.Client(), fe.URL+"/p")
	if want := "unix " + strings.TrimPrefix(fe.URL, "http://") + " /p"; status != 200 || body != want {
		t.Errorf("%d %q, want %q", status, body, want)
	}
}

// TestWebSocket: messages cross the proxy both ways on one connection.
func TestWebSocket(t *testing.T) {
	app := backend(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		c.Write(r.Context(), websocket.MessageText, []byte("hello from app"))
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, append([]byte("echo: "), msg...))
		}
	})
	_, fe := front(t, Options{Name: "ws", Targets: []string{app.URL}}, Site{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(fe.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello from app" {
		t.Fatalf("server to client: %q %v", msg, err)
	}
	for _, m := range []string{"one", "two", strings.Repeat("x", 100<<10)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "echo: "+m {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(m), len(msg), err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestServerSentEvents: each event reaches the client while the response
// is still open.
func TestServerSentEvents(t *testing.T) {
	next := make(chan struct{})
	app := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	_, fe := front(t, Options{Name: "sse", Targets: []string{app.URL}}, Site{})
	resp, err := fe.Client().Get(fe.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: event %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		br.ReadString('\n')
		next <- struct{}{} // the application writes the next only now
	}
}

// TestClose: Close is idempotent and closes the idle pool.
func TestClose(t *testing.T) {
	u, err := New(Options{Name: "c", Targets: []string{"http://127.0.0.1:1"}, Health: "/h"})
	if err != nil {
		t.Fatal(err)
	}
	u.Close()
	u.Close()
}

func BenchmarkUpstream(b *testing.B) {
	payload := strings.Repeat("x", 1024)
	app := backend(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		io.WriteString(w, payload)
	})
	_, fe := front(b, Options{Name: "bench", Targets: []string{app.URL}}, Site{})
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(fe.URL + "/")
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != 1024 {
				b.Errorf("%d bytes", n)
				return
			}
		}
	})
}

// TestLoop: a target that is this server answers 508 at the second pass
// instead of proxying to itself until descriptors run out.
func TestLoop(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u, err := New(Options{Name: "loop", Targets: []string{"http://" + l.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	var passes atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		passes.Add(1)
		u.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close(); u.Close() })
	resp, err := http.Get("http://" + l.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusLoopDetected || passes.Load() != 2 {
		t.Errorf("status %d after %d passes, want 508 after 2", resp.StatusCode, passes.Load())
	}
}

// TestPrevious: an Upstream rebuilt on a reload still skips a target its
// predecessor found down, and sends the node's request ID.
func TestPrevious(t *testing.T) {
	var gotID atomic.Value
	a := backend(t, func(w http.ResponseWriter, r *http.Request) {
		gotID.Store(r.Header.Get("X-Request-ID"))
		io.WriteString(w, "a")
	})
	b := named(t, "b")
	old, err := New(Options{Name: "r", Targets: []string{a.URL, b.URL}})
	if err != nil {
		t.Fatal(err)
	}
	old.MarkDown(a.URL, time.Now().Add(time.Hour))
	old.SetRemoteInflight(b.URL, 7)
	old.Close()
	_, fe := front(t, Options{Name: "r", Targets: []string{b.URL, a.URL}, Policy: First, Previous: old}, Site{})
	if _, body, _ := get(t, fe.Client(), fe.URL+"/"); body != "b" {
		t.Fatalf("got %q", body)
	}
	u, fe2 := front(t, Options{Name: "r", Targets: []string{a.URL}, Policy: First, Previous: old,
		RequestID: func(*http.Request) string { return "id-1" }}, Site{})
	if s := u.Snapshot(); s.Targets[0].Healthy {
		t.Errorf("skip not inherited: %+v", s)
	}
	u.targets[0].downUntil.Store(0)
	if _, body, _ := get(t, fe2.Client(), fe2.URL+"/", "X-Request-ID", "forged"); body != "a" || gotID.Load() != "id-1" {
		t.Errorf("%q, X-Request-ID %v", body, gotID.Load())
	}
}

// TestCheckClearsSkip: a target skipped after a failed request takes
// requests again once its check passes, before fail_timeout ends.
func TestCheckClearsSkip(t *testing.T) {
	app := named(t, "app")
	u, fe := front(t, Options{Name: "cs", Targets: []string{app.URL}, FailTimeout: time.Hour,
		Health: "/", HealthInterval: 20 * time.Millisecond}, Site{})
	u.targets[0].skipUntil(time.Now().Add(time.Hour))
	eventually(t, "skip cleared by a check", func() bool { return u.Snapshot().Targets[0].Healthy })
	if _, body, _ := get(t, fe.Client(), fe.URL+"/"); body != "app" {
		t.Errorf("%q", body)
	}
}

// TestViaFromElsewhere: a request that passed other proxies (a CDN, a
// cluster peer: each adds Via) is proxied, not taken for a loop; what
// reaches the target names this upstream in a Via of its own.
func TestViaFromElsewhere(t *testing.T) {
	var gotVia atomic.Value
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotVia.Store(strings.Join(r.Header.Values("Via"), ", "))
		io.WriteString(w, "app")
	}))
	defer app.Close()
	u, err := New(Options{Name: "app", Targets: []string{app.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Add("Via", "1.1 cdn-edge, 1.1 web1")
	rec := httptest.NewRecorder()
	u.ServeHTTP(rec, req)
	via, _ := gotVia.Load().(string)
	if rec.Code != 200 || rec.Body.String() != "app" {
		t.Fatalf("with a Via from elsewhere: %d %q, want the app's answer", rec.Code, rec.Body)
	}
	if !strings.HasPrefix(via, "1.1 cdn-edge, 1.1 web1, ") || len(via) <= len("1.1 cdn-edge, 1.1 web1, ") {
		t.Errorf("Via at the target %q: want the prior hops and a token of this upstream", via)
	}
}
