package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shoal/server"
	"shoal/server/config"
)

// slowCGI answers its headers at once and its body only when the file
// "go" appears in $WAIT_DIR, after it made "started" there.
const slowCGI = `#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
: > "$WAIT_DIR/started"
while [ ! -e "$WAIT_DIR/go" ]; do sleep 0.05; done
echo finished
`

// TestReloadOldRuntimeOutlivesGrace: a CGI request that runs longer than
// shutdown_grace + 1s across a reload completes with its access-log line
// in the old runtime's log, and that runtime (its log file) closes right
// after the request, not before.
func TestReloadOldRuntimeOutlivesGrace(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := newSiteDir(t)
	wait := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "cgi-bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgi-bin", "slow"), []byte(slowCGI), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(access string) {
		cfg := fmt.Sprintf(`[log]
access = %q

[server]
http = "127.0.0.1:0"
admin = ""
drain_delay = "0s"
shutdown_grace = "1s"

[[site]]
root = "www"
[[site.cgi]]
prefix = "/cgi-bin/"
dir = "cgi-bin"
env = {WAIT_DIR = %q}
`, access, wait)
		if err := os.WriteFile(filepath.Join(dir, "x.toml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	oldLog := filepath.Join(dir, "old.log")
	write(oldLog)
	node := server.RunNode(t, filepath.Join(dir, "x.toml"))
	url := "http://" + node.Addrs()["http"]

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(url + "/cgi-bin/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	pollUntil(t, "the CGI script started", func() bool {
		_, err := os.Stat(filepath.Join(wait, "started"))
		return err == nil
	})

	write(filepath.Join(dir, "new.log"))
	if err := node.Reload(); err != nil {
		t.Fatal(err)
	}
	// Not a synchronisation: the request must outlive the moment the old
	// runtime used to be closed by a timer (shutdown_grace + 1s).
	time.Sleep(2500 * time.Millisecond)
	if !fileOpen(t, oldLog) {
		t.Fatal("the old runtime's access log was closed while a request still ran on it")
	}
	if err := os.WriteFile(filepath.Join(wait, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil || r.body != "finished\n" {
			t.Fatalf("slow request: body %q, err %v; want finished", r.body, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the slow request did not finish")
	}
	pollUntil(t, "the slow request's line in the old log", func() bool {
		b, _ := os.ReadFile(oldLog)
		return strings.Contains(string(b), `"GET /cgi-bin/slow HTTP/1.1" 200`)
	})
	pollUntil(t, "the old runtime closed after its last request", func() bool { return !fileOpen(t, oldLog) })
}

// fileOpen reports whether this process holds path open.
func fileOpen(t *testing.T, path string) bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == path {
			return true
		}
	}
	return false
}

// pollUntil polls cond until it holds or 10 s pass.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShutdownWaitsForRetiredRuntime: a node stopped while a request
// still runs on the runtime a reload retired returns from Run only once
// that runtime is closed, not leaving it to a timer or a stray goroutine.
func TestShutdownWaitsForRetiredRuntime(t *testing.T) {
	dir := newSiteDir(t)
	wait := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "cgi-bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgi-bin", "slow"), []byte(slowCGI), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.toml")
	write := func(access string) {
		cfg := fmt.Sprintf("[log]\naccess = %q\n\n[server]\nhttp = \"127.0.0.1:0\"\nadmin = \"\"\ndrain_delay = \"0s\"\nshutdown_grace = \"1s\"\n\n"+
			"[[site]]\nroot = \"www\"\n[[site.cgi]]\nprefix = \"/cgi-bin/\"\ndir = \"cgi-bin\"\nenv = {WAIT_DIR = %q}\n", access, wait)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	oldLog := filepath.Join(dir, "old.log")
	write(oldLog)
	node, err := server.New(func() (*config.Config, error) { return config.Load(path) }, server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	<-node.Ready()
	go func() {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + node.Addrs()["http"] + "/cgi-bin/slow")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	pollUntil(t, "the CGI script started", func() bool {
		_, err := os.Stat(filepath.Join(wait, "started"))
		return err == nil
	})
	write(filepath.Join(dir, "new.log"))
	if err := node.Reload(); err != nil {
		t.Fatal(err)
	}
	// Let the script end once the stop began; the request ends with it.
	go func() {
		pollUntil(t, "", func() bool { return node.Draining() })
		os.WriteFile(filepath.Join(wait, "go"), nil, 0o644)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	if fileOpen(t, oldLog) {
		t.Error("Run returned with the retired runtime still open")
	}
	if b, _ := os.ReadFile(oldLog); !strings.Contains(string(b), "/cgi-bin/slow") {
		t.Errorf("the request on the retired runtime was not logged: %q", b)
	}
}
