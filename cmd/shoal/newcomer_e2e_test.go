package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"shoal/internal/testenv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EConfigSourceLogged: the node says which config it loaded and
// why, then where to point a browser; with -root and no -config a
// ./config.toml in the working directory is not read (here it is broken,
// so reading it would fail the start).
func TestE2EConfigSourceLogged(t *testing.T) {
	cases := []struct {
		name     string
		config   string // ./config.toml, "" for none
		args     func(http, admin string) []string
		wantLog  []string
		wantBody string
	}{
		{"named by -config", e2eConfig, func(h, a string) []string { return []string{"-config", "config.toml", "-http", h, "-admin", a} },
			[]string{"config config.toml (named by -config)", "serving http://{http}, admin http://{admin}"}, "<h1>shoal e2e</h1>\n"},
		{"found in the working directory", e2eConfig, func(h, a string) []string { return []string{"-http", h, "-admin", a} },
			[]string{"config config.toml (found as ./config.toml in the working directory)", "serving http://{http}, admin http://{admin}"}, "<h1>shoal e2e</h1>\n"},
		{"-root ignores ./config.toml", "[server]\nhtpp = 1\n", func(h, a string) []string { return []string{"-root", "other", "-http", h, "-admin", ""} },
			[]string{"built-in defaults: -root without -config, ./config.toml not read", "serving http://{http}"}, "other root"},
		{"no config file", "", func(h, a string) []string { return []string{"-http", h, "-admin", ""} },
			[]string{"built-in defaults: no -config and no ./config.toml in the working directory", "serving http://{http}"}, "<h1>shoal e2e</h1>\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := siteDir(t, tc.config)
			if tc.config == "" {
				os.Remove(filepath.Join(dir, "config.toml"))
			}
			other := filepath.Join(dir, "other")
			os.Mkdir(other, 0o755)
			writeFile(t, filepath.Join(other, "index.html"), "other root")
			httpAddr, adminAddr := freeAddr(t), freeAddr(t)
			p := spawnRaw(t, dir, tc.args(httpAddr, adminAddr)...)
			p.addr, p.url = httpAddr, "http://"+httpAddr
			if !p.waitUp(15 * time.Second) {
				t.Fatalf("shoal did not come up: %v\n%s", p.err, p.stderr)
			}
			if _, body := p.get("/"); string(body) != tc.wantBody {
				t.Errorf("GET / = %q, want %q", body, tc.wantBody)
			}
			for _, want := range tc.wantLog {
				want = strings.NewReplacer("{http}", httpAddr, "{admin}", adminAddr).Replace(want)
				if !strings.Contains(p.stderr.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, p.stderr)
				}
			}
			p.signal(syscall.SIGTERM)
			p.waitExit(20 * time.Second)
		})
	}
}

// spawnRaw starts shoal serve with exactly args in dir.
func spawnRaw(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(shoalBin, append([]string{"serve"}, args...)...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("shoal stderr:\n%s", p.stderr)
		}
	})
	return p
}

// TestE2ENewcomerCommands: what a first-time user runs into, answered in
// words: the -http help, `shoal members` with no node, `shoal check` on
// clashes a serve would only find later, type errors with their key.
func TestE2ENewcomerCommands(t *testing.T) {
	dir := siteDir(t, "[server]\nhtpp = 1\n") // a broken ./config.toml
	files := map[string]string{
		"ports.toml": "[server]\nhttp = \":8443\"\nhttps = \":8443\"\n[tls]\nself_signed = true\n",
		"hosts.toml": "[[site]]\nhosts = [\"a.test\"]\nroot = \"www\"\n[[site]]\nhosts = [\"a.test\"]\nroot = \"www\"\n",
		"types.toml": "[server]\nhttp = 8080\n[[site]]\nroot = 1\n",
	}
	for name, body := range files {
		writeFile(t, filepath.Join(dir, name), body)
	}
	noNode := freeAddr(t)
	cases := []commandCase{
		{"-http help", []string{"serve", "-h"}, 0, nil, []string{`-http "" disables the HTTP listener`}},
		{"members with no node", []string{"members", "-admin", noNode}, 1, nil,
			[]string{noNode, "is a node running?", "is -admin right?", "server.admin"}},
		{"check http and https on one port", []string{"check", "-config", "ports.toml"}, 2, nil,
			[]string{"ports.toml:3:1:", `server.https: ":8443" uses the same port as server.http`}},
		{"check duplicate host", []string{"check", "-config", "hosts.toml"}, 2, nil,
			[]string{"hosts.toml:5:1:", `site.1.hosts: host "a.test" is already served by site 0`}},
		{"check type errors in words", []string{"check", "-config", "types.toml"}, 2, nil,
			[]string{`types.toml:2:1: server.http: must be a string such as ":8080"`, `types.toml:4:1: site.0.root: must be a string such as "www"`}},
		{"check -root ignores ./config.toml", []string{"check", "-root", "www"}, 0, []string{"built-in defaults: ok", "-root without -config"}, nil},
	}
	runCommands(t, dir, cases)
}
