package config_test

import (
	"testing"
	"time"
)

// Every [[upstream]] error is reported at its file:line:col with the full key.
func TestConfigUpstreamErrors(t *testing.T) {
	path := writeConfig(t, `[[upstream]]
targets = ["http://127.0.0.1:3000"]

[[upstream]]
name = "app"
targets = ["ftp://h:1", "unix:relative.sock"]
policy = "fastest"
timeout = "0s"
fail_timeout = "-1s"
retries = -1

[[upstream]]
name = "app"
targets = ["fastcgi://127.0.0.1:9000"]
health = "healthz"
strip_prefix = "api"
headers = {"Bad Name" = "x"}
index = "a/b.php"

[[upstream]]
name = "empty"
targets = []

[[site]]
[[site.route]]
path = "/api/*"
upstream = "ghost"
`)
	_, err := loadValid(path)
	checkErrors(t, path, err, []wantErr{
		{1, 1, `upstream.0.name: required`},
		{6, 1, `upstream.1.targets: target "ftp://h:1"`},
		{6, 1, `upstream.1.targets: socket "relative.sock"`},
		{7, 1, `upstream.1.policy: must be one of "least_loaded", "round_robin", "ip_hash", "random", "first", not "fastest"`},
		{8, 1, `upstream.1.timeout: must be positive`},
		{9, 1, `upstream.1.fail_timeout: must be positive`},
		{10, 1, `upstream.1.retries: must not be negative`},
		{13, 1, `upstream.2.name: "app" is already the name of another [[upstream]]`},
		{12, 1, `upstream.2.root: a fastcgi target needs root`},
		{15, 1, `upstream.2.health: must be a path starting with /`},
		{16, 1, `upstream.2.strip_prefix: must start with /`},
		{17, 1, `upstream.2.headers: invalid header name "Bad Name"`},
		{18, 1, `upstream.2.index: must be a plain file name`},
		{22, 1, `upstream.3.targets: needs at least one target`},
		{27, 1, `site.0.route.0.upstream: no [[upstream]] named "ghost"`},
	})
}

// Decoding errors in [[upstream]] are placed too.
func TestConfigUpstreamDecodeErrors(t *testing.T) {
	path := writeConfig(t, `[[upstream]]
name = "app"
targets = ["http://127.0.0.1:3000"]
fail_timeout = 10
nope = 1
`)
	_, err := loadValid(path)
	checkErrors(t, path, err, []wantErr{
		{4, 1, `upstream.0.fail_timeout: must be a duration string`},
		{5, 1, `unknown key "upstream.nope"`},
	})
}

// A valid [[upstream]] gets its defaults, and a route may name it.
func TestConfigUpstreamValid(t *testing.T) {
	path := writeConfig(t, `[[upstream]]
name = "app"
targets = ["http://127.0.0.1:3000", "https://app.internal", "unix:/run/app.sock"]
policy = "ip_hash"
headers = {"X-App" = "shoal", "-Cookie" = ""}

[[upstream]]
name = "php"
targets = ["fastcgi://127.0.0.1:9000", "fastcgi+unix:/run/php/fpm.sock"]
root = "/var/www/html"
health = "/ping.php"
timeout = "30s"
env = {"APP_ENV" = "prod"}

[[site]]
[[site.route]]
path = "/api/*"
upstream = "app"
[[site.route]]
path = "*.php"
upstream = "php"
`)
	cfg, err := loadValid(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Upstreams) != 2 {
		t.Fatalf("%d upstreams", len(cfg.Upstreams))
	}
	app, php := cfg.Upstreams[0], cfg.Upstreams[1]
	if app.Policy != "ip_hash" || app.Retries != 1 || app.FailTimeout != 10*time.Second ||
		app.HealthInterval != 5*time.Second || app.ConnectTimeout != 5*time.Second || app.Timeout != time.Minute ||
		app.Headers["-Cookie"] != "" || len(app.Targets) != 3 {
		t.Errorf("app: %+v", app)
	}
	if php.Policy != "least_loaded" || php.Index != "index.php" || php.Split != ".php" || php.Timeout != 30*time.Second ||
		php.Root != "/var/www/html" || php.Env["APP_ENV"] != "prod" {
		t.Errorf("php: %+v", php)
	}
}
