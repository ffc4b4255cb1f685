package route

import (
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func mustCompile(t *testing.T, specs []Spec) *Table {
	t.Helper()
	tbl, errs := Compile(specs, Options{Scope: "test", HasUpstream: func(n string) bool { return n == "app" }})
	if len(errs) > 0 {
		t.Fatalf("compile: %v", errs)
	}
	return tbl
}

func req(method, path, query string) *Request {
	return &Request{Method: method, Client: netip.MustParseAddr("192.0.2.7"), Vars: Vars{
		Path: path, Query: query, URI: path + "?" + query, Host: "www.example.com", Scheme: "http", Remote: "192.0.2.7"}}
}

func TestResolveActions(t *testing.T) {
	files := map[string]bool{"/index.html": true, "/app.js": true, "/index.php": true, "/docs/": true}
	exists := func(p string) bool { return files[p] }
	tbl := mustCompile(t, []Spec{
		{Path: "/old/*", Redirect: "/new{path}", Status: 301},
		{Path: "/gone", Respond: 410},
		{Path: "~^/u/([0-9]+)$", Rewrite: "/user.php?id={1}"},
		{Path: "/api/*", Upstream: "app"},
		{Path: "/wp/*", TryFiles: []string{"{path}", "/index.php?{query}"}},
		{Path: "/strict/*", TryFiles: []string{"{path}", "=403"}},
		{Path: "/d/*", TryFiles: []string{"{path}/", "{path}"}},
		{Path: "*.php", Upstream: "app"},
		{Path: "/*", TryFiles: []string{"{path}", "/index.html"}},
	})
	tests := []struct {
		name, path, query string
		want              Result
	}{
		{"redirect", "/old/a", "", Result{Path: "/old/a", Action: Redirect, Status: 301, URL: "/new/old/a", Route: 0}},
		{"respond", "/gone", "", Result{Path: "/gone", Action: Respond, Status: 410, Route: 1}},
		{"rewrite then upstream", "/u/42", "x=1", Result{Path: "/user.php", Query: "id=42", Changed: true, Action: Upstream, Upstream: "app", Route: 7}},
		{"upstream", "/api/v1", "q", Result{Path: "/api/v1", Query: "q", Action: Upstream, Upstream: "app", Route: 3}},
		{"front controller", "/wp/post/1", "p=2", Result{Path: "/index.php", Query: "p=2", Changed: true, Action: Upstream, Upstream: "app", Route: 7}},
		{"try_files status", "/strict/x", "", Result{Path: "/strict/x", Action: Respond, Status: 403, Route: 5}},
		{"try_files fallback is the path itself", "/d/x", "", Result{Path: "/d/x", Route: -1}},
		{"spa fallback", "/deep/link", "", Result{Path: "/index.html", Changed: true, Route: -1}},
		{"spa file", "/app.js", "", Result{Path: "/app.js", Route: -1}},
	}
	for _, tt := range tests {
		got, err := tbl.Resolve(req("GET", tt.path, tt.query), exists)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		tt.want.HeadersFixed = true // no route here sets a header
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func TestResolveDirectoryCandidate(t *testing.T) {
	tbl := mustCompile(t, []Spec{{Path: "/d/*", TryFiles: []string{"{path}/", "=404"}}})
	if got, _ := tbl.Resolve(req("GET", "/d/none", ""), func(string) bool { return false }); got.Action != Respond || got.Status != 404 {
		t.Fatalf("no candidate: %+v, want the =404", got)
	}
	got, err := tbl.Resolve(req("GET", "/d/docs", ""), func(p string) bool { return p == "/d/docs/" })
	if err != nil || got.Path != "/d/docs/" || got.Action != NoAction {
		t.Fatalf("got %+v, %v; want the directory served by its index", got, err)
	}
}

func TestResolveLoop(t *testing.T) {
	tbl := mustCompile(t, []Spec{{Path: "/a", Rewrite: "/b"}, {Path: "/b", Rewrite: "/a"}})
	_, err := tbl.Resolve(req("GET", "/a", ""), func(string) bool { return false })
	if !errors.Is(err, ErrLoop) || !strings.Contains(err.Error(), "route.0 (/a) -> route.1 (/b)") {
		t.Fatalf("err = %v, want a loop naming the routes", err)
	}
}

func TestResolveModifiers(t *testing.T) {
	tbl := mustCompile(t, []Spec{
		{Path: "/*", Headers: map[string]string{"X-Frame-Options": "DENY", "-Server": ""}},
		{Path: "*.js", Headers: map[string]string{"Cache-Control": "public, max-age=31536000, immutable"}},
		{Path: "/admin/*", Allow: []string{"10.0.0.0/8"}},
		{Path: "/admin/*", Methods: []string{"POST"}, Deny: []string{"192.0.2.0/24"}},
		{Path: "/x.js", Headers: map[string]string{"X-Host": "{host}"}},
	})
	got, _ := tbl.Resolve(req("GET", "/x.js", ""), nil)
	h := http.Header{"Server": {"shoal"}, "Cache-Control": {"no-cache"}}
	got.ApplyHeaders(h)
	want := http.Header{"Server": nil, "X-Frame-Options": {"DENY"}, "Cache-Control": {"public, max-age=31536000, immutable"}, "X-Host": {"www.example.com"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("headers = %v, want %v", h, want)
	}
	if got.Denied {
		t.Error("/x.js denied")
	}
	if got.HeadersFixed || got.HeaderRoutes != 0b00011 {
		t.Errorf("/x.js: fixed %v routes %b; want not fixed ({host}), routes 0 and 1", got.HeadersFixed, got.HeaderRoutes)
	}
	if got, _ := tbl.Resolve(req("GET", "/a.js", ""), nil); !got.HeadersFixed || got.HeaderRoutes != 0b00011 {
		t.Errorf("/a.js: fixed %v routes %b; want fixed, routes 0 and 1", got.HeadersFixed, got.HeaderRoutes)
	}

	tests := []struct {
		method, client string
		denied         bool
	}{
		{"GET", "10.1.2.3", false},
		{"GET", "192.0.2.7", true},         // not in allow
		{"POST", "10.1.2.3", false},        // in allow, not in deny
		{"POST", "192.0.2.7", true},        // in deny
		{"HEAD", "::ffff:10.0.0.1", false}, // a v4-mapped client is its v4 address
	}
	for _, tt := range tests {
		r := req(tt.method, "/admin/panel", "")
		r.Client = netip.MustParseAddr(tt.client)
		got, _ := tbl.Resolve(r, nil)
		if got.Denied != tt.denied {
			t.Errorf("%s from %s: denied = %v, want %v", tt.method, tt.client, got.Denied, tt.denied)
		}
	}
}

func TestMethods(t *testing.T) {
	tbl := mustCompile(t, []Spec{{Path: "/login", Methods: []string{"GET"}, Respond: 204}})
	for m, want := range map[string]ActionKind{"GET": Respond, "HEAD": Respond, "POST": NoAction} {
		got, _ := tbl.Resolve(req(m, "/login", ""), nil)
		if got.Action != want {
			t.Errorf("%s: action %v, want %v", m, got.Action, want)
		}
	}
}

func TestScheme(t *testing.T) {
	tbl := mustCompile(t, []Spec{{Path: "/account/*", Scheme: "http", Redirect: "https://{host}{uri}", Status: 308}})
	r := req("GET", "/account/me", "")
	got, _ := tbl.Resolve(r, nil)
	if got.Action != Redirect || got.URL != "https://www.example.com/account/me?" {
		t.Errorf("http: %+v", got)
	}
	r.Vars.Scheme = "https"
	if got, _ := tbl.Resolve(r, nil); got.Action != NoAction {
		t.Errorf("https redirected again: %+v", got)
	}
	if _, errs := Compile([]Spec{{Path: "/", Scheme: "ftp"}}, Options{}); len(errs) != 1 {
		t.Errorf("scheme ftp: %v", errs)
	}
}

func TestNilTable(t *testing.T) {
	var tbl *Table
	got, err := tbl.Resolve(req("GET", "/x", "q"), nil)
	if err != nil || got.Path != "/x" || got.Query != "q" || got.Action != NoAction {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		spec Spec
		want string
	}{
		{Spec{Path: ""}, "route.0.path: is required"},
		{Spec{Path: "/a", Redirect: "/b", Rewrite: "/c"}, "route.0.rewrite: a route has at most one action"},
		{Spec{Path: "/a", Redirect: "/b", Status: 200}, "route.0.status: 200"},
		{Spec{Path: "/a", Status: 301}, "route.0.status: is the redirect's status"},
		{Spec{Path: "/a", Redirect: "/{nope}"}, "route.0.redirect: \"/{nope}\": unknown placeholder {nope}"},
		{Spec{Path: "/a", Rewrite: "b"}, "route.0.rewrite: \"b\": a rewrite target is a path"},
		{Spec{Path: "/a", TryFiles: []string{"=404", "{path}"}}, "route.0.try_files: \"=404\": a status may only be the last entry"},
		{Spec{Path: "/a", TryFiles: []string{"{path}", "=99"}}, "route.0.try_files"},
		{Spec{Path: "/a", Upstream: "nope"}, "route.0.upstream: no [[upstream]] named \"nope\""},
		{Spec{Path: "/a", Respond: 42}, "route.0.respond: 42"},
		{Spec{Path: "/a", Allow: []string{"10.0.0.0/33"}}, "route.0.allow: \"10.0.0.0/33\""},
		{Spec{Path: "/a", Deny: []string{"nope"}}, "route.0.deny"},
		{Spec{Path: "/a", Headers: map[string]string{"Bad Name": "x"}}, "route.0.headers: \"Bad Name\""},
		{Spec{Path: "/a", Headers: map[string]string{"-X": "v"}}, "its value must be \"\""},
		{Spec{Path: "/a", Headers: map[string]string{"X": "a\r\nb"}}, "line break"},
		{Spec{Path: "/a", Auth: "/nonexistent/htpasswd"}, "route.0.auth: htpasswd file"},
		{Spec{Path: "/a", Rate: "fast"}, "route.0.rate: \"fast\""},
		{Spec{Path: "/a", Rate: "5/d"}, "route.0.rate: \"5/d\": the unit"},
		{Spec{Path: "/a", Burst: 3}, "route.0.burst: is set but rate is not"},
		{Spec{Path: "/a", Methods: []string{"get"}}, "route.0.methods"},
		{Spec{Path: "/a", Redirect: "/{1}"}, "needs a \"~regexp\" path"},
	}
	for _, tt := range tests {
		_, errs := Compile([]Spec{tt.spec}, Options{})
		var all []string
		for _, e := range errs {
			all = append(all, e.Error())
		}
		if !strings.Contains(strings.Join(all, "\n"), tt.want) {
			t.Errorf("%+v: errors %q, want one containing %q", tt.spec, all, tt.want)
		}
		var fe *FieldError
		if len(errs) > 0 && !errors.As(errs[0], &fe) {
			t.Errorf("%+v: error %T is not a *FieldError", tt.spec, errs[0])
		}
	}
}

func TestPlain(t *testing.T) {
	tbl := mustCompile(t, []Spec{
		{Path: "/*", Headers: map[string]string{"X-Frame-Options": "DENY"}},
		{Path: "*.js", Headers: map[string]string{"Cache-Control": "immutable", "-Etag": ""}},
		{Path: "/admin/*", Allow: []string{"10.0.0.0/8"}},
		{Path: "/x/*", Headers: map[string]string{"X-Host": "{host}"}},
		{Path: "/old", Redirect: "/new"},
		{Path: "/https/*", Scheme: "https", Headers: map[string]string{"Strict-Transport-Security": "max-age=60"}},
		{Path: "/dated/*", Headers: map[string]string{"-Date": ""}},
	})
	tests := []struct {
		scheme, path string
		key          uint64
		ok           bool
	}{
		{"http", "/a.css", 0b1, true},
		{"http", "/a.js", 0b11, true},
		{"http", "/admin/a.js", 0, false},
		{"http", "/x/a", 0, false},
		{"http", "/old", 0, false},
		{"http", "/https/a", 0b1, true},
		{"https", "/https/a", 0b100001, true},
		{"http", "/dated/a", 0, false}, // the fast path writes Date itself
	}
	for _, tt := range tests {
		key, ok := tbl.Plain("GET", tt.scheme, tt.path)
		if key != tt.key || ok != tt.ok {
			t.Errorf("%s %s: key %b ok %v, want %b %v", tt.scheme, tt.path, key, ok, tt.key, tt.ok)
		}
	}
	// The headers of a plain key are those Resolve gives.
	res, _ := tbl.Resolve(req("GET", "/a.js", ""), nil)
	if got := tbl.FixedHeaders(0b11); !reflect.DeepEqual(got, res.Headers) {
		t.Errorf("FixedHeaders %v, Resolve %v", got, res.Headers)
	}
	var none *Table
	if key, ok := none.Plain("GET", "http", "/"); key != 0 || !ok {
		t.Error("nil table not plain")
	}
}

// PlainUpstream names the upstream only when the request's first matching
// route is a bare upstream action.
func TestPlainUpstream(t *testing.T) {
	tbl := mustCompile(t, []Spec{
		{Path: "/static/*", Headers: map[string]string{"Cache-Control": "max-age=60"}},
		{Path: "/api/private/*", Upstream: "app", Allow: []string{"10.0.0.0/8"}},
		{Path: "/api/*", Upstream: "app"},
		{Path: "/limited/*", Upstream: "app", Rate: "5/s"},
		{Path: "/dressed/*", Upstream: "app", Headers: map[string]string{"X-A": "b"}},
		{Path: "/*", Upstream: "app"},
	})
	for _, tt := range []struct{ path, want string }{
		{"/api/users", "app"},
		{"/index.html", "app"},
		{"/static/a.css", ""},
		{"/api/private/x", ""},
		{"/limited/x", ""},
		{"/dressed/x", ""},
	} {
		if got := tbl.PlainUpstream("GET", "http", tt.path); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.path, got, tt.want)
		}
	}
	if got := (*Table)(nil).PlainUpstream("GET", "http", "/"); got != "" {
		t.Errorf("nil table: %q", got)
	}
}
