package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"shoal/internal/testenv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shoalBin is the binary built once by TestMain for every e2e test.
var shoalBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "shoal-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	shoalBin = filepath.Join(dir, "shoal")
	if out, err := buildShoal(shoalBin); err != nil {
		fmt.Fprintf(os.Stderr, "building shoal: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

func buildShoal(out string) ([]byte, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, err
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", "build", "-o", out, "./cmd/shoal")
	cmd.Dir = root
	return cmd.CombinedOutput()
}

const bigSize = 16 << 20

// siteDir makes a folder with config.toml (cfg) and www/ holding
// index.html, 404.html and big.bin.
func siteDir(t *testing.T, cfg string) string {
	t.Helper()
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, bigSize)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"index.html": []byte("<h1>shoal e2e</h1>\n"),
		"404.html":   []byte("<h1>lost at sea</h1>\n"),
		"big.bin":    big,
	} {
		if err := os.WriteFile(filepath.Join(www, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "config.toml"), cfg)
	return dir
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// proc is a running shoal.
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	addr, url      string
	stdout, stderr *testenv.Buffer
	exited         chan struct{}
	err            error // Wait's result, once exited is closed
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startShoal runs `shoal serve -config config.toml -http ADDR` in dir and
// waits until it answers; a port taken in between is retried with another.
func startShoal(t *testing.T, dir string) *proc {
	t.Helper()
	return startArgs(t, dir, func() []string { return nil })
}

// startArgs is startShoal with the flags args returns; it is called again
// for each attempt, so flags that name addresses get fresh free ones.
func startArgs(t *testing.T, dir string, args func() []string) *proc {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		p := spawnArgs(t, dir, freeAddr(t), args()...)
		if p.waitUp(15 * time.Second) {
			return p
		}
		if !portTaken(p.stderr.String()) {
			t.Fatalf("shoal did not come up: %v\nstderr:\n%s", p.err, p.stderr)
		}
	}
	t.Fatal("no free port after 5 attempts")
	return nil
}

func spawn(t *testing.T, dir, addr string) *proc {
	t.Helper()
	return spawnArgs(t, dir, addr)
}

func spawnArgs(t *testing.T, dir, addr string, extra ...string) *proc {
	t.Helper()
	p := spawnRaw(t, dir, append([]string{"-config", "config.toml", "-http", addr, "-admin", ""}, extra...)...)
	p.addr, p.url = addr, "http://"+addr
	return p
}

// waitUp polls until the node answers HTTP; false when it exited first or
// the deadline passed.
func (p *proc) waitUp(within time.Duration) bool {
	deadline := time.Now().Add(within)
	// Any answer means up; a redirect (redirect_http) is not followed.
	c := &http.Client{Timeout: time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return false
		default:
		}
		if resp, err := c.Get(p.url + "/"); err == nil {
			resp.Body.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	return false
}

// waitExit waits for the process to end and returns its exit code.
func (p *proc) waitExit(within time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		p.t.Fatalf("shoal still running %v after the signal", within)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proc) get(path string, hdr ...string) (*http.Response, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest("GET", p.url+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}
	resp, err := c.Do(req)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("GET %s body: %v", path, err)
	}
	return resp, body
}

const e2eConfig = `[server]
drain_delay = "100ms"
shutdown_grace = "30s"

[[site]]
root = "www"
error_pages = {404 = "404.html"}
`

func TestE2EServeAndStop(t *testing.T) {
	dir := siteDir(t, e2eConfig)
	big, err := os.ReadFile(filepath.Join(dir, "www", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	p := startShoal(t, dir)

	cases := []struct {
		name, path string
		hdr        []string
		status     int
		body       []byte
	}{
		{"index", "/", nil, 200, []byte("<h1>shoal e2e</h1>\n")},
		{"custom 404", "/missing.html", nil, 404, []byte("<h1>lost at sea</h1>\n")},
		{"config not served", "/config.toml", nil, 404, []byte("<h1>lost at sea</h1>\n")},
		{"range", "/big.bin", []string{"Range", "bytes=100-199"}, 206, big[100:200]},
		{"suffix range", "/big.bin", []string{"Range", "bytes=-10"}, 206, big[bigSize-10:]},
	}
	for _, tc := range cases {
		resp, body := p.get(tc.path, tc.hdr...)
		if resp.StatusCode != tc.status || !bytes.Equal(body, tc.body) {
			t.Errorf("%s: GET %s = %d (%d bytes), want %d (%d bytes)", tc.name, tc.path, resp.StatusCode, len(body), tc.status, len(tc.body))
		}
	}
	if resp, _ := p.get("/big.bin", "Range", "bytes=100-199"); resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", bigSize) {
		t.Errorf("Content-Range = %q", resp.Header.Get("Content-Range"))
	}
	pollFor(t, "access log line for GET /", func() bool {
		return strings.Contains(p.stdout.String(), `"GET / HTTP/1.1" 200 `)
	})

	// SIGTERM during a slow download: it completes, then shoal exits 0.
	conn, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	conn.(*net.TCPConn).SetReadBuffer(32 << 10)
	fmt.Fprintf(conn, "GET /big.bin HTTP/1.1\r\nHost: e2e.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != bigSize {
		t.Fatalf("big.bin: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var got int64
	exitedEarly := false
	for i := 0; i < 10000; i++ {
		n, err := io.ReadFull(resp.Body, buf)
		h.Write(buf[:n])
		got += int64(n)
		if i == 0 {
			p.signal(syscall.SIGTERM)
		}
		if got < bigSize/2 {
			select {
			case <-p.exited:
				exitedEarly = true
			default:
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("download cut after %d of %d bytes: %v", got, bigSize, err)
		}
		time.Sleep(25 * time.Millisecond) // a slow client, not synchronisation
	}
	want := sha256.Sum256(big)
	if got != bigSize || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("download after SIGTERM: %d of %d bytes, content equal: %v", got, bigSize, bytes.Equal(h.Sum(nil), want[:]))
	}
	if exitedEarly {
		t.Error("shoal exited while half the download was unsent")
	}
	if code := p.waitExit(20 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	// The access log is flushed before exit.
	if want := fmt.Sprintf(`"GET /big.bin HTTP/1.1" 200 %d`, bigSize); !strings.Contains(p.stdout.String(), want) {
		t.Errorf("access log lacks %s after exit:\n%s", want, p.stdout)
	}
}

// TestE2EPortInUse: a listener that cannot open is a runtime failure:
// exit 1 with the reason, not a hang.
func TestE2EPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := siteDir(t, e2eConfig)
	code, _, stderr := runShoal(t, dir, "serve", "-config", "config.toml", "-http", ln.Addr().String(), "-admin", "")
	if code != 1 {
		t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "address already in use") {
		t.Errorf("stderr does not say why:\n%s", stderr)
	}
}

// TestE2ERootFlag: -root replaces the first site's root, relative to the
// folder shoal was started in.
func TestE2ERootFlag(t *testing.T) {
	dir := siteDir(t, e2eConfig)
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(other, "index.html"), "other root")
	writeFile(t, filepath.Join(other, "404.html"), "other 404") // error_pages is checked against the new root
	p := spawnArgs(t, dir, freeAddr(t), "-root", "other")
	if !p.waitUp(15 * time.Second) {
		t.Fatalf("shoal did not come up: %v\n%s", p.err, p.stderr)
	}
	if _, body := p.get("/"); string(body) != "other root" {
		t.Errorf("GET / = %q, want the -root folder's index", body)
	}
}

func pollFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestE2ESIGINT(t *testing.T) {
	p := startShoal(t, siteDir(t, e2eConfig))
	p.signal(os.Interrupt)
	if code := p.waitExit(20 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGINT, want 0", code)
	}
}

func TestE2EReloadSIGHUP(t *testing.T) {
	const tmpl = e2eConfig + "headers = {X-Test = %q}\n"
	dir := siteDir(t, fmt.Sprintf(tmpl, "one"))
	p := startShoal(t, dir)
	if resp, _ := p.get("/"); resp.Header.Get("X-Test") != "one" {
		t.Fatalf("X-Test = %q before reload", resp.Header.Get("X-Test"))
	}
	writeFile(t, filepath.Join(dir, "config.toml"), fmt.Sprintf(tmpl, "two"))
	p.signal(syscall.SIGHUP)
	pollFor(t, "X-Test: two after SIGHUP", func() bool {
		resp, _ := p.get("/")
		return resp.Header.Get("X-Test") == "two"
	})

	// A config that fails validation keeps the old one and says why.
	writeFile(t, filepath.Join(dir, "config.toml"), fmt.Sprintf(tmpl, "three")+"bogus = 1\n")
	p.signal(syscall.SIGHUP)
	pollFor(t, "the refused reload in the log", func() bool {
		return strings.Contains(p.stderr.String(), `unknown key \"site.bogus\"`) || strings.Contains(p.stderr.String(), `unknown key "site.bogus"`)
	})
	if resp, _ := p.get("/"); resp.Header.Get("X-Test") != "two" {
		t.Errorf("after a bad reload X-Test = %q, want two", resp.Header.Get("X-Test"))
	}
	p.signal(syscall.SIGTERM)
	if code := p.waitExit(20 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// runShoal runs shoal with args in dir and returns its exit code and output.
func runShoal(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(shoalBin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("shoal %v did not finish within 20s", args)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

func TestE2ECommands(t *testing.T) {
	dir := siteDir(t, e2eConfig)
	files := map[string]string{
		"good.toml":    "[server]\nhttp = \"127.0.0.1:0\"\n[[site]]\nroot = \"www\"\n",
		"bad.toml":     "[server]\nhttp = \"127.0.0.1:0\"\nhtpp = \":80\"\n",
		"several.toml": "[server]\nhtpp = 1\nidle_timeout = \"soon\"\n[[site]]\nroot = \"www\"\n[[site]]\nroot = \"www\"\nbogus = true\n",
		"invalid.toml": "[log]\nformat = \"xml\"\n[[site]]\nroot = \"www\"\n[[site]]\nroot = \"nowhere\"\n",
		"noroot.toml":  "[server]\nhttp = \"127.0.0.1:0\"\nadmin = \"\"\n\n[[site]]\nroot = \"nowhere\"\n",
		"syntax.toml":  "[server\nhttp = 1\n",
	}
	for name, body := range files {
		writeFile(t, filepath.Join(dir, name), body)
	}
	cases := []commandCase{
		{"check good", []string{"check", "-config", "good.toml"}, 0, []string{"ok"}, nil},
		{"check default config.toml", []string{"check"}, 0, []string{"config.toml"}, nil},
		{"check unknown key on line 3", []string{"check", "-config", "bad.toml"}, 2, nil, []string{"bad.toml:3:1:", `"server.htpp"`}},
		{"check reports every error", []string{"check", "-config", "several.toml"}, 2, nil,
			[]string{"several.toml:2:1:", `"server.htpp"`, "several.toml:3:1:", "idle_timeout", "several.toml:8:1:", `"site.bogus"`}},
		{"check reports every invalid value", []string{"check", "-config", "invalid.toml"}, 2, nil,
			[]string{"invalid.toml:2:1:", "log.format", "invalid.toml:6:1:", "nowhere"}},
		{"check syntax error", []string{"check", "-config", "syntax.toml"}, 2, nil, []string{"syntax.toml:"}},
		{"check missing file", []string{"check", "-config", "absent.toml"}, 2, nil, []string{"absent.toml"}},
		{"check bad flag", []string{"check", "-nope"}, 2, nil, nil},
		{"serve missing root", []string{"serve", "-config", "noroot.toml"}, 2, nil, []string{"noroot.toml:6:1:", "root", "nowhere"}},
		{"serve flag root missing", []string{"-config", "good.toml", "-root", "nowhere"}, 2, nil, []string{"nowhere"}},
		{"serve bad flag", []string{"serve", "-bogus"}, 2, nil, nil},
		{"version", []string{"version"}, 0, []string{"shoal"}, nil},
		{"keygen", []string{"keygen"}, 0, nil, nil},
		{"unknown subcommand", []string{"frobnicate"}, 2, nil, []string{"frobnicate"}},
	}
	runCommands(t, dir, cases)
}

// TestE2EPathsRelativeToConfig: relative paths in a config are resolved
// against the config's folder, not the working directory.
func TestE2EPathsRelativeToConfig(t *testing.T) {
	dir := siteDir(t, e2eConfig)
	elsewhere := t.TempDir()
	code, stdout, stderr := runShoal(t, elsewhere, "check", "-config", filepath.Join(dir, "config.toml"))
	if code != 0 {
		t.Errorf("check from another folder: exit %d\n%s%s", code, stdout, stderr)
	}
}

// portTaken reports whether a node's output says a port found free was
// not: another process took it first, or two listeners were handed the
// same one (a port closed by freeAddr is free again at once).
func portTaken(out string) bool {
	return strings.Contains(out, "address already in use") || strings.Contains(out, "uses the same port as")
}

// commandCase is one shoal command line and what it must print and exit
// with.
type commandCase struct {
	name   string
	args   []string
	code   int
	stdout []string // each must appear
	stderr []string
}

// runCommands runs each case's command in dir and checks it.
func runCommands(t *testing.T, dir string, cases []commandCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runShoal(t, dir, tc.args...)
			if code != tc.code {
				t.Errorf("shoal %v: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, stdout, stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
		})
	}
}
