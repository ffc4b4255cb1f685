package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPagesSessionAcrossProcesses runs two shoal processes that share
// session.keys and no cluster: a session written through one is read
// through the other; a third process with other keys does not read it.
func TestPagesSessionAcrossProcesses(t *testing.T) {
	shared := pagesSiteDir(t, 1)
	other := pagesSiteDir(t, 7)
	a := startNamed(t, shared, "a")
	b := startNamed(t, shared, "b")
	c := startNamed(t, other, "c")

	jar, _ := cookiejar.New(nil) // cookies ignore ports: one jar serves all three
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	for _, step := range []struct {
		node *proc
		want string
	}{
		{a, "n=1 node=a"},
		{b, "n=2 node=b"},
		{a, "n=3 node=a"},
		{b, "n=4 node=b"},
		{c, "n=1 node=c"}, // other keys: an empty session, not an error
	} {
		resp, err := client.Get(step.node.url + "/count")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != step.want {
			t.Fatalf("GET %s/count: %d %q, want %q", step.node.url, resp.StatusCode, body, step.want)
		}
	}
}

// pagesSiteDir makes a site with a counter page, a layout, and a config
// whose session keys are derived from seed.
func pagesSiteDir(t *testing.T, seed byte) string {
	t.Helper()
	hash := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{seed}, 64))
	block := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{seed + 1}, 32))
	dir := siteDir(t, fmt.Sprintf(`[log]
access = "off"

[session]
keys = [%q, %q]

[[site]]
root = "www"
templates = "templates"
`, hash, block))
	if err := os.Mkdir(filepath.Join(dir, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "www", "count.tmpl"),
		`{{$n := add 1 (atoi (.Session.Get "n"))}}{{.Session.Set "n" $n}}{{template "line" (list $n .Node.Name)}}`)
	writeFile(t, filepath.Join(dir, "templates", "line.tmpl"), `{{define "line"}}n={{index . 0}} node={{index . 1}}{{end}}`)
	return dir
}

// startNamed runs a node called name from dir and waits until it answers.
func startNamed(t *testing.T, dir, name string) *proc {
	t.Helper()
	return startArgs(t, dir, func() []string { return []string{"-name", name} })
}
