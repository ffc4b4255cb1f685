package route

import "testing"

// realisticRoutes is a site's config of ten routes as a moved nginx server
// block would have them; one headers route matches a hashed asset.
func realisticRoutes() []Spec {
	return []Spec{
		{Path: "/old-blog/*", Redirect: "/blog{path}", Status: 301},
		{Path: "/healthz", Respond: 204},
		{Path: "/admin/*", Allow: []string{"10.0.0.0/8", "192.168.0.0/16"}},
		{Path: "/api/*", Headers: map[string]string{"Cache-Control": "no-store"}},
		{Path: "/assets/*", Headers: map[string]string{"Cache-Control": "public, max-age=31536000, immutable"}},
		{Path: "*.html", Headers: map[string]string{"Cache-Control": "no-cache"}},
		{Path: "/data/*", Respond: 403},
		{Path: "~^/u/([0-9]+)$", Rewrite: "/user.html?id={1}"},
		{Path: "/login", Methods: []string{"POST"}, Rate: "5/m", Burst: 3},
		{Path: "/feed", Redirect: "/blog/feed.xml", Status: 308},
	}
}

// BenchmarkResolve is the route walk's cost for a static file under a
// site of ten routes where one headers route matches.
func BenchmarkResolve(b *testing.B) {
	tbl, errs := Compile(realisticRoutes(), Options{Scope: "bench"})
	if errs != nil {
		b.Fatal(errs)
	}
	r := req("GET", "/assets/app.3f9c2b.js", "")
	b.ReportAllocs()
	for b.Loop() {
		res, err := tbl.Resolve(r, nil)
		if err != nil || len(res.Headers) != 1 {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkResolveNoMatch is a path that no route touches.
func BenchmarkResolveNoMatch(b *testing.B) {
	tbl, _ := Compile(realisticRoutes(), Options{Scope: "bench"})
	r := req("GET", "/img/logo.png", "")
	b.ReportAllocs()
	for b.Loop() {
		if res, _ := tbl.Resolve(r, nil); len(res.Headers) != 0 {
			b.Fatal(res)
		}
	}
}
