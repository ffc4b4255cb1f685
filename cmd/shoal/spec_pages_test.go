package main

import (
	"net/http/cookiejar"
	"strings"
	"testing"
)

// specPagesRoutes protects /user so that a page sees .Request.User.
const specPagesRoutes = `
[[site.route]]
path = "/user"
auth = "users.htpasswd"
`

// TestSpecPages: SPEC "Templates": clean URLs, the data and functions a
// page sees, escaping, httpError, the 500 on a render error with
// file:line in the log and never half a page, no ETag of the source.
func TestSpecPages(t *testing.T) {
	t.Parallel()
	p := startShoal(t, specSite(t, specPagesRoutes))
	c := specClient()
	data := specReq{path: "/data?q=42&x=%3Cscript%3Ealert(1)%3C/script%3E",
		hdr: []string{"X-Name", "xn", "Cookie", "c=cookieval"}}
	cases := []specCase{
		{name: "clean URL", req: specReq{path: "/page"}, status: 200, has: []string{"page /page"}},
		{name: "folder index.tmpl", req: specReq{path: "/pg/"}, status: 200, has: []string{"pg index /pg/"}},
		{name: "data and functions", req: data, status: 200, has: []string{
			"M=GET\n", "P=/data\n", "Q=42\n", "HDR=xn\n", "IP=127.0.0.1\n", "RA=127.0.0.1:", "TLS=false\n",
			"query=42\n", "cookie=cookieval\n", "header=xn\n", "add=3\n", "atoi=4\n",
			"include=0123456789abcdefghij\n", "<h1>Title</h1>", "<del>gone</del>", "<table>",
			"set=\n", "get=v\n", "del=\n", "after=\n", "unset=\n", "members=1\n", "member=", " load=", "now=set\n",
			"layout=LAYOUT\n", "escaped=&lt;script&gt;alert(1)&lt;/script&gt;\n",
		}, hasNot: []string{"<script>"}, hdrNone: []string{"ETag", "Last-Modified"}},
		{name: "HEAD", req: specReq{method: "HEAD", path: "/page"}, status: 200},
		{name: "node name", req: specReq{path: "/data"}, status: 200, hasNot: []string{"node=\n"}},
		{name: "host", req: specReq{path: "/data", hdr: []string{"Host", "www.example.test"}}, status: 200, has: []string{"H=www.example.test"}},
		{name: "httpError 404", req: specReq{path: "/e404"}, status: 404, has: []string{"custom not found"}, hasNot: []string{"before"}},
		{name: "render error 500 with file:line", req: specReq{path: "/bad"}, status: 500,
			hasNot: []string{"HALF-A-PAGE", "Nope"}, logHas: "bad.tmpl:2"},
		{name: "include outside root", req: specReq{path: "/inc-out"}, status: 500, hasNot: []string{"outside root"}},
		{name: "include a dotfile", req: specReq{path: "/inc-dot"}, status: 500, hasNot: []string{"SECRET"}},
		{name: "user from auth", req: specReq{path: "/user", hdr: []string{"Authorization", "Basic YWxpY2U6cHc="}}, status: 200, has: []string{"user=alice"}},
		{name: "tampered session cookie", req: specReq{path: "/whoami", hdr: []string{"Cookie", "shoal_session=MTc5NjU4MjU2OXxvYmNxdFg0US1QejFOa1Q3LXNKOGFDdnpnYTE3N1BKZk5maEwzZz09fPDZh"}},
			status: 200, has: []string{"session user=\n"}},
	}
	runSpecCases(t, p, c, p.url, cases)

	// A session written by a CGI script (X-Replace-Session) reads in a
	// page; the cookie carries SPEC's flags over plain HTTP.
	t.Run("session from CGI to page", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		jc := specClient()
		jc.Jar = jar
		resp, body := specDo(t, jc, p.url, specReq{path: "/cgi-bin/sess.sh"})
		if resp.StatusCode != 200 || resp.Header.Get("X-Replace-Session") != "" {
			t.Fatalf("sess.sh: %d, X-Replace-Session %q passed to the client; body %q", resp.StatusCode, resp.Header.Get("X-Replace-Session"), body)
		}
		cookie := resp.Header.Get("Set-Cookie")
		for _, flag := range []string{"shoal_session=", "HttpOnly", "SameSite=Lax", "Path=/"} {
			if !strings.Contains(cookie, flag) {
				t.Errorf("Set-Cookie %q lacks %s", cookie, flag)
			}
		}
		if strings.Contains(cookie, "Secure") {
			t.Errorf("Set-Cookie %q is Secure over plain HTTP", cookie)
		}
		if _, body = specDo(t, jc, p.url, specReq{path: "/whoami"}); !strings.Contains(body, "session user=bob") {
			t.Errorf("page after the CGI set user=bob: %q", body)
		}
		if _, body = specDo(t, jc, p.url, specReq{path: "/cgi-bin/sess.sh"}); !strings.Contains(body, "S=n=1&user=bob") && !strings.Contains(body, "S=user=bob&n=1") {
			t.Errorf("HTTP_SESSION on the second run: %q", body)
		}
	})
}
