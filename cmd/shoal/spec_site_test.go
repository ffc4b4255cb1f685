package main

// Black-box tests written against /work/shared/SPEC.md, as an independent
// judge would: each starts the built binary on loopback ports and checks
// one area of the "Behaviour" section through real sockets. The fixture
// below is shared by the spec_*_test.go files; each test starts its own
// node from it, so no test depends on another's state.

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// specFiles is the site every spec test serves: a root with files that
// must and must not be served, a templates folder, CGI scripts.
var specFiles = map[string]string{
	"www/index.html":      "hello\n",
	"www/404.html":        "custom not found\n",
	"www/r.txt":           "0123456789abcdefghij",
	"www/style.css":       "body{}\n",
	"www/.env":            "SECRET=env\n",
	"www/.git/config":     "secret-git\n",
	"www/sub/index.html":  "sub index\n",
	"www/list/<b>x&y.txt": "x\n",
	"www/list/plain.txt":  "p\n",
	"www/app/index.html":  "app index\n",
	"www/front.html":      "front\n",
	"www/pg/index.tmpl":   "pg index {{.Request.Path}}\n",
	"www/page.tmpl":       "page {{.Request.Path}}\n",
	"www/e404.tmpl":       "before{{httpError 404}}\n",
	"www/bad.tmpl":        "HALF-A-PAGE\n{{.Nope.Bad}}\n",
	"www/data.tmpl": `M={{.Request.Method}}
H={{.Request.Host}}
P={{.Request.Path}}
Q={{.Request.Query.Get "q"}}
HDR={{.Request.Header.Get "X-Name"}}
IP={{.Request.ClientIP}}
RA={{.Request.RemoteAddr}}
TLS={{.Request.TLS}}
query={{query "q"}}
cookie={{cookie "c"}}
header={{header "X-Name"}}
add={{add 1 2}}
atoi={{add (atoi "3") 1}}
include={{include "r.txt"}}
md={{markdown "# Title\n\n~~gone~~\n\n| a |\n|---|\n| 1 |\n"}}
set={{.Session.Set "k" "v"}}
get={{.Session.Get "k"}}
del={{.Session.Delete "k"}}
after={{.Session.Get "k"}}
unset={{.Session.Get "never"}}
node={{.Node.Name}}
members={{len .Node.Members}}
{{range .Node.Members}}member={{.Name}} load={{.Load}}
{{end}}now={{if .Now.IsZero}}zero{{else}}set{{end}}
layout={{template "layout"}}
escaped={{query "x"}}
`,
	"www/inc-out.tmpl":      "{{include \"../secret.txt\"}}",
	"www/inc-dot.tmpl":      "{{include \".env\"}}",
	"www/user.tmpl":         "user={{.Request.User}}\n",
	"www/whoami.tmpl":       "session user={{.Session.Get \"user\"}}\n",
	"templates/layout.tmpl": `{{define "layout"}}LAYOUT{{end}}`,
	"secret.txt":            "outside root\n",
	"www/run.cgi":           "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nran run.cgi\\n'\n",
	"cgi-bin/env.sh": `#!/bin/sh
printf 'Content-Type: text/plain\n\n'
env
if [ -n "$CONTENT_LENGTH" ]; then printf 'BODY='; head -c "$CONTENT_LENGTH"; echo; fi
`,
	"cgi-bin/crash.sh":     "#!/bin/sh\necho spec-crash-stderr >&2\nexit 3\n",
	"cgi-bin/slow.sh":      "#!/bin/sh\nsleep 60 &\necho $! > \"$PIDFILE\"\nsleep 60\n",
	"cgi-bin/sess.sh":      "#!/bin/sh\nprintf 'Content-Type: text/plain\\nX-Replace-Session: user=bob&n=1\\n\\nS=%s\\n' \"$HTTP_SESSION\"\n",
	"cgi-bin/status.sh":    "#!/bin/sh\nprintf 'Status: 201 Made\\nLocation: http://example.com/made\\n\\n'\n",
	"cgi-bin/redir.sh":     "#!/bin/sh\nprintf 'Location: http://example.com/r\\n\\n'\n",
	"cgi-bin/local.sh":     "#!/bin/sh\nprintf 'Location: /front.html\\n\\n'\n",
	"cgi-bin/badstatus.sh": "#!/bin/sh\nprintf 'Status: abc\\nContent-Type: text/plain\\n\\nx\\n'\n",
	// stream.sh holds its second line until the test, having read the
	// first, creates go.flag: the first line must arrive unbuffered.
	"cgi-bin/stream.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nfirst\\n'\n" +
		"i=0; while [ ! -e go.flag ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\nprintf 'second\\n'\n",
}

// specConfig is the spec site's config; specSite appends the test's own
// lines (the first site's routes, other tables) and then specDotSite.
const specConfig = `[server]
drain_delay = "100ms"
trusted_proxies = ["127.0.0.2/32"]

[log]
access = "access.log"
format = "json"

[[site]]
root = "www"
browse = true
error_pages = {404 = "404.html"}

[[site.cgi]]
prefix = "/cgi-bin/"
dir = "cgi-bin"
timeout = "2s"
env = {PIDFILE = "slow.pid"}

[[site.cgi]]
ext = [".cgi"]
`

// specDotSite is a second site whose root is the folder of the config,
// its templates, CGI scripts and htpasswd file: none may be served.
const specDotSite = `
[[site]]
hosts = ["dot.test"]
root = "."

[[site.cgi]]
prefix = "/cgi-bin/"
dir = "cgi-bin"

[[site.route]]
path = "/private/*"
auth = "users.htpasswd"
`

// specSite writes the spec site, with extra added to its config, into a
// fresh folder and returns the folder.
func specSite(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range specFiles {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") || strings.HasSuffix(name, ".cgi") {
			mode = 0o755
		}
		if err := os.WriteFile(path, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(dir, "www", "escape.txt")); err != nil {
		t.Fatal(err)
	}
	writeHtpasswd(t, filepath.Join(dir, "users.htpasswd"), "alice", "pw")
	writeFile(t, filepath.Join(dir, "config.toml"), specConfig+extra+specDotSite)
	return dir
}

// specReq is one request of a table: method, path, headers as pairs, body.
type specReq struct {
	method, path string
	hdr          []string
	body         io.Reader
}

// specDo sends r to base through c and returns the response with its body.
func specDo(t *testing.T, c *http.Client, base string, r specReq) (*http.Response, string) {
	t.Helper()
	method := r.method
	if method == "" {
		method = "GET"
	}
	req, err := http.NewRequest(method, base+r.path, r.body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(r.hdr); i += 2 {
		if strings.EqualFold(r.hdr[i], "Host") {
			req.Host = r.hdr[i+1]
			continue
		}
		req.Header.Add(r.hdr[i], r.hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, r.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s body: %v", method, r.path, err)
	}
	return resp, string(body)
}

// specClient does not follow redirects, compress or keep connections.
func specClient() *http.Client {
	return &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
}

// specCase is one row of a response table: the request and what the
// answer must (and must not) hold.
type specCase struct {
	name    string
	req     specReq
	status  int
	hdr     map[string]string // header -> exact value ("" = must be absent)
	has     []string          // substrings of the body
	hasNot  []string          // substrings the body must not hold
	logHas  string            // a substring the error log must show
	hdrHas  map[string]string // header -> substring
	hdrNone []string          // headers that must be absent
}

// runSpecCases checks each row against the node p.
func runSpecCases(t *testing.T, p *proc, c *http.Client, base string, cases []specCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := specDo(t, c, base, tc.req)
			if resp.StatusCode != tc.status {
				t.Errorf("%s %s: status %d, want %d; body %.300q", tc.req.method, tc.req.path, resp.StatusCode, tc.status, body)
			}
			for k, v := range tc.hdr {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			for k, v := range tc.hdrHas {
				if got := resp.Header.Get(k); !strings.Contains(got, v) {
					t.Errorf("%s: %q, want it to hold %q", k, got, v)
				}
			}
			for _, k := range tc.hdrNone {
				if _, ok := resp.Header[http.CanonicalHeaderKey(k)]; ok {
					t.Errorf("header %s present (%q), want none", k, resp.Header.Get(k))
				}
			}
			for _, s := range tc.has {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q:\n%.600s", s, body)
				}
			}
			for _, s := range tc.hasNot {
				if strings.Contains(body, s) {
					t.Errorf("body holds %q:\n%.600s", s, body)
				}
			}
			if tc.logHas != "" {
				pollFor(t, "error log line "+tc.logHas, func() bool { return strings.Contains(p.stderr.String(), tc.logHas) })
			}
		})
	}
}
