package fastcgi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/internal/testenv"
)

// fpm is a php-fpm started by a test with its own config.
type fpm struct {
	network, address string
	dir              string
}

// startFPM starts php-fpm on a unix socket in a temp folder, or on a
// free loopback port ("tcp"), with 3 workers and no output buffering.
func startFPM(t *testing.T, network string) *fpm {
	t.Helper()
	p := testenv.StartPHPFPM(t, testenv.FPMOptions{Listen: network, Children: 3, NoIni: true,
		Pool: "pm.status_path = /fpm-status", Args: []string{"-d", "output_buffering=0"}})
	return &fpm{network: p.Network, address: p.Address, dir: p.Dir}
}

func phpRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("testdata/php")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

type testSessions struct{}

func (testSessions) Encoded(r *http.Request) string { return r.Header.Get("X-Test-Session") }

func (testSessions) Replace(w http.ResponseWriter, r *http.Request, encoded string) error {
	w.Header().Set("X-Session-Replaced", encoded)
	return nil
}

// handlerFixture serves a php-fpm through Handler on an httptest server.
type handlerFixture struct {
	fpm    *fpm
	client *Client
	srv    *httptest.Server
	log    *testenv.Buffer
	relay  *testenv.Relay // between client and php-fpm on TCP, counting connections (php-fpm's own "accepted conn" counts requests)
}

func newHandlerFixture(t *testing.T, network string) *handlerFixture {
	t.Helper()
	f := &handlerFixture{fpm: startFPM(t, network), log: &testenv.Buffer{}}
	f.client = &Client{Network: network, Address: f.fpm.address, MaxConns: 3}
	if network == "tcp" {
		f.relay = testenv.StartRelay(t, f.fpm.address, nil)
		f.client.Address = f.relay.Addr
	}
	t.Cleanup(func() { f.client.Close() })
	landing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "landed %s %s", r.URL.Path, r.URL.RawQuery)
	})
	h := &Handler{
		Client:   f.client,
		Root:     phpRoot(t),
		Sessions: testSessions{},
		Dispatch: landing,
		Timeout:  10 * time.Second,
		Logger:   slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func get(t *testing.T, u string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestFPMHandler runs the Handler against php-fpm on TCP and on a unix
// socket: params, query, headers, Status, Location, stderr, sessions, a
// streamed upload of a few MB and a large response.
func TestFPMHandler(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			f := newHandlerFixture(t, network)
			testFPMParams(t, f)
			testFPMResponses(t, f)
			testFPMUpload(t, f)
		})
	}
}

func testFPMParams(t *testing.T, f *handlerFixture) {
	resp, body := get(t, f.srv.URL+"/info.php/extra/path?a=1&b=two%20words", "X-Custom", "v", "Proxy", "http://evil", "X-Test-Session", "k=v")
	var got struct {
		Server map[string]any    `json:"server"`
		Get    map[string]string `json:"get"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("status %d, body %q: %v", resp.StatusCode, body, err)
	}
	root := phpRoot(t)
	want := map[string]string{
		"SCRIPT_NAME":     "/info.php",
		"SCRIPT_FILENAME": root + "/info.php",
		"PATH_INFO":       "/extra/path",
		"DOCUMENT_ROOT":   root,
		"REQUEST_URI":     "/info.php/extra/path?a=1&b=two%20words",
		"QUERY_STRING":    "a=1&b=two%20words",
		"REQUEST_METHOD":  "GET",
		"HTTP_X_CUSTOM":   "v",
		"HTTP_SESSION":    "k=v",
		"REMOTE_ADDR":     "127.0.0.1",
	}
	for k, v := range want {
		if got.Server[k] != v {
			t.Errorf("%s = %v, want %q", k, got.Server[k], v)
		}
	}
	if _, ok := got.Server["HTTP_PROXY"]; ok {
		t.Error("HTTP_PROXY reached the script")
	}
	if got.Get["a"] != "1" || got.Get["b"] != "two words" {
		t.Errorf("$_GET = %v", got.Get)
	}
}

func testFPMResponses(t *testing.T, f *handlerFixture) {
	if resp, body := get(t, f.srv.URL+"/status.php"); resp.StatusCode != 201 || resp.Header.Get("X-Thing") != "made" || body != "created\n" {
		t.Errorf("status.php: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if resp, _ := get(t, f.srv.URL+"/away.php"); resp.StatusCode != 302 || resp.Header.Get("Location") != "https://example.com/elsewhere" {
		t.Errorf("away.php: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// PHP adds "Status: 302" to any Location, so this is a client redirect.
	if resp, _ := get(t, f.srv.URL+"/local.php"); resp.StatusCode != 302 || resp.Header.Get("Location") != "/landing?from=local" {
		t.Errorf("local.php: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, body := get(t, f.srv.URL+"/session.php", "X-Test-Session", "user=bob"); body != "session=user=bob\n" ||
		resp.Header.Get("X-Session-Replaced") != "user=ann" || resp.Header.Get("X-Replace-Session") != "" {
		t.Errorf("session.php: %q %v", body, resp.Header)
	}
	if resp, body := get(t, f.srv.URL+"/stderr.php"); resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("stderr.php: %d %q", resp.StatusCode, body)
	}
	if log := f.log.String(); !strings.Contains(log, "boom from php") || !strings.Contains(log, "stderr.php") {
		t.Errorf("stderr not logged with the script's name:\n%s", log)
	}
	if resp, body := get(t, f.srv.URL+"/big.php"); resp.StatusCode != 200 || len(body) != 64*65536 {
		t.Errorf("big.php: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, _ := get(t, f.srv.URL+"/missing.php"); resp.StatusCode != 404 {
		t.Errorf("missing.php: %d, want php-fpm's 404", resp.StatusCode)
	}
	if resp, _ := get(t, f.srv.URL+"/a/%2e%2e/info.php"); resp.StatusCode != 404 {
		t.Errorf("dot segment: %d, want 404", resp.StatusCode)
	}
}

// testFPMUpload sends bodies sent whole with the params (up to 16 KiB),
// streams 6 MB with a length and 1 MB chunked; php hashes what it reads.
func testFPMUpload(t *testing.T, f *handlerFixture) {
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
	}{{"small", 100, false}, {"whole", smallBody, false}, {"streamed", smallBody + 1, false},
		{"length", 6 << 20, false}, {"chunked", 1 << 20, true}} {
		data := make([]byte, tc.size)
		rand.Read(data)
		sum := sha256.Sum256(data)
		var body io.Reader = bytes.NewReader(data)
		if tc.chunked {
			body = io.MultiReader(body) // hides the length
		}
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/post.php", body)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, got := do(t, req)
		if want := fmt.Sprintf("%d %s\n", tc.size, hex.EncodeToString(sum[:])); resp.StatusCode != 200 || got != want {
			t.Errorf("%s: %d %q, want %q", tc.name, resp.StatusCode, got, want)
		}
	}
}

// TestFPMConnectionReuse: php-fpm accepts fewer connections than it serves
// requests, since the client keeps them open (FCGI_KEEP_CONN).
func TestFPMConnectionReuse(t *testing.T) {
	f := newHandlerFixture(t, "tcp")
	const requests = 30
	for i := 0; i < requests; i++ {
		if resp, _ := get(t, f.srv.URL+"/status.php"); resp.StatusCode != 201 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(f.srv.URL + "/big.php")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if open := f.client.Open(); open > 3 {
		t.Errorf("%d connections open, MaxConns is 3", open)
	}
	// A request that waited 200 ms for its first record (a loaded
	// machine) has a kept connection closed to free a worker: one more.
	relieved := int(f.client.relieved.Load())
	if n := f.relay.Count(); n > 3+relieved || n < 1 {
		t.Errorf("php-fpm saw %d connections for %d requests, want at most 3 (+%d closed for starved requests)", n, requests+6, relieved)
	}
}

// TestFPMContextCancel: cancelling the context of a slow script's request
// ends the read at once, and php-fpm stops the script (its counter file
// stops moving) and serves the next request.
func TestFPMContextCancel(t *testing.T) {
	f := startFPM(t, "tcp")
	c := &Client{Network: "tcp", Address: f.address, MaxConns: 2}
	defer c.Close()
	marker := filepath.Join(t.TempDir(), "count")
	r := httptest.NewRequest(http.MethodGet, "/slow.php?marker="+url.QueryEscape(marker), nil)
	params, err := Params(r, ParamsOptions{Root: phpRoot(t), ContentLength: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := c.Do(ctx, &Request{Params: params})
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp)
	for i := 0; i < 3; i++ { // the header block and a few ticks
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	start := time.Now()
	if _, err := io.ReadAll(br); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("read after cancel: %v after %v; want an error at once", err, time.Since(start))
	}
	resp.Close()
	// Stopped: the counter holds still for half a second, well before the
	// 30 s the script would run.
	deadline := time.Now().Add(10 * time.Second)
	last, since := "", time.Now()
	for {
		b, _ := os.ReadFile(marker)
		if string(b) != last {
			last, since = string(b), time.Now()
		} else if time.Since(since) > 500*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the script still counts (%s) 10s after the cancel", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, _ := strconv.Atoi(last); n > 100 {
		t.Errorf("script reached %d before it stopped", n)
	}
	if c.Open() != 0 {
		t.Errorf("%d connections open after an aborted request, want 0", c.Open())
	}
	// The pool still works.
	r = httptest.NewRequest(http.MethodGet, "/status.php", nil)
	params, _ = Params(r, ParamsOptions{Root: phpRoot(t), ContentLength: -1})
	resp, err = c.Do(context.Background(), &Request{Params: params})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp)
	resp.Close()
	if err != nil || !strings.Contains(string(b), "created") {
		t.Errorf("after the cancel: %q %v", b, err)
	}
}

// TestFPMHeaderTimeout: a script silent past Timeout gets 504.
func TestFPMHeaderTimeout(t *testing.T) {
	f := startFPM(t, "unix")
	c := &Client{Network: "unix", Address: f.address, MaxConns: 1}
	defer c.Close()
	srv := httptest.NewServer(&Handler{Client: c, Root: phpRoot(t), Timeout: 300 * time.Millisecond})
	defer srv.Close()
	// slow.php writes its header at once, so hold the only connection
	// busy with it and time out waiting for another.
	marker := filepath.Join(t.TempDir(), "count")
	hold, err := http.Get(srv.URL + "/slow.php?marker=" + url.QueryEscape(marker))
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Body.Close()
	if resp, _ := get(t, srv.URL+"/status.php"); resp.StatusCode != 504 {
		t.Errorf("status %d while the only connection is busy, want 504", resp.StatusCode)
	}
}

func TestFPMRefused(t *testing.T) {
	c := &Client{Network: "tcp", Address: freePort(t)}
	srv := httptest.NewServer(&Handler{Client: c, Root: "/"})
	defer srv.Close()
	if resp, _ := get(t, srv.URL+"/x.php"); resp.StatusCode != 502 {
		t.Errorf("status %d with nothing listening, want 502", resp.StatusCode)
	}
}

func TestSplitPath(t *testing.T) {
	for _, tc := range []struct{ in, name, info string }{
		{"/index.php", "/index.php", ""},
		{"/", "/index.php", ""},
		{"/wiki/", "/wiki/index.php", ""},
		{"/doku.php/wiki/start", "/doku.php", "/wiki/start"},
		{"/a.phpx/b.php/c", "/a.phpx/b.php", "/c"},
		{"/static/style.css", "/static/style.css", ""},
	} {
		name, info := SplitPath(tc.in, "index.php", ".php")
		if name != tc.name || info != tc.info {
			t.Errorf("%s: %q %q, want %q %q", tc.in, name, info, tc.name, tc.info)
		}
	}
}

// TestFPMStreams: a script's output reaches the client while it runs (the
// script writes for 30 s; its first lines come at once).
func TestFPMStreams(t *testing.T) {
	f := newHandlerFixture(t, "unix")
	marker := filepath.Join(t.TempDir(), "count")
	resp, err := http.Get(f.srv.URL + "/slow.php?marker=" + url.QueryEscape(marker))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	done := make(chan string, 1)
	go func() {
		br := bufio.NewReader(resp.Body)
		a, _ := br.ReadString('\n')
		b, _ := br.ReadString('\n')
		done <- a + b
	}()
	select {
	case got := <-done:
		if got != "tick 0\ntick 1\n" {
			t.Errorf("first lines %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no output within 5s of a script that writes every 50ms")
	}
}

// TestFPMFewerWorkersThanConnections: php-fpm binds a worker to a
// connection until it closes, so a pool keeping more connections than
// php-fpm has workers (3 here, the pool's default is 16) must not leave
// requests waiting forever behind idle kept connections.
func TestFPMFewerWorkersThanConnections(t *testing.T) {
	f := startFPM(t, "unix")
	c := &Client{Network: "unix", Address: f.address}
	defer c.Close()
	h := &Handler{Client: c, Root: phpRoot(t), Timeout: 20 * time.Second}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for round := 0; round < 2; round++ {
		var wg sync.WaitGroup
		errs := make(chan string, 8)
		for i := 0; i < 8; i++ {
			wg.Go(func() {
				client := &http.Client{Timeout: 15 * time.Second}
				resp, err := client.Get(srv.URL + "/nap.php")
				if err != nil {
					errs <- err.Error()
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "rested\n" {
					errs <- fmt.Sprintf("%d %q", resp.StatusCode, body)
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Errorf("round %d: %s", round, e)
		}
	}
}

// freePort is a loopback address nothing listens on (found free).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
