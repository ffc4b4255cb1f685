package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"shoal/server"
	"shoal/server/config"
)

// baseConfig is the start of every test node's config: a loopback port
// the OS picks, no admin listener, no access log, no drain delay.
const baseConfig = `[log]
access = "off"

[server]
http = "127.0.0.1:0"
admin = ""
drain_delay = "0s"
`

// testNode is a server.Node running in-process on a real listener.
type testNode struct {
	t      *testing.T
	dir    string // holds x.toml and www/
	path   string // the config file
	node   *server.Node
	addr   string // host:port of the http listener
	url    string
	cancel context.CancelFunc
	done   chan error // Run's result
}

// bigSize is the size of www/big.bin: larger than the loopback socket
// buffers, so a stalled reader really stalls the server's writes.
const bigSize = 16 << 20

// newSiteDir makes a folder with www/ holding index.html, 404.html and
// big.bin, and returns it.
func newSiteDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(filepath.Join(www, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, bigSize)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"index.html":     []byte("<h1>home</h1>\n"),
		"404.html":       []byte("<h1>custom not found</h1>\n"),
		"sub/index.html": []byte("<h1>sub</h1>\n"),
		"big.bin":        big,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(www, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startNode writes cfg (appended to baseConfig) into a site folder, starts
// a node on it and stops it when the test ends.
func startNode(t *testing.T, cfg string) *testNode {
	t.Helper()
	return startNodeIn(t, newSiteDir(t), cfg)
}

func startNodeIn(t *testing.T, dir, cfg string) *testNode {
	t.Helper()
	tn := &testNode{t: t, dir: dir, path: filepath.Join(dir, "x.toml"), done: make(chan error, 1)}
	tn.writeConfig(cfg)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	node, err := server.New(func() (*config.Config, error) { return config.Load(tn.path) }, server.Options{Logger: logger})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	tn.node = node
	ctx, cancel := context.WithCancel(context.Background())
	tn.cancel = cancel
	go func() { tn.done <- node.Run(ctx) }()
	select {
	case <-node.Ready():
	case err := <-tn.done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("node not ready within 10s")
	}
	tn.addr = node.Addrs()["http"]
	if tn.addr == "" {
		t.Fatalf("no http listener: %v", node.Addrs())
	}
	tn.url = "http://" + tn.addr
	t.Cleanup(func() {
		cancel()
		select {
		case <-tn.done:
		case <-time.After(40 * time.Second):
			t.Error("node did not stop within 40s")
		}
	})
	return tn
}

func (tn *testNode) writeConfig(cfg string) {
	tn.t.Helper()
	if err := os.WriteFile(tn.path, []byte(baseConfig+cfg), 0o644); err != nil {
		tn.t.Fatal(err)
	}
}

// getKeepAlive sends one keep-alive GET / on a new raw connection, reads
// the whole response and returns it with the connection's reader, for
// tests that then watch what the server does with the idle connection.
func (tn *testNode) getKeepAlive(deadline time.Duration) (*http.Response, *bufio.Reader) {
	tn.t.Helper()
	conn := tn.dial(deadline)
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tn.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, br
}

// stop cancels Run and returns its result, bounded in time.
func (tn *testNode) stop(within time.Duration) error {
	tn.t.Helper()
	tn.cancel()
	select {
	case err := <-tn.done:
		tn.done <- err // for Cleanup
		return err
	case <-time.After(within):
		tn.t.Fatalf("Run did not return within %v of cancel", within)
		return nil
	}
}

// get fetches path with an optional Host, on a fresh connection.
func (tn *testNode) get(path, host string, hdr ...string) (*http.Response, string) {
	tn.t.Helper()
	req, err := http.NewRequest("GET", tn.url+path, nil)
	if err != nil {
		tn.t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		tn.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tn.t.Fatalf("GET %s body: %v", path, err)
	}
	return resp, string(body)
}

// dial opens a raw TCP connection to the node with an overall deadline.
func (tn *testNode) dial(deadline time.Duration) net.Conn {
	tn.t.Helper()
	c, err := net.DialTimeout("tcp", tn.addr, 5*time.Second)
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(deadline))
	return c
}

func TestNodeServes(t *testing.T) {
	tn := startNode(t, `
[[site]]
root = "www"
error_pages = {404 = "404.html"}
`)
	cases := []struct {
		path   string
		status int
		body   string
	}{
		{"/", 200, "<h1>home</h1>\n"},
		{"/index.html", 200, "<h1>home</h1>\n"},
		{"/sub/", 200, "<h1>sub</h1>\n"},
		{"/nope.html", 404, "<h1>custom not found</h1>\n"},
		{"/x.toml", 404, "<h1>custom not found</h1>\n"},
	}
	for _, tc := range cases {
		resp, body := tn.get(tc.path, "")
		if resp.StatusCode != tc.status || body != tc.body {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}

// TestNodeConfigNotServed: the config file is never served even when it
// lies under root.
func TestNodeConfigNotServed(t *testing.T) {
	dir := newSiteDir(t)
	tn := startNodeIn(t, dir, "\n[[site]]\nroot = \".\"\n")
	resp, body := tn.get("/x.toml", "")
	if resp.StatusCode == 200 || strings.Contains(body, "drain_delay") {
		t.Errorf("config under root served: %d %q", resp.StatusCode, body)
	}
	if resp, _ := tn.get("/www/index.html", ""); resp.StatusCode != 200 {
		t.Errorf("file beside the config: %d", resp.StatusCode)
	}
}

func TestNodeVhosts(t *testing.T) {
	dir := newSiteDir(t)
	for _, s := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, s), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, s, "index.html"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tn := startNodeIn(t, dir, `
[[site]]
hosts = ["a.test"]
root = "a"
[[site]]
hosts = ["*.b.test", "b.test"]
root = "b"
`)
	for host, want := range map[string]string{
		"a.test": "a", "A.TEST:80": "a", "b.test": "b", "x.b.test": "b", "y.x.B.test.": "b", "c.test": "a", "127.0.0.1": "a",
	} {
		if _, body := tn.get("/", host); body != want {
			t.Errorf("Host %s: got %q, want %q", host, body, want)
		}
	}
}

// TestGracefulShutdown: a download in flight when the node is told to stop
// completes byte for byte, new connections are refused after, and Run
// returns nil.
func TestGracefulShutdown(t *testing.T) {
	tn := startNode(t, "shutdown_grace = \"30s\"\n")
	want, err := os.ReadFile(filepath.Join(tn.dir, "www", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	conn := tn.dial(30 * time.Second)
	// A small receive buffer keeps the client's share of the file in
	// flight small, so most of it is still to send when the stop comes.
	conn.(*net.TCPConn).SetReadBuffer(32 << 10)
	fmt.Fprintf(conn, "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != bigSize {
		t.Fatalf("status %d length %d", resp.StatusCode, resp.ContentLength)
	}
	h := sha256.New()
	first := make([]byte, 64<<10)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	h.Write(first)
	tn.cancel()

	// Read the rest slowly: about 16 MiB in ~1.5s.
	got := int64(len(first))
	buf := make([]byte, 256<<10)
	returnedEarly := false
	for i := 0; i < 10000; i++ {
		n, err := io.ReadFull(resp.Body, buf)
		h.Write(buf[:n])
		got += int64(n)
		if got < bigSize/2 {
			select {
			case err := <-tn.done:
				tn.done <- err
				returnedEarly = true
			default:
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		time.Sleep(25 * time.Millisecond) // a slow client, not synchronisation
	}
	if got != bigSize {
		t.Fatalf("download cut at %d of %d bytes", got, bigSize)
	}
	if !bytes.Equal(h.Sum(nil), sha256Of(want)) {
		t.Fatal("download differs from the file")
	}
	if returnedEarly {
		t.Error("Run returned while half the download was still unsent")
	}
	if err := tn.stop(10 * time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if c, err := net.DialTimeout("tcp", tn.addr, time.Second); err == nil {
		c.Close()
		t.Error("listener still accepts after shutdown")
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// TestShutdownGraceOver: a client that stops reading cannot hold the node
// past shutdown_grace; Run still returns nil.
func TestShutdownGraceOver(t *testing.T) {
	tn := startNode(t, "shutdown_grace = \"300ms\"\n")
	conn := tn.dial(20 * time.Second)
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(conn, "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := tn.stop(10 * time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("Run returned after %v, before shutdown_grace", el)
	}
}

// TestShutdownDrainDelay: during drain_delay the node still serves, then
// it stops.
func TestShutdownDrainDelay(t *testing.T) {
	tn := startNode(t, "")
	// drain_delay comes from the config in force; reload one with a delay.
	if err := os.WriteFile(tn.path, []byte(strings.Replace(baseConfig, `drain_delay = "0s"`, `drain_delay = "1s"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tn.node.Reload(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tn.cancel()
	deadline := time.Now().Add(5 * time.Second)
	for !tn.node.Draining() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !tn.node.Draining() {
		t.Fatal("node never reported draining")
	}
	if resp, _ := tn.get("/", ""); resp.StatusCode != 200 {
		t.Errorf("during drain_delay: %d", resp.StatusCode)
	}
	if err := tn.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("stopped after %v, before drain_delay", el)
	}
}

func TestReload(t *testing.T) {
	dir := newSiteDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b", "index.html"), []byte("b site"), 0o644); err != nil {
		t.Fatal(err)
	}
	tn := startNodeIn(t, dir, "[[site]]\nroot = \"www\"\nheaders = {X-Test = \"one\"}\n")

	// A keep-alive connection opened before the reload must survive it.
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	check := func(step, host, wantHeader, wantBody string) {
		t.Helper()
		req, _ := http.NewRequest("GET", tn.url+"/", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Test"); got != wantHeader || string(body) != wantBody {
			t.Errorf("%s: Host %s: X-Test %q body %q, want %q %q", step, host, got, body, wantHeader, wantBody)
		}
	}
	check("before", "b.test", "one", "<h1>home</h1>\n")

	tn.writeConfig("[[site]]\nroot = \"www\"\nheaders = {X-Test = \"two\"}\n[[site]]\nhosts = [\"b.test\"]\nroot = \"b\"\n")
	if err := tn.node.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	check("after reload", "a.test", "two", "<h1>home</h1>\n")
	check("after reload", "b.test", "", "b site")

	bad := []struct {
		name, cfg, want string
	}{
		{"unknown key", "[[site]]\nroot = \"www\"\nheaders = {X-Test = \"three\"}\nbogus = 1\n", `unknown key "site.bogus"`},
		{"missing root", "[[site]]\nroot = \"gone\"\nheaders = {X-Test = \"three\"}\n", "root folder"},
		{"syntax", "[[site]\nroot = \"www\"\n", tn.path + ":"},
	}
	for _, b := range bad {
		tn.writeConfig(b.cfg)
		err := tn.node.Reload()
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: Reload = %v, want an error containing %q", b.name, err, b.want)
		}
		check("after bad reload: "+b.name, "a.test", "two", "<h1>home</h1>\n")
		check("after bad reload: "+b.name, "b.test", "", "b site")
	}
}

// TestAccessLogFile: log.access names a file (relative to the config),
// lines reach it without a shutdown, and a reload can switch the file and
// the format.
func TestAccessLogFile(t *testing.T) {
	dir := newSiteDir(t)
	// TOML forbids a table twice, so this test writes its whole config
	// rather than adding to baseConfig.
	write := func(access, format string) {
		cfg := fmt.Sprintf("[log]\naccess = %q\nformat = %q\n\n[server]\nhttp = \"127.0.0.1:0\"\nadmin = \"\"\ndrain_delay = \"0s\"\n", access, format)
		if err := os.WriteFile(filepath.Join(dir, "x.toml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("access.log", "combined")
	node := server.RunNode(t, filepath.Join(dir, "x.toml"))
	url := "http://" + node.Addrs()["http"]
	fetch := func(path string) {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	fetch("/index.html?q=1")
	waitFile(t, filepath.Join(dir, "access.log"), `"GET /index.html?q=1 HTTP/1.1" 200 14 "-" "Go-http-client/1.1"`)

	write("access.json", "json")
	if err := node.Reload(); err != nil {
		t.Fatal(err)
	}
	fetch("/nope")
	waitFile(t, filepath.Join(dir, "access.json"), `"status":404`)
	if b, _ := os.ReadFile(filepath.Join(dir, "access.log")); strings.Contains(string(b), "/nope") {
		t.Error("request after the reload went to the old log")
	}
}

// waitFile polls until the file holds want.
func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %s after 10s; holds:\n%s", path, want, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNewInvalidConfig: New refuses a config that fails validation, with
// every problem, and opens nothing.
func TestNewInvalidConfig(t *testing.T) {
	dir := newSiteDir(t)
	path := filepath.Join(dir, "x.toml")
	src := baseConfig + "max_body_bytes = \"lots\"\n[[site]]\nroot = \"www\"\ncolour = 1\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	node, err := server.New(func() (*config.Config, error) { return config.Load(path) }, server.Options{})
	if err == nil {
		t.Fatalf("New accepted an invalid config: %v", node.Addrs())
	}
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not config.Errors", err, err)
	}
	if len(errs) != 2 {
		t.Errorf("got %d errors, want 2:\n%v", len(errs), err)
	}
}

// TestReloadUnderLoad: reloads while clients fetch lose no request and
// every response comes whole from one config or the other.
func TestReloadUnderLoad(t *testing.T) {
	tn := startNode(t, "[[site]]\nroot = \"www\"\nheaders = {X-Gen = \"0\"}\n")
	stop := make(chan struct{})
	errc := make(chan error, 4)
	var served atomic.Int64
	for w := 0; w < 4; w++ {
		go func() {
			c := &http.Client{Timeout: 10 * time.Second}
			defer c.CloseIdleConnections()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					errc <- nil
					return
				default:
				}
				resp, err := c.Get(tn.url + "/index.html")
				if err != nil {
					errc <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(body) != "<h1>home</h1>\n" || resp.Header.Get("X-Gen") == "" {
					errc <- fmt.Errorf("status %d body %q X-Gen %q err %v", resp.StatusCode, body, resp.Header.Get("X-Gen"), err)
					return
				}
				served.Add(1)
			}
			errc <- nil
		}()
	}
	for gen := 1; gen <= 20; gen++ {
		tn.writeConfig(fmt.Sprintf("[[site]]\nroot = \"www\"\nheaders = {X-Gen = \"%d\"}\n", gen))
		if err := tn.node.Reload(); err != nil {
			t.Fatal(err)
		}
		// Let some requests through between two reloads.
		for before, deadline := served.Load(), time.Now().Add(5*time.Second); served.Load() < before+8 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	close(stop)
	for w := 0; w < 4; w++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if resp, _ := tn.get("/", ""); resp.Header.Get("X-Gen") != "20" {
		t.Errorf("after the reloads X-Gen = %q, want 20", resp.Header.Get("X-Gen"))
	}
}

// TestReloadServerLimits: SIGHUP reloads the config, so a changed
// server.idle_timeout must apply to connections accepted after the reload
// (as nginx's keepalive_timeout does after `nginx -s reload`), or the
// reload must say that it needs a restart. Here it is checked to apply.
func TestReloadServerLimits(t *testing.T) {
	tn := startNode(t, "idle_timeout = \"120s\"\n")
	tn.writeConfig("idle_timeout = \"300ms\"\n")
	if err := tn.node.Reload(); err != nil {
		t.Fatal(err)
	}
	_, br := tn.getKeepAlive(3 * time.Second)
	start := time.Now()
	if _, err := br.ReadByte(); isTimeout(err) {
		t.Errorf("idle_timeout reloaded to 300ms: new connection still open after %v", time.Since(start))
	}
}

// TestSiteHeaders: a site's headers are on every response it makes, error
// responses included (SPEC: "extra response headers for every response").
func TestSiteHeaders(t *testing.T) {
	tn := startNode(t, "max_body_bytes = \"1KiB\"\n[[site]]\nroot = \"www\"\nerror_pages = {404 = \"404.html\"}\nheaders = {X-Frame-Options = \"DENY\", cache-control = \"max-age=60\"}\n")
	resp, _ := tn.get("/", "")
	etag := resp.Header.Get("ETag")
	cases := []struct {
		name, method, path string
		hdr                []string
		body               string
		status             int
	}{
		{"200", "GET", "/index.html", nil, "", 200},
		{"HEAD", "HEAD", "/index.html", nil, "", 200},
		{"206", "GET", "/big.bin", []string{"Range", "bytes=0-9"}, "", 206},
		{"304", "GET", "/", []string{"If-None-Match", etag}, "", 304},
		{"redirect", "GET", "/sub", nil, "", 0},
		{"404", "GET", "/nope", nil, "", 404},
		{"405", "DELETE", "/index.html", nil, "", 405},
		{"413", "POST", "/index.html", nil, strings.Repeat("x", 2048), 413},
	}
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer c.CloseIdleConnections()
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, tn.url+tc.path, strings.NewReader(tc.body))
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			req.Header.Set(tc.hdr[i], tc.hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if tc.status != 0 && resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s (%d): X-Frame-Options = %q, want DENY", tc.name, resp.StatusCode, got)
		}
		if tc.status == 200 {
			if got := resp.Header.Get("Cache-Control"); got != "max-age=60" {
				t.Errorf("%s: Cache-Control = %q, want the site's max-age=60", tc.name, got)
			}
		}
	}
}
