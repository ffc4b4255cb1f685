package upstream

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shoal/internal/testenv"
)

// startFPM runs php-fpm on a unix socket and returns the socket's path.
func startFPM(t *testing.T) string {
	t.Helper()
	return testenv.StartPHPFPM(t, testenv.FPMOptions{Children: 2, NoIni: true}).Address
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

// TestFastCGIUpstreamBody: the body of a request kept for a retry (a PUT)
// still reaches the FastCGI application whole.
func TestFastCGIUpstreamBody(t *testing.T) {
	sock := startFPM(t)
	root, err := filepath.Abs("testdata/php")
	if err != nil {
		t.Fatal(err)
	}
	_, fe := front(t, Options{Name: "php", Targets: []string{"fastcgi+unix:" + sock}, Root: root}, Site{})
	for _, method := range []string{http.MethodPut, http.MethodPost} {
		req, err := http.NewRequest(method, fe.URL+"/body.php", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := fe.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "5 5" {
			t.Errorf("%s: %d %q, want the 5 bytes sent", method, resp.StatusCode, b)
		}
	}
}
