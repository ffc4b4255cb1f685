package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpecCheck: SPEC "Command line" and "Routes": `shoal check` and
// `shoal serve` refuse a bad config with exit 2 and file:line:column
// naming the full key; route rejections; SPEC's defaults accepted.
func TestSpecCheck(t *testing.T) {
	t.Parallel()
	dir := specSite(t, "")
	const site = "[[site]]\nroot = \"www\"\n"
	cases := []struct {
		name, config string
		code         int
		stderr       []string // each must appear in stderr
	}{
		{"unknown nested key", site + "[[site.route]]\npath = \"/a\"\nbogus = 1\n", 2, []string{"c.toml:5:1:", `"site.route.bogus"`}},
		{"unknown cgi key", site + "[[site.cgi]]\nprefix = \"/cgi-bin/\"\nbogus = 1\n", 2, []string{"c.toml:5:1:", "site.cgi.bogus"}},
		{"wrong type", "[server]\nmax_conns_per_ip = \"many\"\n", 2, []string{"c.toml:2:1:", "server.max_conns_per_ip"}},
		{"bad duration", "[server]\nidle_timeout = \"soon\"\n", 2, []string{"c.toml:2:1:", "server.idle_timeout"}},
		{"bad size", "[server]\nmax_body_bytes = \"12XB\"\n", 2, []string{"c.toml:2:1:", "server.max_body_bytes"}},
		{"bad nested duration", site + "[[site.cgi]]\nprefix = \"/cgi-bin/\"\ntimeout = \"x\"\n", 2, []string{"c.toml:5:1:", "timeout"}},
		{"missing cert", "[tls]\ncert = \"none.pem\"\nkey = \"none.key\"\n", 2, []string{"c.toml:2:1:", "tls.cert", "none.pem"}},
		{"missing root", "[[site]]\nroot = \"nowhere\"\n", 2, []string{"c.toml:2:1:", "root", "nowhere"}},
		{"bad route pattern", site + "[[site.route]]\npath = \"~((\"\n", 2, []string{"c.toml:4:1:", "site.0.route.0.path"}},
		{"route without path", site + "[[site.route]]\nrespond = 404\n", 2, []string{"c.toml:3:1:", "path"}},
		{"unknown placeholder", site + "[[site.route]]\npath = \"/a\"\nredirect = \"/b/{nope}\"\n", 2, []string{"c.toml:5:1:", "{nope}"}},
		{"unknown placeholder in headers", site + "[[site.route]]\npath = \"/a\"\nheaders = {X = \"{nope}\"}\n", 2, []string{"c.toml:5:1:", "{nope}"}},
		{"group without regexp", site + "[[site.route]]\npath = \"/a\"\nrewrite = \"/{1}\"\n", 2, []string{"c.toml:5:1:", "{1}"}},
		{"unknown upstream", site + "[[site.route]]\npath = \"/a\"\nupstream = \"ghost\"\n", 2, []string{"c.toml:5:1:", "ghost"}},
		{"missing auth file", site + "[[site.route]]\npath = \"/a\"\nauth = \"none.htpasswd\"\n", 2, []string{"c.toml:5:1:", "none.htpasswd"}},
		{"two actions", site + "[[site.route]]\npath = \"/a\"\nredirect = \"/b\"\nrewrite = \"/c\"\n", 2, []string{"c.toml:", "site.0.route.0"}},
		{"bad redirect status", site + "[[site.route]]\npath = \"/a\"\nredirect = \"/b\"\nstatus = 200\n", 2, []string{"c.toml:6:1:", "status"}},
		{"bad rate", site + "[[site.route]]\npath = \"/a\"\nrate = \"fast\"\n", 2, []string{"c.toml:5:1:", "rate"}},
		{"bad CIDR", site + "[[site.route]]\npath = \"/a\"\ndeny = [\"300.1.1.1/8\"]\n", 2, []string{"c.toml:5:1:", "deny"}},
		{"unknown policy", "[[upstream]]\nname = \"a\"\ntargets = [\"http://127.0.0.1:1\"]\npolicy = \"best\"\n", 2, []string{"c.toml:4:1:", "policy"}},
		{"TLS below 1.2", "[tls]\nmin_version = \"1.1\"\n", 2, []string{"c.toml:2:1:", "tls.min_version"}},
		{"SPEC's route example", site + "[[site.route]]\npath = \"/old/*\"\nredirect = \"{scheme}://{host}/new{path}?{query}\"\nstatus = 308\n", 0, nil},
		{"TLS 1.3 minimum", "[tls]\nmin_version = \"1.3\"\n" + site, 0, nil},
		// SPEC shows prefix = "/cgi-bin/" and dir = "cgi-bin" as the
		// defaults of a [[site.cgi]] table.
		{"cgi mapping with SPEC's defaults", site + "[[site.cgi]]\ntimeout = \"5s\"\n", 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, filepath.Join(dir, "c.toml"), tc.config)
			for _, cmd := range [][]string{{"check", "-config", "c.toml"}, {"serve", "-config", "c.toml", "-http", "127.0.0.1:0", "-admin", ""}} {
				if tc.code == 0 && cmd[0] == "serve" {
					continue // a good config would serve until stopped
				}
				code, stdout, stderr := runShoal(t, dir, cmd...)
				if code != tc.code {
					t.Errorf("shoal %s: exit %d, want %d\nstdout: %s\nstderr: %s", cmd[0], code, tc.code, stdout, stderr)
				}
				for _, s := range tc.stderr {
					if !strings.Contains(stderr, s) {
						t.Errorf("shoal %s: stderr lacks %q:\n%s", cmd[0], s, stderr)
					}
				}
			}
		})
	}
}

// TestSpecCommandLine: SPEC "Command line": keygen, version, built-in
// defaults without a config, usage errors exit 2.
func TestSpecCommandLine(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	if err := os.Mkdir(filepath.Join(empty, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Run("keygen", func(t *testing.T) {
		var keys []string
		for i := 0; i < 2; i++ {
			code, stdout, stderr := runShoal(t, empty, "keygen")
			key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(stdout))
			if code != 0 || err != nil || (len(key) != 16 && len(key) != 24 && len(key) != 32) {
				t.Fatalf("keygen: exit %d, %q (%d bytes, %v) %s", code, stdout, len(key), err, stderr)
			}
			keys = append(keys, stdout)
		}
		if keys[0] == keys[1] {
			t.Error("two keygen runs printed the same secret")
		}
	})
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
	}{
		{"version", []string{"version"}, 0, "shoal"},
		{"check with built-in defaults", []string{"check"}, 0, "built-in defaults"},
		{"serve usage error", []string{"serve", "-http"}, 2, ""},
		{"check usage error", []string{"check", "extra-arg"}, 2, ""},
		{"members usage error", []string{"members", "-bogus"}, 2, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runShoal(t, empty, tc.args...)
			if code != tc.code || !strings.Contains(stdout, tc.stdout) {
				t.Errorf("shoal %v: exit %d, want %d; stdout %q (want %q); stderr %s", tc.args, code, tc.code, stdout, tc.stdout, stderr)
			}
		})
	}

	// A bad value given by a flag is blamed on the flag, not on a line
	// of the file that does not hold it.
	writeFile(t, filepath.Join(empty, "c.toml"), "[server]\nidle_timeout = \"1m\"\n\n[[site]]\nroot = \"www\"\n")
	flags := []struct{ flag, value, key string }{
		{"http", "nonsense", "server.http"},
		{"https", "127.0.0.1:99999", "server.https"},
		{"admin", "x", "server.admin"},
		{"root", "nowhere", "root"},
		{"gossip", "bad", "cluster.gossip"},
	}
	for _, f := range flags {
		t.Run("bad -"+f.flag, func(t *testing.T) {
			for _, sub := range []string{"check", "serve"} {
				code, _, stderr := runShoal(t, empty, sub, "-config", "c.toml", "-"+f.flag, f.value)
				if code != 2 || !strings.Contains(stderr, "-"+f.flag) || !strings.Contains(stderr, f.key) || strings.Contains(stderr, "c.toml:") {
					t.Errorf("shoal %s -%s %s: exit %d, want 2 and an error naming -%s and %s, no c.toml line:\n%s", sub, f.flag, f.value, code, f.flag, f.key, stderr)
				}
			}
		})
	}
}
