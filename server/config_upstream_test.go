package server_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
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

// TestAPIUpstreams: the node builds its [[upstream]]s, /api/upstreams
// reports them as SPEC shows, a check finds a dead target down, and a
// reload replaces them.
func TestAPIUpstreams(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer app.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	ups := fmt.Sprintf("[[upstream]]\nname = \"app\"\ntargets = [%q, %q]\nhealth = \"/\"\nhealth_interval = \"50ms\"\n", app.URL, dead)
	tn := startNode(t, "")
	withAdmin := strings.Replace(baseConfig, `admin = ""`, `admin = "127.0.0.1:0"`, 1)
	if err := os.WriteFile(tn.path, []byte(withAdmin+ups), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tn.node.Reload(); err != nil {
		t.Fatal(err)
	}
	api := "http://" + tn.node.Addrs()["admin"] + "/api/upstreams"
	type target struct {
		URL             string `json:"url"`
		Healthy         bool   `json:"healthy"`
		Inflight        *int   `json:"inflight"`
		ClusterInflight *int   `json:"cluster_inflight"`
		Failures        *int   `json:"failures"`
	}
	var body struct {
		Upstreams []struct {
			Name    string   `json:"name"`
			Targets []target `json:"targets"`
		} `json:"upstreams"`
	}
	fetch := func() {
		t.Helper()
		resp, err := http.Get(api)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body.Upstreams = nil
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v", resp.StatusCode, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		fetch()
		if len(body.Upstreams) == 1 && len(body.Upstreams[0].Targets) == 2 && !body.Upstreams[0].Targets[1].Healthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead target not reported down within 5s: %+v", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	live := body.Upstreams[0].Targets[0]
	if body.Upstreams[0].Name != "app" || live.URL != app.URL || !live.Healthy ||
		live.Inflight == nil || live.ClusterInflight == nil || live.Failures == nil {
		t.Errorf("%+v", body)
	}
	// A reload without the upstream drops it.
	if err := os.WriteFile(tn.path, []byte(withAdmin), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tn.node.Reload(); err != nil {
		t.Fatal(err)
	}
	fetch()
	if body.Upstreams == nil || len(body.Upstreams) != 0 {
		t.Errorf("after reload: %+v", body)
	}
}
