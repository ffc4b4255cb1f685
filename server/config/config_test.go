package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"shoal/server/config"
)

// writeConfig writes src as x.toml in a fresh folder that also holds a
// www/ folder (the default root), and returns the file's path.
func writeConfig(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadValid is what `shoal check` does: decode, then validate.
func loadValid(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// wantErr is one error expected at line:col whose message holds msg.
type wantErr struct {
	line, col int
	msg       string
}

func configErrors(t *testing.T, err error) config.Errors {
	t.Helper()
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	return errs
}

// checkErrors asserts that every wanted error is present, placed, and
// printed as path:line:col: msg, and that nothing else was reported.
func checkErrors(t *testing.T, path string, err error, want []wantErr) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %d", len(want))
	}
	errs := configErrors(t, err)
	for _, w := range want {
		found := false
		for _, e := range errs {
			if e.Pos.Line == w.line && e.Pos.Col == w.col && strings.Contains(e.Msg, w.msg) {
				found = true
				prefix := path + ":" + itoa(w.line) + ":" + itoa(w.col) + ": "
				if !strings.HasPrefix(e.Error(), prefix) {
					t.Errorf("error %q does not start with %q", e.Error(), prefix)
				}
			}
		}
		if !found {
			t.Errorf("missing error at %d:%d containing %q; got:\n%v", w.line, w.col, w.msg, err)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []wantErr
	}{
		{
			name: "unknown top-level key",
			src:  "[server]\nhttp = \":0\"\n\n[tpyo]\nx = 1\n",
			want: []wantErr{{4, 1, `unknown key "tpyo"`}},
		},
		{
			name: "unknown top-level bare key",
			src:  "# comment\nverbose = true\n[server]\nhttp = \":0\"\n",
			want: []wantErr{{2, 1, `unknown key "verbose"`}},
		},
		{
			name: "unknown key in server on line 3",
			src:  "[server]\nhttp = \":0\"\nhtpp = \":80\"\n",
			want: []wantErr{{3, 1, `unknown key "server.htpp"`}},
		},
		{
			name: "unknown indented key in log",
			src:  "[log]\n  access = \"off\"\n  lvl = \"debug\"\n",
			want: []wantErr{{3, 3, `unknown key "log.lvl"`}},
		},
		{
			name: "unknown key in second site",
			src:  "[[site]]\nroot = \"www\"\n\n[[site]]\nroot = \"www\"\ncolour = \"red\"\n",
			want: []wantErr{{6, 1, `unknown key "site.colour"`}},
		},
		{
			name: "unknown key in site cgi",
			src:  "[[site]]\nroot = \"www\"\n[[site.cgi]]\nprefix = \"/cgi-bin/\"\ndir = \"www\"\nbogus = 1\n",
			want: []wantErr{{6, 1, `unknown key "site.cgi.bogus"`}},
		},
		{
			name: "unknown key in second cgi of second site",
			src: "[[site]]\nroot = \"www\"\n[[site.cgi]]\nprefix = \"/a/\"\ndir = \"www\"\n" +
				"[[site]]\nroot = \"www\"\n[[site.cgi]]\nprefix = \"/b/\"\ndir = \"www\"\n[[site.cgi]]\next = [\".sh\"]\nbogus = 1\n",
			want: []wantErr{{13, 1, `unknown key "site.cgi.bogus"`}},
		},
		{
			name: "wrong type string expected",
			src:  "[server]\nhttp = 8080\n",
			want: []wantErr{{2, 1, "server.http"}},
		},
		{
			name: "wrong type bool for duration",
			src:  "[server]\nidle_timeout = true\n",
			want: []wantErr{{2, 1, "server.idle_timeout"}},
		},
		{
			name: "wrong type table for array",
			src:  "[[site]]\nroot = \"www\"\nindex = \"index.html\"\n",
			want: []wantErr{{3, 1, "index"}},
		},
		{
			name: "bad duration",
			src:  "[server]\nidle_timeout = \"forever\"\n",
			want: []wantErr{{2, 1, "server.idle_timeout"}},
		},
		{
			name: "negative duration",
			src:  "[server]\nshutdown_grace = \"-5s\"\n",
			want: []wantErr{{2, 1, "server.shutdown_grace"}},
		},
		{
			name: "zero peer timeout",
			src:  "[cluster]\npeer_timeout = \"0s\"\n",
			want: []wantErr{{2, 1, "cluster.peer_timeout"}},
		},
		{
			name: "bad size unit",
			src:  "[server]\nmax_body_bytes = \"12QB\"\n",
			want: []wantErr{{2, 1, "server.max_body_bytes"}},
		},
		{
			name: "negative size integer",
			src:  "[server]\nmax_body_bytes = -1\n",
			want: []wantErr{{2, 1, "server.max_body_bytes"}},
		},
		{
			name: "bad min_send_rate",
			src:  "[server]\nmin_send_rate = \"1KiB\"\n",
			want: []wantErr{{2, 1, "server.min_send_rate"}},
		},
		{
			name: "negative max_conns_per_ip",
			src:  "[server]\nmax_conns_per_ip = -1\n",
			want: []wantErr{{2, 1, "server.max_conns_per_ip"}},
		},
		{
			name: "negative size string",
			src:  "[server]\nmax_header_bytes = \"-4KiB\"\n",
			want: []wantErr{{2, 1, "server.max_header_bytes"}},
		},
		{
			name: "several errors all reported in file order",
			src: "[server]\n" +
				"htpp = \":80\"\n" + // 2
				"max_body_bytes = \"12QB\"\n" + // 3
				"idle_timeout = \"forever\"\n" + // 4
				"[log]\n" +
				"lvl = 1\n" + // 6
				"[[site]]\n" +
				"root = \"www\"\n" +
				"colour = 1\n" + // 9
				"[nope]\n", // 10
			want: []wantErr{
				{2, 1, `unknown key "server.htpp"`},
				{3, 1, "server.max_body_bytes"},
				{4, 1, "server.idle_timeout"},
				{6, 1, `unknown key "log.lvl"`},
				{9, 1, `unknown key "site.colour"`},
				{10, 1, `unknown key "nope"`},
			},
		},
		{
			name: "missing root in second site",
			src:  "[[site]]\nroot = \"www\"\n\n[[site]]\nhosts = [\"b.example\"]\nroot = \"missing\"\n",
			want: []wantErr{{6, 1, "root folder"}},
		},
		{
			name: "missing cert and key files",
			src:  "[tls]\ncert = \"nocert.pem\"\nkey = \"nokey.pem\"\n",
			want: []wantErr{{2, 1, "nocert.pem"}, {3, 1, "nokey.pem"}},
		},
		{
			name: "missing site cert in second site",
			src:  "[[site]]\nroot = \"www\"\n[[site]]\nroot = \"www\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
			want: []wantErr{{5, 1, "c.pem"}, {6, 1, "k.pem"}},
		},
		{
			name: "validation errors in several tables",
			src:  "[log]\nformat = \"xml\"\n[cluster]\nmode = \"teleport\"\n",
			want: []wantErr{{2, 1, "log.format"}, {4, 1, "cluster.mode"}},
		},
		{
			name: "string where an array belongs in second site",
			src:  "[[site]]\nroot = \"www\"\n[[site]]\nroot = \"www\"\nhosts = \"a.com\"\n",
			want: []wantErr{{5, 1, "hosts"}},
		},
		{
			name: "unknown key in inline site table",
			src:  "site = [{root = \"www\", bogus = 1}]\n",
			want: []wantErr{{1, 24, `unknown key "site.bogus"`}},
		},
		{
			name: "invalid header name and CIDR",
			src:  "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n[[site]]\nroot = \"www\"\nheaders = {\"Bad Header\" = \"x\"}\n",
			want: []wantErr{{2, 1, "10.0.0.0/33"}, {5, 1, "Bad Header"}},
		},
		{
			name: "header value with a line break",
			src:  "[[site]]\nroot = \"www\"\nheaders = {\"X-A\" = \"a\\r\\nSet-Cookie: b=1\"}\n",
			want: []wantErr{{3, 1, "control characters"}},
		},
		{
			name: "bad error page status in site",
			src:  "[[site]]\nroot = \"www\"\nerror_pages = {200 = \"x.html\"}\n",
			want: []wantErr{{3, 1, "error_pages"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.src)
			_, err := loadValid(path)
			checkErrors(t, path, err, tc.want)
		})
	}
}

// TestConfigIntegerDuration: durations are Go strings ("10s"); a bare
// integer must not silently become nanoseconds (read_header_timeout = 5
// would be a 5ns timeout that drops every request, a CGI timeout = 30 would
// kill every script at once).
func TestConfigIntegerDuration(t *testing.T) {
	cases := []struct {
		name, src, key string
		line           int
	}{
		{"server", "[server]\nread_header_timeout = 5\n", "read_header_timeout", 2},
		{"session", "[session]\n\nmax_age = 3600\n", "max_age", 3},
		{"cgi", "[[site]]\nroot = \"www\"\n[[site.cgi]]\nprefix = \"/c/\"\ndir = \"www\"\ntimeout = 30\n", "timeout", 6},
		{"float size", "[server]\nmax_body_bytes = 1.5\n", "max_body_bytes", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.src)
			_, err := loadValid(path)
			if err == nil {
				t.Fatalf("%q accepted; want an error at %d:1", tc.src, tc.line)
			}
			checkErrors(t, path, err, []wantErr{{tc.line, 1, tc.key}})
		})
	}
}

// TestConfigSyntaxError: a TOML syntax error is placed at the line (and a
// column on it) where the problem is.
func TestConfigSyntaxError(t *testing.T) {
	cases := []struct {
		name string
		src  string
		line int
	}{
		{"unterminated string", "[server]\nhttp = \":0\"\nidle_timeout = \"10s\n", 3},
		{"newline in string", "[server]\nhttp = \"x\nfoo = 1\n", 2},
		{"double equals", "[server]\nhttp = = 1\n", 2},
		{"bad value", "[server]\n\nhttp = :80\n", 3},
		// toml reports a problem found at a line's newline on the next
		// line; the error must still point at the line that is wrong.
		{"unclosed table header", "[server\nhttp = \":0\"\n", 1},
		{"unclosed array table header", "[log]\naccess = \"off\"\n[[site]\nroot = \"www\"\n", 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.src)
			_, err := config.Load(path)
			errs := configErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors: %v", len(errs), err)
			}
			e := errs[0]
			lines := strings.Split(tc.src, "\n")
			if e.Pos.Line != tc.line || e.Pos.Col < 1 || e.Pos.Col > len(lines[tc.line-1])+1 {
				t.Errorf("syntax error at %d:%d, want line %d (length %d): %v", e.Pos.Line, e.Pos.Col, tc.line, len(lines[tc.line-1]), e)
			}
			if want := fmt.Sprintf("%s:%d:", path, tc.line); !strings.HasPrefix(e.Error(), want) {
				t.Errorf("error %q lacks %s", e.Error(), want)
			}
		})
	}
}

// TestCheckReportsEverything: `shoal check` prints every error, so a file
// with both a decode error (unknown key) and a validation error (missing
// root) must report both, not the second only after the first is fixed.
// Callers do Load then Validate; for them to see both, Load
// must return a config that can still be validated (or validate itself).
func TestCheckReportsEverything(t *testing.T) {
	path := writeConfig(t, "[server]\nhtpp = 1\n[[site]]\nroot = \"nowhere\"\n")
	cfg, err := config.Load(path)
	var errs config.Errors
	if err != nil {
		errs = append(errs, configErrors(t, err)...)
	}
	if cfg != nil {
		if err := cfg.Validate(); err != nil {
			errs = append(errs, configErrors(t, err)...)
		}
	}
	checkErrors(t, path, errs, []wantErr{{2, 1, `unknown key "server.htpp"`}, {4, 1, "root folder"}})
}

func TestConfigSizes(t *testing.T) {
	cases := []struct {
		val  string
		want config.Size
	}{
		{`"64KiB"`, 64 << 10},
		{`"32MiB"`, 32 << 20},
		{`"1GiB"`, 1 << 30},
		{`"2KB"`, 2000},
		{`"1MB"`, 1000 * 1000},
		{`"8k"`, 8 << 10},
		{`"4096B"`, 4096},
		{`"4096"`, 4096},
		{`1048576`, 1048576},
	}
	for _, tc := range cases {
		t.Run(tc.val, func(t *testing.T) {
			path := writeConfig(t, "[server]\nmax_body_bytes = "+tc.val+"\n")
			cfg, err := loadValid(path)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Server.MaxBodyBytes != tc.want {
				t.Errorf("max_body_bytes = %s: got %d, want %d", tc.val, cfg.Server.MaxBodyBytes, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"512", 512, true},
		{"64KiB", 64 << 10, true},
		{"64 KiB", 64 << 10, true},
		{"32MiB", 32 << 20, true},
		{"1GB", 1e9, true},
		{"12QB", 0, false},
		{"", 0, false},
		{"KiB", 0, false},
		{"-1", 0, false},
		{"-4KiB", 0, false},
		{"1.5MiB", 0, false},
		{"99999999999GiB", 0, false},
	}
	for _, tc := range cases {
		got, err := config.ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	path := writeConfig(t, "[server]\nhttp = \"127.0.0.1:0\"\n")
	cfg, err := loadValid(path)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Server
	checks := []struct {
		name      string
		got, want any
	}{
		{"http", s.HTTP, "127.0.0.1:0"},
		{"admin", s.Admin, "127.0.0.1:9180"},
		{"read_header_timeout", s.ReadHeaderTimeout, 10 * time.Second},
		{"idle_timeout", s.IdleTimeout, 120 * time.Second},
		{"body_timeout", s.BodyTimeout, 60 * time.Second},
		{"send_timeout", s.SendTimeout, 60 * time.Second},
		{"max_header_bytes", s.MaxHeaderBytes, config.Size(64 << 10)},
		{"max_body_bytes", s.MaxBodyBytes, config.Size(32 << 20)},
		{"shutdown_grace", s.ShutdownGrace, 30 * time.Second},
		{"drain_delay", s.DrainDelay, time.Second},
		{"min_send_rate", s.MinSendRate, config.Rate(0)},
		{"max_conns_per_ip", s.MaxConnsPerIP, 0},
		{"log.access", cfg.Log.Access, "stdout"},
		{"log.format", cfg.Log.Format, "combined"},
		{"log.level", cfg.Log.Level, "info"},
		{"tls.min_version", cfg.TLS.MinVersion, "1.2"},
		{"session.cookie", cfg.Session.Cookie, "shoal_session"},
		{"session.max_age", cfg.Session.MaxAge, 24 * time.Hour},
		{"session.same_site", cfg.Session.SameSite, "lax"},
		{"cluster.enabled", cfg.Cluster.Enabled, false},
		{"cluster.mode", cfg.Cluster.Mode, "proxy"},
		{"cluster.policy", cfg.Cluster.Policy, "least_loaded"},
		{"cluster.capacity", cfg.Cluster.Capacity, 64},
		{"cluster.peer_timeout", cfg.Cluster.PeerTimeout, 5 * time.Second},
		{"cluster.peer_tls", cfg.Cluster.PeerTLS, true},
		{"sites", len(cfg.Sites), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	site := cfg.Sites[0]
	if want := filepath.Join(filepath.Dir(path), "www"); site.Root != want {
		t.Errorf("default site root = %q, want %q", site.Root, want)
	}
	if len(site.Hosts) != 0 || !site.Compress || site.Browse || len(site.Index) != 2 {
		t.Errorf("default site = %+v", site)
	}
}

// TestConfigSiteDefaults: keys a [[site]] or [[site.cgi]] omits keep their
// defaults, per element.
func TestConfigSiteDefaults(t *testing.T) {
	path := writeConfig(t, "[[site]]\nroot = \"www\"\nbrowse = true\n[[site.cgi]]\nprefix = \"/cgi-bin/\"\ndir = \"www\"\n[[site]]\nhosts = [\"b.example\"]\nroot = \"www\"\n")
	cfg, err := loadValid(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sites) != 2 {
		t.Fatalf("%d sites", len(cfg.Sites))
	}
	a, b := cfg.Sites[0], cfg.Sites[1]
	if !a.Browse || !a.Compress || len(a.Index) != 2 {
		t.Errorf("site 0 = %+v", a)
	}
	if b.Browse || !b.Compress || len(b.CGI) != 0 {
		t.Errorf("site 1 = %+v", b)
	}
	if len(a.CGI) != 1 {
		t.Fatalf("site 0 cgi = %+v", a.CGI)
	}
	c := a.CGI[0]
	if c.Timeout != 30*time.Second || c.MaxConcurrent != 16 || len(c.PassEnv) != 1 || c.PassEnv[0] != "PATH" {
		t.Errorf("cgi defaults = %+v", c)
	}
}

func TestConfigNoFileIsDefaults(t *testing.T) {
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.HTTP != ":8080" || cfg.Path != "" {
		t.Errorf("built-in defaults: %+v", cfg.Server)
	}
}

// TestConfigDefaultedKeyPositions: a value the file leaves at its default
// can still fail validation (the default root "www" does not exist). The
// error must then point into the [[site]] or [[site.cgi]] block it belongs
// to (its header, say), not at the same key in another block, and must
// carry a line at all.
func TestConfigDefaultedKeyPositions(t *testing.T) {
	cases := []struct {
		name     string
		src      string
		from, to int // the lines of the block the error belongs to
		msg      string
	}{
		{
			name: "second site without root",
			src:  "[[site]]\nroot = \"a\"\n\n[[site]]\nhosts = [\"b.test\"]\n",
			from: 4, to: 5, msg: "root folder",
		},
		{
			name: "only site without root",
			src:  "[server]\nhttp = \":0\"\n[[site]]\nhosts = [\"b.test\"]\n",
			from: 3, to: 4, msg: "root folder",
		},
		{
			name: "cgi without dir",
			src:  "[[site]]\nroot = \"a\"\n[[site]]\nroot = \"a\"\n[[site.cgi]]\nprefix = \"/x/\"\n",
			from: 5, to: 6, msg: "cgi folder",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.src)
			dir := filepath.Dir(path)
			if err := os.Remove(filepath.Join(dir, "www")); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "a"), 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := loadValid(path)
			if err == nil {
				t.Fatal("no error")
			}
			errs := configErrors(t, err)
			if len(errs) != 1 || !strings.Contains(errs[0].Msg, tc.msg) {
				t.Fatalf("want one error about %q, got:\n%v", tc.msg, err)
			}
			e := errs[0]
			if e.Pos.Line < tc.from || e.Pos.Line > tc.to || e.Pos.Col < 1 {
				t.Errorf("error placed at %d:%d, want a line in %d-%d: %v", e.Pos.Line, e.Pos.Col, tc.from, tc.to, e)
			}
		})
	}
}

// TestConfigTypeErrorsInWords: a value of the wrong TOML type is reported
// with the full key path and what it should look like, never with toml's
// Go type names.
func TestConfigTypeErrorsInWords(t *testing.T) {
	cases := []struct {
		name, src string
		line      int
		want      string
	}{
		{"string for an int", "[server]\nhttp = 8080\n", 2, `server.http: must be a string such as ":8080"`},
		{"site root as int", "[[site]]\nroot = 1\n", 2, `site.0.root: must be a string such as "www"`},
		{"second site", "[[site]]\nroot = \"www\"\n[[site]]\nhosts = [\"b.example\"]\nroot = true\n", 5, `site.1.root: must be a string such as "www"`},
		{"bool", "[tls]\nself_signed = \"yes\"\n", 2, "tls.self_signed: must be true or false"},
		{"int", "[cluster]\ncapacity = \"many\"\n", 2, "cluster.capacity: must be a whole number such as 64"},
		{"float", "[cluster]\nmargin = \"a bit\"\n", 2, "cluster.margin: must be a number such as 0.1"},
		{"list", "[[site]]\nroot = \"www\"\nindex = \"index.html\"\n", 3, `site.0.index: must be a list of strings such as ["index.html", "index.tmpl"]`},
		{"list of ints", "[cluster]\njoin = [1, 2]\n", 2, `cluster.join: must be a list of strings such as ["10.0.0.5:7946"]`},
		{"table", "[[site]]\nroot = \"www\"\nheaders = \"X-A: b\"\n", 3, `site.0.headers: must be a table of strings such as {X-Frame-Options = "DENY"}`},
		{"table value", "[[site]]\nroot = \"www\"\nheaders = {X-A = 1}\n", 3, `site.0.headers: "X-A" must be a string`},
		{"cgi duration", "[[site]]\nroot = \"www\"\n[[site.cgi]]\nprefix = \"/c/\"\ndir = \"www\"\ntimeout = 30\n", 6, `site.0.cgi.0.timeout: must be a duration string such as "30s"`},
		{"size", "[server]\nmax_body_bytes = true\n", 2, `server.max_body_bytes: must be a size such as "64KiB"`},
		{"empty default", "[server]\nname = 7\n", 2, `server.name: must be a string such as "node-a"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.src)
			_, err := loadValid(path)
			checkErrors(t, path, err, []wantErr{{tc.line, 1, tc.want}})
			for _, e := range configErrors(t, err) {
				if strings.Contains(e.Msg, "incompatible types") || strings.Contains(e.Msg, "int64") {
					t.Errorf("error speaks Go types: %v", e.Msg)
				}
			}
		})
	}
}

// TestCheckClashes: `shoal check` refuses what `shoal serve` would trip
// over later: a host two sites claim, and two listeners on one port.
func TestCheckClashes(t *testing.T) {
	cases := []struct {
		name, src string
		want      []wantErr
	}{
		{"duplicate host", "[[site]]\nhosts = [\"a.example\"]\nroot = \"www\"\n[[site]]\nhosts = [\"b.example\", \"A.example\"]\nroot = \"www\"\n",
			[]wantErr{{5, 1, `site.1.hosts: host "A.example" is already served by site 0`}}},
		{"duplicate wildcard", "[[site]]\nhosts = [\"*.x.test\"]\nroot = \"www\"\n[[site]]\nroot = \"www\"\n[[site]]\nhosts = [\"*.x.test\"]\nroot = \"www\"\n",
			[]wantErr{{7, 1, `site.2.hosts: host "*.x.test" is already served by site 0`}}},
		{"distinct hosts", "[[site]]\nhosts = [\"a.example\"]\nroot = \"www\"\n[[site]]\nhosts = [\"b.example\"]\nroot = \"www\"\n", nil},
		{"http and https on one port", "[server]\nhttp = \":8443\"\nhttps = \":8443\"\n[tls]\nself_signed = true\n",
			[]wantErr{{3, 1, `server.https: ":8443" uses the same port as server.http`}}},
		{"admin on the http port", "[server]\nhttp = \"0.0.0.0:8080\"\nadmin = \"127.0.0.1:8080\"\n",
			[]wantErr{{3, 1, `server.admin: "127.0.0.1:8080" uses the same port as server.http`}}},
		{"admin default port taken by http", "[server]\nhttp = \"127.0.0.1:9180\"\n",
			[]wantErr{{2, 1, `server.http: "127.0.0.1:9180" uses the same port as server.admin (its default "127.0.0.1:9180")`}}},
		{"gossip on the http port", "[server]\nhttp = \":7946\"\n[cluster]\nenabled = true\nsecret = \"AAAAAAAAAAAAAAAAAAAAAA==\"\n",
			[]wantErr{{2, 1, `server.http: ":7946" uses the same port as cluster.gossip (its default "0.0.0.0:7946")`}}},
		{"same port, other hosts", "[server]\nhttp = \"127.0.0.1:8080\"\nadmin = \"127.0.0.2:8080\"\n", nil},
		{"port 0 twice", "[server]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.src)
			_, err := loadValid(path)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			checkErrors(t, path, err, tc.want)
		})
	}
}
