package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// specRoutes exercises every route key; /c1 .. /c10 rewrite in a chain of
// ten (allowed), /c0 adds an eleventh (refused).
func specRoutes() string {
	var b strings.Builder
	b.WriteString(`
[[site.route]]
path = "/ph"
redirect = "{scheme}://{host}/to?p={path}&q={query}&u={uri}&r={remote}"
[[site.route]]
path = "~^/re/([a-z]+)/([0-9]+)$"
redirect = "/got/{2}/{1}"
status = 301
[[site.route]]
path = "/pre/*"
respond = 418
[[site.route]]
path = "/post-only"
methods = ["POST"]
respond = 409
[[site.route]]
path = "/gone"
respond = 404
[[site.route]]
path = "/deny/*"
deny = ["127.0.0.0/8"]
[[site.route]]
path = "/allow/*"
allow = ["10.0.0.0/8"]
[[site.route]]
path = "/locked/*"
auth = "users.htpasswd"
auth_realm = "spec realm"
[[site.route]]
path = "/tf/dir"
try_files = ["/nope.html", "/app/", "=404"]
[[site.route]]
path = "/tf/status"
try_files = ["/nope.html", "=403"]
[[site.route]]
path = "/tf/page"
try_files = ["/nope.html", "/page"]
[[site.route]]
path = "/tf/script"
try_files = ["/nope.html", "/cgi-bin/env.sh"]
[[site.route]]
path = "/tf/any/*"
try_files = ["{path}", "/front.html"]
[[site.route]]
path = "/limited"
rate = "1/m"
[[site.route]]
path = "/r.txt"
headers = {X-Route = "txt {path}", "-Accept-Ranges" = ""}
[[site.route]]
path = "/deny-file.txt"
deny = ["0.0.0.0/0"]
[[site.route]]
path = "/rw"
rewrite = "/cgi-bin/env.sh?from={path}"
`)
	for i := 1; i <= 10; i++ {
		next := fmt.Sprintf("/c%d", i+1)
		if i == 10 {
			next = "/front.html"
		}
		fmt.Fprintf(&b, "[[site.route]]\npath = \"/c%d\"\nrewrite = %q\n", i, next)
	}
	b.WriteString("[[site.route]]\npath = \"/c0\"\nrewrite = \"/c1\"\n")
	return b.String()
}

// TestSpecRoutes: SPEC "Routes": patterns, methods, placeholders,
// allow/deny, auth, try_files, respond with the error page, headers set
// and removed (static fast path too), rate 429, the rewrite limit.
func TestSpecRoutes(t *testing.T) {
	t.Parallel()
	dir := specSite(t, specRoutes())
	writeFile(t, filepath.Join(dir, "www", "deny-file.txt"), "denied")
	p := startShoal(t, dir)
	c := specClient()
	cases := []specCase{
		{name: "placeholders", req: specReq{path: "/ph?a=1", hdr: []string{"Host", "ph.test"}}, status: 302,
			hdr: map[string]string{"Location": "http://ph.test/to?p=/ph&q=a=1&u=/ph?a=1&r=127.0.0.1"}},
		{name: "regexp groups", req: specReq{path: "/re/abc/42"}, status: 301, hdr: map[string]string{"Location": "/got/42/abc"}},
		{name: "prefix includes itself", req: specReq{path: "/pre"}, status: 418},
		{name: "prefix", req: specReq{path: "/pre/x/y"}, status: 418},
		{name: "prefix is not a string prefix", req: specReq{path: "/prefix"}, status: 404},
		{name: "method not matched", req: specReq{path: "/post-only"}, status: 404},
		{name: "method matched", req: specReq{method: "POST", path: "/post-only"}, status: 409},
		{name: "respond uses the error page", req: specReq{path: "/gone"}, status: 404, has: []string{"custom not found"}},
		{name: "deny", req: specReq{path: "/deny/x"}, status: 403},
		{name: "allow others 403", req: specReq{path: "/allow/x"}, status: 403},
		{name: "auth 401", req: specReq{path: "/locked/index.html"}, status: 401, hdrHas: map[string]string{"WWW-Authenticate": `Basic realm="spec realm"`}},
		{name: "auth wrong password", req: specReq{path: "/locked/x", hdr: []string{"Authorization", "Basic YWxpY2U6bm8="}}, status: 401},
		{name: "auth good", req: specReq{path: "/locked/x", hdr: []string{"Authorization", "Basic YWxpY2U6cHc="}}, status: 404},
		{name: "try_files directory", req: specReq{path: "/tf/dir"}, status: 200, has: []string{"app index"}},
		{name: "try_files status", req: specReq{path: "/tf/status"}, status: 403},
		{name: "try_files page", req: specReq{path: "/tf/page"}, status: 200, has: []string{"page /page"}},
		{name: "try_files script", req: specReq{path: "/tf/script"}, status: 200, has: []string{"GATEWAY_INTERFACE=CGI/1.1"}},
		{name: "try_files fallback", req: specReq{path: "/tf/any/missing"}, status: 200, has: []string{"front"}},
		{name: "headers set and removed", req: specReq{path: "/r.txt"}, status: 200,
			hdr: map[string]string{"X-Route": "txt /r.txt"}, hdrNone: []string{"Accept-Ranges"}},
		{name: "headers on HEAD", req: specReq{method: "HEAD", path: "/r.txt"}, status: 200, hdr: map[string]string{"X-Route": "txt /r.txt"}},
		{name: "deny a static file", req: specReq{path: "/deny-file.txt"}, status: 403, hasNot: []string{"denied"}},
		{name: "rewrite to a script with query", req: specReq{path: "/rw"}, status: 200, has: []string{"QUERY_STRING=from=/rw\n", "SCRIPT_NAME=/cgi-bin/env.sh\n"}},
		{name: "ten rewrites", req: specReq{path: "/c1"}, status: 200, has: []string{"front"}},
		{name: "eleven rewrites 500", req: specReq{path: "/c0"}, status: 500, hasNot: []string{"front"}, logHas: "path=/c0"},
		{name: "rate first", req: specReq{path: "/limited"}, status: 404},
		{name: "rate exceeded", req: specReq{path: "/limited"}, status: 429, hdrHas: map[string]string{"Retry-After": ""}},
	}
	runSpecCases(t, p, c, p.url, cases)
	t.Run("Retry-After set", func(t *testing.T) {
		resp, _ := specDo(t, c, p.url, specReq{path: "/limited"})
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	})
	t.Run("access log user field", func(t *testing.T) {
		pollFor(t, `"user":"alice" in the access log`, func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
			return strings.Contains(string(b), `"user":"alice"`)
		})
	})
	t.Run("htpasswd reloaded with the config", func(t *testing.T) {
		writeHtpasswd(t, filepath.Join(dir, "users.htpasswd"), "alice", "new")
		p.signal(syscall.SIGHUP)
		newPw := specReq{path: "/locked/x", hdr: []string{"Authorization", "Basic YWxpY2U6bmV3"}} // alice:new
		pollFor(t, "alice's new password accepted after SIGHUP", func() bool {
			resp, _ := specDo(t, c, p.url, newPw)
			return resp.StatusCode == 404
		})
		if resp, _ := specDo(t, c, p.url, specReq{path: "/locked/x", hdr: []string{"Authorization", "Basic YWxpY2U6cHc="}}); resp.StatusCode != 401 {
			t.Errorf("old password after reload: %d, want 401", resp.StatusCode)
		}
	})
	t.Run("keep-alive connection sees routes", func(t *testing.T) {
		// The second request on a kept connection may take a fast path.
		kc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
		defer kc.CloseIdleConnections()
		for i := 0; i < 3; i++ {
			resp, body := specDo(t, kc, p.url, specReq{path: "/deny-file.txt"})
			if resp.StatusCode != 403 || body == "denied" {
				t.Errorf("request %d on one connection: %d %q", i, resp.StatusCode, body)
			}
			resp, _ = specDo(t, kc, p.url, specReq{path: "/r.txt"})
			if resp.Header.Get("X-Route") == "" || resp.Header.Get("Accept-Ranges") != "" {
				t.Errorf("request %d on one connection: X-Route %q, Accept-Ranges %q", i, resp.Header.Get("X-Route"), resp.Header.Get("Accept-Ranges"))
			}
		}
	})
}

// TestSpecRequestID: SPEC "Request IDs": an X-Request-ID from a trusted
// proxy is kept (CGI, JSON access log), one from anyone else replaced;
// likewise only a trusted proxy's X-Forwarded-For sets REMOTE_ADDR.
func TestSpecRequestID(t *testing.T) {
	t.Parallel()
	dir := specSite(t, "")
	p := startShoal(t, dir)
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			}}}
	}
	cases := []struct {
		name, ip, sent, remote string
		kept                   bool
	}{
		{"trusted proxy", "127.0.0.2", "spec-trusted-id-1", "203.0.113.9", true},
		{"untrusted client", "127.0.0.1", "spec-forged-id-2", "127.0.0.1", false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := specDo(t, from(tc.ip), p.url, specReq{path: "/cgi-bin/env.sh",
				hdr: []string{"X-Request-ID", tc.sent, "X-Forwarded-For", "203.0.113.9"}})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := strings.Contains(body, "HTTP_X_REQUEST_ID="+tc.sent+"\n"); got != tc.kept {
				t.Errorf("CGI got the sent ID: %v, want %v\n%s", got, tc.kept, body)
			}
			// trusted_proxies: only a trusted proxy's X-Forwarded-For is believed.
			if !strings.Contains(body, "REMOTE_ADDR="+tc.remote+"\n") {
				t.Errorf("REMOTE_ADDR is not %s:\n%s", tc.remote, body)
			}
			if !strings.Contains(body, "HTTP_X_REQUEST_ID=") {
				t.Errorf("no HTTP_X_REQUEST_ID at all")
			}
			pollFor(t, "the request in the JSON access log", func() bool {
				b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
				return strings.Count(string(b), `"uri":"/cgi-bin/env.sh"`) > i
			})
			b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
			if got := strings.Contains(string(b), `"request_id":"`+tc.sent+`"`); got != tc.kept {
				t.Errorf("access log has the sent ID: %v, want %v\n%s", got, tc.kept, b)
			}
		})
	}
}

// TestSpecRoutesUpstream: SPEC "Routes apply to the fast paths too": on a
// kept connection (where plain upstream requests may be relayed by the
// fast path) a deny before the upstream route still answers 403 and a
// headers route still sets and removes response headers; an upstream
// that refuses gives 502 with the site's error page.
func TestSpecRoutesUpstream(t *testing.T) {
	t.Parallel()
	app := listenTCP(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "spec-app")
		fmt.Fprintf(w, "appdata %s", r.URL.Path)
	})}
	go srv.Serve(app)
	t.Cleanup(func() { srv.Close() })
	dead := freeAddr(t)
	dir := specSite(t, fmt.Sprintf(`
[[site.route]]
path = "/api/secret/*"
deny = ["0.0.0.0/0"]
[[site.route]]
path = "/api/*"
headers = {X-Up = "yes", "-Server" = ""}
[[site.route]]
path = "/api/*"
upstream = "app"
[[site.route]]
path = "/down/*"
upstream = "down"

[[upstream]]
name = "app"
targets = ["http://%s"]

[[upstream]]
name = "down"
targets = ["http://%s"]
`, app.Addr(), dead))
	writeFile(t, filepath.Join(dir, "www", "502.html"), "custom bad gateway\n")
	cfgPath := filepath.Join(dir, "config.toml")
	writeFile(t, cfgPath, strings.Replace(readFileT(t, cfgPath), `error_pages = {404 = "404.html"}`, `error_pages = {404 = "404.html", 502 = "502.html"}`, 1))
	p := startShoal(t, dir)
	kc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	defer kc.CloseIdleConnections()
	cases := []specCase{
		{name: "proxied with route headers", req: specReq{path: "/api/x"}, status: 200, has: []string{"appdata /api/x"},
			hdr: map[string]string{"X-Up": "yes"}, hdrNone: []string{"Server"}},
		{name: "deny before upstream", req: specReq{path: "/api/secret/y"}, status: 403, hasNot: []string{"appdata"}},
		{name: "refused upstream 502 error page", req: specReq{path: "/down/x"}, status: 502, has: []string{"custom bad gateway"}},
	}
	// Twice over one kept connection: the second round may take fast paths.
	for round := 0; round < 2; round++ {
		runSpecCases(t, p, kc, p.url, cases)
	}
}
