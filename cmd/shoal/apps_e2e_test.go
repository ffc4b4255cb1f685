package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/internal/testenv"
)

const (
	gitBackend = "/usr/lib/git-core/git-http-backend"
	cgitCGI    = "/usr/lib/cgit/cgit.cgi"
	// smallRepoSize is the random file in small.git (cloned 24 times at
	// once), slowRepoSize the one in slow.git: at 1 MB/s its clone takes
	// twice the git mapping's 8 s timeout. (The timeout leaves room for a
	// loaded machine's git to check a 40 MB pack in silence.)
	smallRepoSize = 6 << 20
	slowRepoSize  = 16 << 20
	pushSize      = 40 << 20
)

// appsConfig maps git-http-backend at /git/ and cgit at /cgit/ each as one
// program (ScriptAlias to a file), scripts by extension elsewhere, and an
// index that may be a script. The server's body cap is small: the 40 MB
// push passes by the git mapping's own.
const appsConfig = `[server]
max_body_bytes = "1MiB"
drain_delay = "100ms"

[[site]]
root = "www"
index = ["index.html", "index.cgi"]

[[site.cgi]]
prefix = "/git/"
program = %q
timeout = "8s"
max_body_bytes = "200MiB"
max_concurrent = 16
queue_timeout = "120s"
env = {GIT_PROJECT_ROOT = %q, GIT_HTTP_EXPORT_ALL = "1"}

[[site.cgi]]
prefix = "/cgit/"
program = %q
env = {CGIT_CONFIG = %q}

[[site.cgi]]
ext = [".cgi"]
`

// appsSite is a shoal folder with its git repositories and cgitrc.
type appsSite struct {
	dir, repos string
	gitEnv     []string
	smallSum   string // sha256 of small.git's file
}

func newAppsSite(t *testing.T) *appsSite {
	t.Helper()
	testenv.LookPath(t, "git", "git")
	for _, f := range []struct{ path, pkg string }{{gitBackend, "git"}, {cgitCGI, "cgit"}} {
		if _, err := os.Stat(f.path); err != nil {
			testenv.Missing(t, f.path+" not found: apt-get install "+f.pkg)
		}
	}
	s := &appsSite{dir: t.TempDir()}
	s.repos = filepath.Join(s.dir, "repos")
	home := filepath.Join(s.dir, "home")
	for _, d := range []string{s.repos, home, filepath.Join(s.dir, "www", "app")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.gitEnv = append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test")
	writeFile(t, filepath.Join(s.dir, "www", "index.html"), "<h1>home</h1>\n")
	if err := os.WriteFile(filepath.Join(s.dir, "www", "app", "index.cgi"),
		[]byte("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nindex script %s\\n' \"$SCRIPT_NAME\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cgitrc := filepath.Join(s.dir, "cgitrc")
	writeFile(t, cgitrc, "virtual-root=/cgit/\ncache-size=0\nroot-title=shoal test repos\nscan-path="+s.repos+"\n")
	writeFile(t, filepath.Join(s.dir, "config.toml"), fmt.Sprintf(appsConfig, gitBackend, s.repos, cgitCGI, cgitrc))

	s.bareRepo(t, "repo.git")
	s.smallSum = s.seedRepo(t, "small.git", smallRepoSize)
	return s
}

// bareRepo makes an empty bare repository that takes unauthenticated
// pushes and keeps quiet phases short (keepalive packets every second
// while git prepares or checks a pack, as a busy git does with progress).
func (s *appsSite) bareRepo(t *testing.T, name string) string {
	t.Helper()
	bare := filepath.Join(s.repos, name)
	s.git(t, s.dir, "init", "-q", "--bare", "-b", "main", bare)
	s.git(t, bare, "config", "http.receivepack", "true")
	s.git(t, bare, "config", "uploadpack.keepAlive", "1")
	s.git(t, bare, "config", "receive.keepAlive", "1")
	return bare
}

// seedRepo makes a bare repository holding one commit with a random
// data.bin of size bytes, pushed locally; it returns the file's sha256.
func (s *appsSite) seedRepo(t *testing.T, name string, size int) string {
	t.Helper()
	bare := s.bareRepo(t, name)
	work := filepath.Join(s.dir, name+"-work")
	s.git(t, s.dir, "init", "-q", "-b", "main", work)
	sum := writeRandom(t, filepath.Join(work, "data.bin"), size)
	s.git(t, work, "add", "data.bin")
	s.git(t, work, "commit", "-q", "-m", "seed "+name)
	s.git(t, work, "push", "-q", bare, "main")
	return sum
}

// git runs git in dir and fails the test when it fails.
func (s *appsSite) git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := s.gitCmd(context.Background(), dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *appsSite) gitCmd(ctx context.Context, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir, cmd.Env = dir, s.gitEnv
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writeRandom writes n random bytes to path and returns their sha256.
func writeRandom(t *testing.T, path string, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestE2EGitSmartHTTP: clone, push of a 40 MB commit (over the server's
// body cap, under the mapping's) and fetch through git-http-backend
// mapped with program at /git/.
func TestE2EGitSmartHTTP(t *testing.T) {
	s := newAppsSite(t)
	p := startShoal(t, s.dir)
	url := p.url + "/git/repo.git"

	early := filepath.Join(s.dir, "early")
	s.git(t, s.dir, "clone", "-q", p.url+"/git/small.git", early)
	if got := fileSum(t, filepath.Join(early, "data.bin")); got != s.smallSum {
		t.Fatalf("cloned small.git's file differs")
	}
	s.git(t, early, "remote", "set-url", "origin", url)

	work := filepath.Join(s.dir, "push-work")
	s.git(t, s.dir, "init", "-q", "-b", "main", work)
	sum := writeRandom(t, filepath.Join(work, "big.bin"), pushSize)
	s.git(t, work, "add", "big.bin")
	s.git(t, work, "commit", "-q", "-m", "forty megabytes")
	s.git(t, work, "push", "-q", url, "main")

	fresh := filepath.Join(s.dir, "fresh")
	s.git(t, s.dir, "clone", "-q", url, fresh)
	if got := fileSum(t, filepath.Join(fresh, "big.bin")); got != sum {
		t.Error("the pushed file cloned back differs")
	}
	s.git(t, early, "fetch", "-q", "origin", "main")
	if out := s.git(t, early, "rev-parse", "FETCH_HEAD"); strings.TrimSpace(out) != strings.TrimSpace(s.git(t, work, "rev-parse", "HEAD")) {
		t.Errorf("fetch got %s", out)
	}
	if strings.Contains(p.stderr.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", p.stderr)
	}
}

// TestE2EGitSlowClone: a clone read at 1 MB/s takes three times the
// mapping's timeout and completes, since the timeout counts only time
// without I/O.
func TestE2EGitSlowClone(t *testing.T) {
	s := newAppsSite(t)
	sum := s.seedRepo(t, "slow.git", slowRepoSize)
	p := startShoal(t, s.dir)
	relay := testenv.StartRelay(t, p.addr, func(dst io.Writer, src io.Reader) { pace(dst, src, 1<<20) }).Addr
	start := time.Now()
	dst := filepath.Join(s.dir, "slow")
	s.git(t, s.dir, "clone", "-q", "http://"+relay+"/git/slow.git", dst)
	took := time.Since(start)
	if got := fileSum(t, filepath.Join(dst, "data.bin")); got != sum {
		t.Error("the slow clone's file differs")
	}
	if took < 12*time.Second {
		t.Errorf("clone took %v: the relay did not throttle it well past the 8s timeout", took)
	}
	if strings.Contains(p.stderr.String(), "timed out") {
		t.Errorf("a timeout fired:\n%s", p.stderr)
	}
}

// TestE2EGitParallelClones: 24 clones at once with max_concurrent 16: the
// rest wait in the queue (queue_timeout 120s) and none is refused.
func TestE2EGitParallelClones(t *testing.T) {
	s := newAppsSite(t)
	p := startShoal(t, s.dir)
	const clones = 24
	var wg sync.WaitGroup
	errs := make(chan string, clones)
	for i := 0; i < clones; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := filepath.Join(s.dir, fmt.Sprintf("clone-%d", i))
			if out, err := s.gitCmd(context.Background(), s.dir, "clone", "-q", p.url+"/git/small.git", dst); err != nil {
				errs <- fmt.Sprintf("clone %d: %v: %s", i, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if strings.Contains(p.stdout.String(), "\" 503 ") {
		t.Error("a clone request got 503")
	}
}

// TestE2ECgit: cgit's pages at /cgit/ with a cgitrc in the test's folder,
// and an index that is a script.
func TestE2ECgit(t *testing.T) {
	s := newAppsSite(t)
	p := startShoal(t, s.dir)
	for _, tc := range []struct{ path, want string }{
		{"/cgit/", "small.git"},
		{"/cgit/small.git/", "small"},
		{"/cgit/small.git/tree/", "data.bin"},
		{"/cgit/small.git/log/", "small"},
	} {
		resp, body := p.get(tc.path)
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(tc.want)) {
			t.Errorf("%s: %d, body without %q:\n%.400s", tc.path, resp.StatusCode, tc.want, body)
		}
	}
	if resp, body := p.get("/app/"); resp.StatusCode != 200 || string(body) != "index script /app/index.cgi\n" {
		t.Errorf("/app/: %d %q, want the index script", resp.StatusCode, body)
	}
	if resp, body := p.get("/"); resp.StatusCode != 200 || string(body) != "<h1>home</h1>\n" {
		t.Errorf("/: %d %q, want index.html (listed first)", resp.StatusCode, body)
	}
}

// pace copies src to dst at about rate bytes per second, in 16 KiB steps.
func pace(dst io.Writer, src io.Reader, rate int) {
	buf := make([]byte, 16<<10)
	start, sent := time.Now(), 0
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			sent += n
			if ahead := time.Duration(sent)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead) // pacing, not synchronisation
			}
		}
		if err != nil {
			return
		}
	}
}
