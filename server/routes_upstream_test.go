package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A route's upstream action proxies on every entry path, after the
// route's modifiers, with the request's ID and the checked user's
// rewrite applied (a front controller).
func TestRouteUpstreamEveryPath(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app %s %s?%s xff=%s id=%t", r.Method, r.URL.Path, r.URL.RawQuery,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Request-Id") != "")
	}))
	defer app.Close()
	n, _ := startBooksNodeWith(t, false, map[string]string{"www/static.txt": "static\n"}, `
[[site.route]]
path = "/api/*"
headers = {"X-Api" = "1"}
upstream = "app"
[[site.route]]
path = "/blog/*"
try_files = ["{path}", "/front.php?{query}"]
[[site.route]]
path = "/front.php"
upstream = "app"

[[upstream]]
name = "app"
targets = ["`+app.URL+`"]
`)
	for _, path := range booksPaths {
		got := booksResponse(t, n, path, "GET", "/api/v1/items?x=1", nil, "")
		if got.status != 200 || !strings.HasPrefix(got.body, "app GET /api/v1/items?x=1 xff=127.0.0.1 id=true") ||
			got.header.Get("X-Api") != "1" {
			t.Errorf("%s: %d %q X-Api=%q", path, got.status, got.body, got.header.Get("X-Api"))
		}
		got = booksResponse(t, n, path, "GET", "/blog/2026/post?p=3", nil, "")
		if got.status != 200 || !strings.HasPrefix(got.body, "app GET /front.php?p=3") {
			t.Errorf("%s: front controller: %d %q", path, got.status, got.body)
		}
	}
}
