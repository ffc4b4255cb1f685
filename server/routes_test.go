package server

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// routeFiles and routeConfig are a site with one route of each kind.
var routeFiles = map[string]string{
	"www/style.css":      "body{}\n",
	"www/admin/x.txt":    "admin\n",
	"www/private/x.txt":  "private\n",
	"www/app/index.html": "<h1>app shell</h1>\n",
	"www/app/app.js":     "js\n",
	"www/login":          "login form\n",
	"cgi-bin/whoami.sh":  "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nuser=%s type=%s auth=%s id=%s\\n' \"$REMOTE_USER\" \"$AUTH_TYPE\" \"$HTTP_AUTHORIZATION\" \"$QUERY_STRING\"\n",
}

const routeConfig = `
[[site.route]]
path = "/*"
headers = {"X-Frame-Options" = "DENY", "-Last-Modified" = ""}
[[site.route]]
path = "*.css"
headers = {"Cache-Control" = "public, max-age=31536000, immutable"}
[[site.route]]
path = "/old/*"
redirect = "/new{path}?{query}"
status = 301
[[site.route]]
path = "/admin/*"
allow = ["10.0.0.0/8"]
[[site.route]]
path = "/private/*"
auth = "users.htpasswd"
auth_realm = "staff"
[[site.route]]
path = "/cgi-bin/whoami.sh"
auth = "users.htpasswd"
[[site.route]]
path = "/gone"
respond = 410
[[site.route]]
path = "~^/u/([0-9]+)$"
rewrite = "/cgi-bin/whoami.sh?{1}"
[[site.route]]
path = "/app/*"
try_files = ["{path}", "/app/index.html"]
[[site.route]]
path = "/loop"
rewrite = "/loop"
[[site.route]]
path = "/login"
methods = ["POST"]
rate = "1/m"
`

func startRoutesNode(t *testing.T, clustered bool) (*Node, string) {
	t.Helper()
	n, dir := startBooksNodeWith(t, clustered, routeFiles, routeConfig)
	return n, dir
}

func writeUsers(t *testing.T, dir string) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost) // booksDo sends alice:pw
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"users.htpasswd", "admin.htpasswd"} { // admin: docs/routes.md's name
		if err := os.WriteFile(filepath.Join(dir, name), []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRoutesSameOnEveryPath: every route gives the same answer on every
// entry path (HTTP/1.1 fast and net/http, HTTP/2 fast and full, HTTP/3),
// and a file under a headers route is still answered by the fast paths,
// with the route's headers.
func TestRoutesSameOnEveryPath(t *testing.T) {
	for _, clustered := range []bool{false, true} {
		t.Run(map[bool]string{true: "cluster", false: "alone"}[clustered], func(t *testing.T) {
			testRoutesSame(t, clustered)
		})
	}
}

func testRoutesSame(t *testing.T, clustered bool) {
	n, _ := startRoutesNode(t, clustered)
	noAuth := []string{"Authorization", "Basic bWFsbG9yeTp4"} // mallory:x
	cases := []struct {
		name, target string
		hdr          []string
		fast         bool
		status       int
		header       map[string]string // "" = absent
		body         string            // contained
	}{
		{"headers route, fast", "/index.html", nil, true, 200,
			map[string]string{"X-Frame-Options": "DENY", "Last-Modified": "", "Cache-Control": ""}, "home"},
		{"two headers routes", "/style.css", nil, true, 200,
			map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "public, max-age=31536000, immutable"}, "body{}"},
		{"headers on a 404", "/nope.txt", nil, false, 404, map[string]string{"X-Frame-Options": "DENY"}, "custom not found"},
		{"redirect", "/old/a.html?x=1", nil, false, 301, map[string]string{"Location": "/new/old/a.html?x=1"}, ""},
		{"allow refuses", "/admin/x.txt", nil, false, 403, map[string]string{"X-Frame-Options": "DENY"}, ""},
		{"auth grants", "/private/x.txt", nil, false, 200, nil, "private"},
		{"auth refuses", "/private/x.txt", noAuth, false, 401,
			map[string]string{"Www-Authenticate": `Basic realm="staff", charset="UTF-8"`}, ""},
		{"cgi gets the user, not the password", "/cgi-bin/whoami.sh", nil, false, 200, nil, "user=alice type=Basic auth= id="},
		{"respond", "/gone", nil, false, 410, nil, ""},
		{"rewrite to cgi", "/u/42", nil, false, 200, nil, "user=alice type=Basic auth= id=42"},
		{"try_files hit", "/app/app.js", nil, false, 200, nil, "js"},
		{"try_files fallback", "/app/deep/link", nil, false, 200, nil, "app shell"},
		{"rewrite loop", "/loop", nil, false, 500, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range booksPaths {
				if tc.name == "headers route, fast" && strings.HasSuffix(path, "-full") {
					continue // the -full paths differ only in forcing the chain
				}
				hdr := tc.hdr
				fastBefore := n.fastAnswered() + n.h2Answered.Load()
				got := booksResponse(t, n, path, "GET", tc.target, hdr, "")
				fast := n.fastAnswered()+n.h2Answered.Load() > fastBefore
				if got.status != tc.status {
					t.Errorf("%s: status %d, want %d (body %q)", path, got.status, tc.status, got.body)
				}
				for k, v := range tc.header {
					if g := got.header.Get(k); g != v {
						t.Errorf("%s: %s = %q, want %q", path, k, g, v)
					}
				}
				if !strings.Contains(got.body, tc.body) {
					t.Errorf("%s: body %q, want it to contain %q", path, got.body, tc.body)
				}
				if want := tc.fast && strings.HasSuffix(path, "-fast"); fast != want {
					t.Errorf("%s: answered by a fast path: %v, want %v", path, fast, want)
				}
			}
		})
	}
}

// A rate holds on every path: the second POST of a client is refused with
// 429 and Retry-After, whichever way it came.
func TestRouteRateEveryPath(t *testing.T) {
	n, _ := startRoutesNode(t, false)
	for i, path := range booksPaths {
		got := booksResponse(t, n, path, "POST", "/login", nil, "user=a")
		want := http.StatusMethodNotAllowed // the static file takes no POST
		if i > 0 {
			want = http.StatusTooManyRequests
		}
		if got.status != want {
			t.Fatalf("%s: request %d: %d, want %d", path, i+1, got.status, want)
		}
		if want == http.StatusTooManyRequests && got.header.Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", path)
		}
	}
	if got := booksResponse(t, n, "h1-fast", "GET", "/login", nil, ""); got.status != 200 {
		t.Fatalf("GET /login (the rate is on POST): %d", got.status)
	}
}

// The user a route's auth checked is the access log's user.
func TestRouteAuthUserLogged(t *testing.T) {
	n, dir := startRoutesNode(t, false)
	booksResponse(t, n, "h1-fast", "GET", "/private/x.txt", nil, "")
	lines := waitLines(t, filepath.Join(dir, "access.log"), 1)
	if !strings.Contains(lines[0], " alice [") || !strings.Contains(lines[0], fmt.Sprintf(`" %d `, 200)) {
		t.Fatalf("log line %q", lines[0])
	}
}
