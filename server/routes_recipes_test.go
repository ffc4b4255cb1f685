package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// recipeRE finds the recipes of docs/routes.md: a marker comment, then a
// TOML block.
var recipeRE = regexp.MustCompile("(?s)<!-- recipe: ([a-z-]+) -->\\s*```toml\\n(.*?)```")

func routeRecipes(t *testing.T) map[string]string {
	t.Helper()
	src, err := os.ReadFile("../docs/routes.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range recipeRE.FindAllStringSubmatch(string(src), -1) {
		out[m[1]] = m[2]
	}
	return out
}

// recipeStep is one request a recipe is checked with.
type recipeStep struct {
	method, host, target string
	hdr                  []string
	scheme               string // "https": over the node's TLS listener
	status               int
	header               map[string]string
	body                 string // contained in the body
}

// TestRouteRecipes runs every recipe of docs/routes.md on a node of its
// own and sends the requests each is for.
func TestRouteRecipes(t *testing.T) {
	recipes := routeRecipes(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "php %s?%s", r.URL.Path, r.URL.RawQuery)
	}))
	defer app.Close()
	files := map[string]string{
		"www/app.js":                   "js\n",
		"www/assets/app.3f9c2b1a.js":   "hashed\n",
		"www/admin/index.html":         "admin home\n",
		"www/data/pages/start.txt":     "wiki source\n",
		"www/account/index.html":       "account\n",
		"www/blog/hello/index.html":    "hello post\n",
		"www/cgi-bin-not-a-script.txt": "x\n",
	}
	forwardedFrom := func(ip string) []string { return []string{"X-Forwarded-For", ip} }
	steps := map[string][]recipeStep{
		"spa": {
			{target: "/deep/link/42", status: 200, body: "<h1>home</h1>"},
			{target: "/app.js", status: 200, body: "js"},
			{target: "/sub/", status: 200, body: "<h1>sub</h1>"},
		},
		"www": {
			{host: "www.example.com", target: "/a/b?c=1", status: 301, header: map[string]string{"Location": "https://example.com/a/b?c=1"}},
			{target: "/index.html", status: 200, body: "home"},
		},
		"https-paths": {
			{target: "/account/?x=1", status: 308, header: map[string]string{"Location": "https://books.test/account/?x=1"}},
			{scheme: "https", target: "/account/", status: 200, body: "account"},
			{target: "/index.html", status: 200, body: "home"},
		},
		"cache": {
			{target: "/assets/app.3f9c2b1a.js", status: 200, header: map[string]string{"Cache-Control": "public, max-age=31536000, immutable"}},
			{target: "/index.html", status: 200, header: map[string]string{"Cache-Control": "no-cache"}},
			{target: "/app.js", status: 200, header: map[string]string{"Cache-Control": ""}},
		},
		"admin": {
			{target: "/admin/", status: 200, body: "admin home"},
			{target: "/admin/", hdr: []string{"Authorization", "Basic YWxpY2U6bm8="}, status: 401,
				header: map[string]string{"Www-Authenticate": `Basic realm="admin", charset="UTF-8"`}},
			{target: "/admin/", hdr: forwardedFrom("203.0.113.5"), status: 403},
			{target: "/admin/", hdr: forwardedFrom("192.0.2.44"), status: 200},
		},
		"data": {
			{target: "/data/pages/start.txt", status: 404},
			{target: "/index.html", status: 200},
		},
		"front-controller": {
			{target: "/blog/2026/a-post?p=7", status: 200, body: "php /index.php?p=7"},
			{target: "/wp-login.php?x=1", status: 200, body: "php /wp-login.php?x=1"},
			{target: "/blog/hello/", status: 200, body: "hello post"},
		},
		"login": {
			{method: "POST", target: "/login", status: 405}, {method: "POST", target: "/login", status: 405},
			{method: "POST", target: "/login", status: 405}, {method: "POST", target: "/login", status: 405},
			{method: "POST", target: "/login", status: 405}, {method: "POST", target: "/login", status: 405},
			{method: "POST", target: "/login", status: 429, header: map[string]string{"Retry-After": "12"}},
			{target: "/login", status: 404}, // GET is not limited (and there is no such file)
		},
	}
	for name, toml := range recipes {
		t.Run(name, func(t *testing.T) {
			st, ok := steps[name]
			if !ok {
				t.Fatalf("recipe %q has no test steps", name)
			}
			toml = strings.ReplaceAll(toml, `targets = ["fastcgi://127.0.0.1:9000"]`, `targets = ["`+app.URL+`"]`)
			n, _ := startBooksNodeWith(t, false, files, "\n"+toml)
			for i, s := range st {
				got := recipeDo(t, n, s)
				if got.status != s.status {
					t.Errorf("step %d %s %s: %d, want %d (%q)", i, s.method, s.target, got.status, s.status, got.body)
				}
				for k, v := range s.header {
					if g := got.header.Get(k); g != v {
						t.Errorf("step %d %s: %s = %q, want %q", i, s.target, k, g, v)
					}
				}
				if !strings.Contains(got.body, s.body) {
					t.Errorf("step %d %s: body %q, want %q in it", i, s.target, got.body, s.body)
				}
			}
		})
	}
	for name := range steps {
		if _, ok := recipes[name]; !ok {
			t.Errorf("docs/routes.md lost the recipe %q", name)
		}
	}
}

// recipeDo sends one step: over HTTPS through booksResponse, or as raw
// HTTP/1.1 with the step's Host.
func recipeDo(t *testing.T, n *Node, s recipeStep) answer {
	t.Helper()
	method := s.method
	if method == "" {
		method = "GET"
	}
	hdr := s.hdr
	if !hasAuth(hdr) {
		hdr = append([]string{"Authorization", "Basic YWxpY2U6cHc="}, hdr...) // alice:pw
	}
	if s.scheme == "https" {
		return booksResponse(t, n, "h2-full", method, s.target, hdr, "")
	}
	host := s.host
	if host == "" {
		host = "books.test"
	}
	conn, err := net.DialTimeout("tcp", n.Addrs()["http"], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: 0\r\n", method, s.target, host)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	b.WriteString("\r\n")
	io.WriteString(conn, b.String())
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(body)}
}

func hasAuth(hdr []string) bool {
	for i := 0; i < len(hdr); i += 2 {
		if hdr[i] == "Authorization" {
			return true
		}
	}
	return false
}
