package main

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// specCGIExtra adds a mapping with a small body cap and an auth route in
// front of a script.
const specCGIExtra = `
[[site.cgi]]
prefix = "/small/"
dir = "cgi-bin"
max_body_bytes = "16"

[[site.route]]
path = "/cgi-bin/env.sh/private/*"
auth = "users.htpasswd"
`

// TestSpecCGI: SPEC "CGI": RFC 3875 meta-variables and the extra ones,
// httpoxy and HTTP_SESSION, Authorization withheld, chunked bodies given a
// length, the body cap, Status and Location, 502 and 504, streaming.
func TestSpecCGI(t *testing.T) {
	t.Parallel()
	dir := specSite(t, specCGIExtra)
	p := startShoal(t, dir)
	c := specClient()
	port := p.addr[strings.LastIndex(p.addr, ":")+1:]
	www := filepath.Join(dir, "www")
	// The site's paths as the node resolves them (a temp dir may be a link).
	if real, err := filepath.EvalSymlinks(www); err == nil {
		www = real
	}
	env := specReq{method: "POST", path: "/cgi-bin/env.sh/extra/p?a=b&c=%20d", body: strings.NewReader("hello"),
		hdr: []string{"Content-Type", "text/x-test", "X-Name", "xn", "Proxy", "http://evil.test:1", "Session", "user=evil",
			"X_Forwarded_For", "6.6.6.6", "Host", "cgi.test:" + port}}
	cases := []specCase{
		{name: "meta-variables", req: env, status: 200, has: []string{
			"GATEWAY_INTERFACE=CGI/1.1\n", "SERVER_NAME=cgi.test\n", "SERVER_PORT=" + port + "\n", "SERVER_PROTOCOL=HTTP/1.1\n",
			"SERVER_SOFTWARE=", "REQUEST_METHOD=POST\n", "SCRIPT_NAME=/cgi-bin/env.sh\n", "PATH_INFO=/extra/p\n",
			"PATH_TRANSLATED=" + www + "/extra/p\n", "QUERY_STRING=a=b&c=%20d\n", "CONTENT_TYPE=text/x-test\n",
			"CONTENT_LENGTH=5\n", "REMOTE_ADDR=127.0.0.1\n", "HTTP_X_NAME=xn\n", "HTTP_HOST=cgi.test:" + port + "\n",
			"REQUEST_URI=/cgi-bin/env.sh/extra/p?a=b&c=%20d\n", "SCRIPT_FILENAME=", "/cgi-bin/env.sh\n",
			"DOCUMENT_ROOT=" + www + "\n", "REDIRECT_STATUS=200\n", "SHOAL_NODE=", "HTTP_X_REQUEST_ID=", "BODY=hello\n",
		}, hasNot: []string{"HTTP_PROXY", "evil", "HTTPS=on", "6.6.6.6", "HTTP_AUTHORIZATION"}},
		{name: "chunked body gets a length", req: specReq{method: "POST", path: "/cgi-bin/env.sh",
			body: io.MultiReader(strings.NewReader("chunked "), strings.NewReader("body"))},
			status: 200, has: []string{"CONTENT_LENGTH=12\n", "BODY=chunked body\n"}},
		{name: "chunked body over the cap", req: specReq{method: "POST", path: "/small/env.sh",
			body: io.MultiReader(strings.NewReader(strings.Repeat("x", 100)))}, status: 413, hasNot: []string{"GATEWAY_INTERFACE"}},
		{name: "body with length over the cap", req: specReq{method: "POST", path: "/small/env.sh",
			body: strings.NewReader(strings.Repeat("x", 100))}, status: 413, hasNot: []string{"GATEWAY_INTERFACE"}},
		{name: "auth user, no Authorization", req: specReq{path: "/cgi-bin/env.sh/private/x", hdr: []string{"Authorization", "Basic YWxpY2U6cHc="}},
			status: 200, has: []string{"REMOTE_USER=alice\n", "AUTH_TYPE=Basic\n"}, hasNot: []string{"HTTP_AUTHORIZATION", "YWxpY2U6cHc="}},
		{name: "Status and Location", req: specReq{path: "/cgi-bin/status.sh"}, status: 201, hdr: map[string]string{"Location": "http://example.com/made"}},
		{name: "Location alone 302", req: specReq{path: "/cgi-bin/redir.sh"}, status: 302, hdr: map[string]string{"Location": "http://example.com/r"}},
		{name: "HEAD runs the script", req: specReq{method: "HEAD", path: "/cgi-bin/env.sh"}, status: 200},
		{name: "local Location", req: specReq{path: "/cgi-bin/local.sh"}, status: 200, has: []string{"front"}},
		{name: "bad Status 502", req: specReq{path: "/cgi-bin/badstatus.sh"}, status: 502},
		{name: "crash before headers 502", req: specReq{path: "/cgi-bin/crash.sh"}, status: 502, logHas: "spec-crash-stderr"},
	}
	runSpecCases(t, p, c, p.url, cases)
	t.Run("stderr names the script", func(t *testing.T) {
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			if strings.Contains(line, "spec-crash-stderr") && !strings.Contains(line, "crash.sh") {
				t.Errorf("stderr line without the script's name: %s", line)
			}
		}
	})

	t.Run("timeout 504 kills children", func(t *testing.T) {
		resp, _ := specDo(t, c, p.url, specReq{path: "/cgi-bin/slow.sh"})
		if resp.StatusCode != 504 {
			t.Errorf("status %d, want 504", resp.StatusCode)
		}
		b, err := os.ReadFile(filepath.Join(dir, "cgi-bin", "slow.pid"))
		if err != nil {
			t.Fatalf("the script's child wrote no pid: %v", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		pollFor(t, "the script's background child to die", func() bool { return !alive(pid) })
	})

	t.Run("output streamed", func(t *testing.T) {
		resp, err := c.Get(p.url + "/cgi-bin/stream.sh")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		got := make(chan string, 1)
		go func() {
			line, _ := br.ReadString('\n')
			got <- line
		}()
		select {
		case line := <-got:
			if line != "first\n" {
				t.Fatalf("first line %q", line)
			}
		case <-time.After(5 * time.Second):
			// The script waits for go.flag: the first line was held back.
			t.Fatal("the script's first line did not arrive before it finished")
		}
		writeFile(t, filepath.Join(dir, "cgi-bin", "go.flag"), "")
		if rest, _ := io.ReadAll(br); string(rest) != "second\n" {
			t.Errorf("rest %q", rest)
		}
	})
}

// alive reports whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
