package server_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"shoal/internal/testenv"
)

// TestH2Spec runs h2spec (a Go tool of this module: `go tool h2spec`)
// against a node's HTTPS listener on a static file, a CGI script and a
// template page: every one of its 145 cases must pass on each.
func TestH2Spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec takes a while")
	}
	goBin := testenv.LookPath(t, "go", "golang-go")
	dir := newSiteDir(t)
	www := filepath.Join(dir, "www")
	os.WriteFile(filepath.Join(www, "page.tmpl"), []byte(`<p>q={{query "q"}}</p>`), 0o644)
	cgiDir := filepath.Join(dir, "cgi-bin")
	os.Mkdir(cgiDir, 0o755)
	os.WriteFile(filepath.Join(cgiDir, "hi.sh"), []byte("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhello from CGI\\n'\n"), 0o755)
	tn := startNodeIn(t, dir, `https = "127.0.0.1:0"
[tls]
self_signed = true
[[site]]
root = "www"
[[site.cgi]]
prefix = "/cgi-bin/"
dir = "cgi-bin"
`)
	host, port, _ := strings.Cut(tn.node.Addrs()["https"], ":")
	h2spec := buildH2Spec(t, goBin)
	for _, path := range []string{"/index.html", "/cgi-bin/hi.sh", "/page?q=1"} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, h2spec, "-h", host, "-p", port, "-t", "-k", "-P", path, "-o", "5").CombinedOutput()
			summary := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindSubmatch(out)
			if summary == nil {
				t.Fatalf("h2spec: %v, no summary in:\n%s", err, out)
			}
			if string(summary[1]) != "145" || string(summary[2]) != "145" {
				t.Errorf("h2spec on %s: %s\n%s", path, summary[0], failures(out))
			}
		})
	}
}

// buildH2Spec builds the module's h2spec tool once, into the test's
// temporary directory.
func buildH2Spec(t *testing.T, goBin string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "h2spec")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/summerwind/h2spec/cmd/h2spec").CombinedOutput()
	if err != nil {
		t.Fatalf("building h2spec (a tool in go.mod): %v\n%s", err, out)
	}
	return bin
}

// failures is the part of h2spec's report that lists what failed.
func failures(out []byte) []byte {
	if i := bytes.Index(out, []byte("Failures:")); i >= 0 {
		return out[i:]
	}
	return out
}
