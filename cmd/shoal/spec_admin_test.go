package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// specAdminExtra gives the node an upstream (for /api/upstreams) and a
// self-signed certificate (for /api/certificates).
const specAdminExtra = `
[tls]
self_signed = true

[[upstream]]
name = "app"
targets = ["http://127.0.0.1:9"]
`

// TestSpecAdmin: SPEC "Admin listener": the JSON endpoints with their
// fields exactly as SPEC shows them, /metrics, /healthz (503 while
// draining), POST /api/reload, and `shoal members`.
func TestSpecAdmin(t *testing.T) {
	t.Parallel()
	dir := specSite(t, specAdminExtra)
	cfgPath := filepath.Join(dir, "config.toml")
	writeFile(t, cfgPath, strings.Replace(readFileT(t, cfgPath), `drain_delay = "100ms"`, `drain_delay = "3s"`, 1))
	var admin string
	p := startArgs(t, dir, func() []string {
		admin = freeAddr(t)
		return []string{"-admin", admin, "-https", freeAddr(t), "-name", "spec-node"}
	})
	c := specClient()
	base := "http://" + admin

	getJSON := func(t *testing.T, path string) map[string]any {
		t.Helper()
		resp, body := specDo(t, c, base, specReq{path: path})
		var v map[string]any
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatalf("GET %s: %d %q %.300q", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		return v
	}
	// first returns the first element of the array v[key] as an object.
	first := func(t *testing.T, v map[string]any, key string) map[string]any {
		t.Helper()
		arr, _ := v[key].([]any)
		if len(arr) == 0 {
			t.Fatalf("%s: %v, want a non-empty array", key, v[key])
		}
		m, _ := arr[0].(map[string]any)
		return m
	}
	// fields checks that m has each key with a value of the JSON kind
	// given ("string", "number", "bool", "array").
	fields := func(t *testing.T, what string, m map[string]any, want map[string]string) {
		t.Helper()
		for k, kind := range want {
			v, ok := m[k]
			got := "missing"
			switch v.(type) {
			case string:
				got = "string"
			case float64:
				got = "number"
			case bool:
				got = "bool"
			case []any:
				got = "array"
			}
			if !ok || got != kind {
				t.Errorf("%s.%s: %v (%s), want a %s", what, k, v, got, kind)
			}
		}
	}

	t.Run("api/cluster", func(t *testing.T) {
		v := getJSON(t, "/api/cluster")
		if v["self"] != "spec-node" {
			t.Errorf("self %v, want spec-node (-name)", v["self"])
		}
		m := first(t, v, "members")
		fields(t, "members[0]", m, map[string]string{"name": "string", "state": "string", "load": "number", "inflight": "number",
			"capacity": "number", "draining": "bool", "peer_url": "string", "public_url": "string", "config": "string"})
		if m["name"] != "spec-node" || m["state"] != "alive" || m["capacity"] != 64.0 || m["draining"] != false || m["config"] == "" {
			t.Errorf("members[0] = %v", m)
		}
	})
	t.Run("api/upstreams", func(t *testing.T) {
		u := first(t, getJSON(t, "/api/upstreams"), "upstreams")
		if u["name"] != "app" {
			t.Errorf("upstreams[0].name %v", u["name"])
		}
		tg := first(t, u, "targets")
		fields(t, "targets[0]", tg, map[string]string{"url": "string", "healthy": "bool", "inflight": "number",
			"cluster_inflight": "number", "failures": "number"})
		if tg["url"] != "http://127.0.0.1:9" {
			t.Errorf("targets[0].url %v", tg["url"])
		}
	})
	t.Run("api/certificates", func(t *testing.T) {
		cert := first(t, getJSON(t, "/api/certificates"), "certificates")
		fields(t, "certificates[0]", cert, map[string]string{"names": "array", "issuer": "string", "not_after": "string", "source": "string"})
		if cert["source"] != "self_signed" {
			t.Errorf("source %v, want self_signed", cert["source"])
		}
		if _, err := time.Parse(time.RFC3339, cert["not_after"].(string)); err != nil {
			t.Errorf("not_after %v: %v", cert["not_after"], err)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		specDo(t, c, p.url, specReq{path: "/cgi-bin/env.sh"})
		resp, body := specDo(t, c, base, specReq{path: "/metrics"})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		for _, s := range []string{"shoal_http_requests_total{", `site="`, `status="200"`, `handler="`,
			"_bucket{", "shoal_http_requests_in_flight", "shoal_cgi_runs_total"} {
			if !strings.Contains(body, s) {
				t.Errorf("/metrics lacks %s", s)
			}
		}
	})
	t.Run("status page", func(t *testing.T) {
		resp, body := specDo(t, c, base, specReq{path: "/"})
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "<html") {
			t.Errorf("/: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
	t.Run("reload", func(t *testing.T) {
		if resp, _ := specDo(t, c, base, specReq{method: "POST", path: "/api/reload"}); resp.StatusCode != 200 {
			t.Errorf("POST /api/reload: %d", resp.StatusCode)
		}
		if resp, _ := specDo(t, c, base, specReq{path: "/api/reload"}); resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET /api/reload: %d, want 405", resp.StatusCode)
		}
	})
	t.Run("shoal members", func(t *testing.T) {
		code, stdout, stderr := runShoal(t, dir, "members", "-admin", admin)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		found := false
		for _, line := range strings.Split(stdout, "\n") {
			found = found || strings.HasPrefix(strings.TrimSpace(line), "spec-node ")
		}
		if !found {
			t.Errorf("no line starts with the member's name:\n%s", stdout)
		}
	})
	t.Run("healthz 200 then 503 while draining", func(t *testing.T) {
		if resp, _ := specDo(t, c, base, specReq{path: "/healthz"}); resp.StatusCode != 200 {
			t.Fatalf("/healthz while serving: %d", resp.StatusCode)
		}
		p.signal(syscall.SIGTERM)
		pollFor(t, "/healthz 503 after SIGTERM", func() bool {
			resp, err := c.Get(base + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 503
		})
		if code := p.waitExit(20 * time.Second); code != 0 {
			t.Errorf("exit %d after SIGTERM, want 0", code)
		}
	})
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
