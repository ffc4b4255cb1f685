package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// specEveryKey is SPEC's config block with every key at the value SPEC
// shows (comments dropped; the upstream given the name and target SPEC
// requires, since SPEC leaves them empty).
const specEveryKey = `
[server]
name = ""
http = ":8080"
https = ""
admin = "127.0.0.1:9180"
read_header_timeout = "10s"
idle_timeout = "120s"
body_timeout = "60s"
send_timeout = "60s"
max_header_bytes = "64KiB"
max_body_bytes = "32MiB"
shutdown_grace = "30s"
drain_delay = "1s"
trusted_proxies = []
min_send_rate = ""
max_conns_per_ip = 0
[log]
access = "stdout"
format = "combined"
level = "info"
[tls]
cert = ""
key = ""
self_signed = false
min_version = "1.2"
redirect_http = false
hsts = ""
http3 = false
[session]
cookie = "shoal_session"
keys = []
key_file = ".shoal/session-keys"
max_age = "24h"
same_site = "lax"
[[site]]
hosts = []
root = "www"
templates = "templates"
index = ["index.html", "index.tmpl"]
browse = false
compress = true
follow_symlinks = false
error_pages = {}
cert = ""
key = ""
headers = {}
dev = false
[[site.cgi]]
prefix = "/cgi-bin/"
dir = "cgi-bin"
ext = []
interpreters = {}
program = ""
timeout = "30s"
max_time = "0s"
max_body_bytes = ""
max_concurrent = 16
queue_timeout = "1s"
env = {}
pass_env = ["PATH"]
[[site.route]]
path = "/old/*"
methods = []
headers = {}
allow = []
deny = []
auth = ""
auth_realm = "restricted"
rate = ""
burst = 0
redirect = ""
status = 0
respond = 0
rewrite = ""
try_files = []
upstream = ""
[[upstream]]
name = "app"
targets = ["http://127.0.0.1:3000"]
policy = "least_loaded"
health = ""
health_interval = "5s"
fail_timeout = "10s"
connect_timeout = "5s"
timeout = "60s"
retries = 1
strip_prefix = ""
headers = {}
root = ""
index = "index.php"
split = ".php"
env = {}
[acme]
enabled = false
ca = "https://acme-v02.api.letsencrypt.org/directory"
ca_root = ""
email = ""
challenges = ["http-01", "tls-alpn-01"]
storage = ".shoal/acme"
renew_before = "720h"
[cluster]
enabled = false
gossip = "0.0.0.0:7946"
advertise = ""
join = []
secret = ""
peer_url = ""
public_url = ""
mode = "proxy"
policy = "least_loaded"
balance = "dynamic"
capacity = 64
margin = 0.1
sticky = false
retries = 1
peer_timeout = "5s"
peer_tls = true
`

// TestSpecEveryKey: every key SPEC lists is accepted at SPEC's value, the
// node serves with it, and each key given a value of the wrong type is an
// error at its file:line that names it, with exit code 2.
func TestSpecEveryKey(t *testing.T) {
	t.Parallel()
	dir := specSite(t, "")
	lines := strings.Split(strings.TrimPrefix(specEveryKey, "\n"), "\n")
	writeFile(t, filepath.Join(dir, "every.toml"), strings.Join(lines, "\n"))
	if code, stdout, stderr := runShoal(t, dir, "check", "-config", "every.toml"); code != 0 {
		t.Fatalf("SPEC's own config refused: exit %d\n%s%s", code, stdout, stderr)
	}
	p := startArgs(t, dir, func() []string { return []string{"-config", "every.toml"} })
	if resp, body := specDo(t, specClient(), p.url, specReq{path: "/"}); resp.StatusCode != 200 || body != "hello\n" {
		t.Errorf("serving with SPEC's config: %d %q", resp.StatusCode, body)
	}

	keyLine := regexp.MustCompile(`^([a-z_0-9]+) = (.*)$`)
	table := ""
	for i, line := range lines {
		if strings.HasPrefix(line, "[") {
			table = strings.Trim(line, "[]")
			continue
		}
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key, val := m[1], m[2]
		bad := `"x"` // for numbers and booleans
		switch val[0] {
		case '"':
			bad = "[1]"
		case '[', '{':
			bad = "1"
		}
		full := table + "." + key
		t.Run(full, func(t *testing.T) {
			broken := append([]string(nil), lines...)
			broken[i] = key + " = " + bad
			writeFile(t, filepath.Join(dir, "bad.toml"), strings.Join(broken, "\n"))
			code, _, stderr := runShoal(t, dir, "check", "-config", "bad.toml")
			at := fmt.Sprintf("bad.toml:%d:", i+1)
			var msg string
			for _, l := range strings.Split(stderr, "\n") {
				if strings.HasPrefix(l, at) {
					msg = l
					break
				}
			}
			// The key is named in full: its table's parts in order
			// (array indexes may sit between them), then the key.
			named := regexp.MustCompile(strings.ReplaceAll(regexp.QuoteMeta(full), `\.`, `(\.[0-9]+)?\.`) + `\b`)
			if code != 2 || !named.MatchString(msg) {
				t.Errorf("%s = %s: exit %d, want 2 and an error at %s naming %s:\n%s", full, bad, code, at, full, stderr)
			}
			if strings.Contains(msg, "interface {}") {
				t.Errorf("the error shows a Go type, not words: %s", msg)
			}
		})
	}
}
