package upstream

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shoal/internal/testenv"
)

// startFPM runs php-fpm with its own config on a unix socket in a temp
// folder and returns the socket's path once it accepts connections.
func startFPM(t *testing.T) string {
	t.Helper()
	bin := testenv.LookPath(t, "php-fpm8.2", "php-fpm")
	dir := t.TempDir()
	sock := filepath.Join(dir, "fpm.sock")
	user := ""
	if os.Getuid() == 0 {
		user = "user = root\ngroup = root\n"
	}
	conf := fmt.Sprintf("[global]\nerror_log = %s/fpm.log\ndaemonize = no\n[www]\n%slisten = %s\npm = static\npm.max_children = 2\n",
		dir, user, sock)
	confPath := filepath.Join(dir, "fpm.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "-F", "-y", confPath, "-p", dir}
	if os.Getuid() == 0 {
		args = append(args, "-R")
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		select {
		case <-exited:
			t.Fatalf("php-fpm exited: %s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("php-fpm did not listen within 10s: %s", out.String())
	return ""
}

// TestFastCGIUpstream: an upstream of a php-fpm and a dead FastCGI target
// serves scripts with the upstream's root, split and env, skips the dead
// one, and checks the live one actively.
func TestFastCGIUpstream(t *testing.T) {
	sock := startFPM(t)
	root, err := filepath.Abs("testdata/php")
	if err != nil {
		t.Fatal(err)
	}
	dead := "fastcgi+unix:" + filepath.Join(t.TempDir(), "none.sock")
	u, fe := front(t, Options{Name: "php", Targets: []string{dead, "fastcgi+unix:" + sock}, Policy: First,
		Root: root, Index: "hello.php", Split: ".php", Env: map[string]string{"SHOAL_TEST": "env"},
		Health: "/health.php", HealthInterval: 50 * time.Millisecond}, Site{})
	eventually(t, "the dead target seen down", func() bool {
		s := u.Snapshot()
		return !s.Targets[0].Healthy && s.Targets[1].Healthy
	})
	for _, tc := range []struct{ path, body, script string }{
		{"/hello.php/a/b", "hello /a/b env ", "/hello.php"},
		{"/", "hello  env ", "/hello.php"},
	} {
		status, body, hdr := get(t, fe.Client(), fe.URL+tc.path)
		if status != 200 || !strings.HasPrefix(body, tc.body) || hdr.Get("X-Script") != tc.script {
			t.Errorf("%s: %d %q %v", tc.path, status, body, hdr)
		}
	}
	status, _, _ := get(t, fe.Client(), fe.URL+"/missing.php")
	if status != 404 {
		t.Errorf("missing script: %d", status)
	}
	if s := u.Snapshot(); s.Targets[1].Inflight != 0 || s.Targets[0].Failures == 0 {
		t.Errorf("snapshot %+v", s)
	}
}
