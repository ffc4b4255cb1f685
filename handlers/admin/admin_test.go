package admin_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"shoal/handlers/admin"
	"shoal/handlers/books"
)

// fakeView is a ClusterView whose members a test changes while it runs.
type fakeView struct {
	self string
	// mu guards members.
	mu      sync.Mutex
	members []admin.Member
}

func (v *fakeView) Self() string { return v.self }

func (v *fakeView) Members() []admin.Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.members)
}

func (v *fakeView) set(ms []admin.Member) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.members = slices.Clone(ms)
}

// update changes the member called name.
func (v *fakeView) update(name string, f func(*admin.Member)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range v.members {
		if v.members[i].Name == name {
			f(&v.members[i])
		}
	}
}

func testMember(name string, load float64, config string) admin.Member {
	return admin.Member{
		Name: name, State: admin.StateAlive, Load: load, Inflight: int(load * 64), Capacity: 64,
		PeerURL: "http://127.0.0.1:8080", PublicURL: "http://" + name + ".example:8080",
		Config: config, Version: "0.1.0", Started: time.Now().Add(-90 * time.Minute),
		RequestsPerSec: 12.5, ErrorsPerSec: 0, CGIRunning: 1,
	}
}

func threeMembers() []admin.Member {
	return []admin.Member{testMember("node-c", 0.75, "c0ffee12"), testMember("node-a", 0.25, "c0ffee12"), testMember("node-b", 0.5, "c0ffee12")}
}

func newAdminServer(t *testing.T, a *admin.Server) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodGet, url, header...)
}

func do(t *testing.T, method, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestAdminClusterJSON(t *testing.T) {
	view := &fakeView{self: "node-a"}
	view.set(threeMembers())
	view.update("node-b", func(m *admin.Member) { m.Draining = true })
	srv := newAdminServer(t, &admin.Server{View: view})

	resp, body := get(t, srv.URL+"/api/cluster")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, body)
	}
	if doc["self"] != "node-a" {
		t.Errorf("self = %v", doc["self"])
	}
	members, ok := doc["members"].([]any)
	if !ok || len(members) != 3 {
		t.Fatalf("members = %v", doc["members"])
	}
	// The SPEC's fields, with their JSON types.
	want := map[string]string{
		"name": "string", "state": "string", "load": "number", "inflight": "number",
		"capacity": "number", "draining": "bool", "peer_url": "string", "public_url": "string",
		"config": "string", "version": "string", "started": "string",
		"requests_per_sec": "number", "errors_per_sec": "number", "cgi_running": "number",
	}
	var names []string
	for _, raw := range members {
		m := raw.(map[string]any)
		names = append(names, m["name"].(string))
		for key, typ := range want {
			v, ok := m[key]
			if !ok {
				t.Errorf("member %v lacks %q", m["name"], key)
				continue
			}
			if got := jsonType(v); got != typ {
				t.Errorf("member %v: %q is %s, want %s", m["name"], key, got, typ)
			}
		}
	}
	if !slices.Equal(names, []string{"node-a", "node-b", "node-c"}) {
		t.Errorf("members not sorted by name: %v", names)
	}
	a := members[0].(map[string]any)
	if a["load"] != 0.25 || a["inflight"] != 16.0 || a["capacity"] != 64.0 || a["state"] != "alive" ||
		a["peer_url"] != "http://127.0.0.1:8080" || a["config"] != "c0ffee12" || a["draining"] != false {
		t.Errorf("node-a = %v", a)
	}
	if members[1].(map[string]any)["draining"] != true {
		t.Errorf("node-b not draining: %v", members[1])
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return "object"
}

func TestAdminSoloView(t *testing.T) {
	m := books.NewMetrics(prometheus.NewRegistry())
	m.ObserveCGI(func() int { return 2 }, nil)
	started := time.Now().Add(-time.Hour)
	view := admin.SoloView(func() admin.Member {
		mem := admin.Member{Name: "solo", State: admin.StateAlive, Capacity: 64, Inflight: m.InFlight(), Started: started}
		m.Fill(&mem)
		return mem
	})
	srv := newAdminServer(t, &admin.Server{View: view})
	_, body := get(t, srv.URL+"/api/cluster")
	var st admin.ClusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Self != "solo" || len(st.Members) != 1 || st.Members[0].CGIRunning != 2 || !st.Members[0].Started.Equal(started.Truncate(0)) {
		t.Errorf("got %+v", st)
	}
}

func TestAdminClusterNoView(t *testing.T) {
	srv := newAdminServer(t, &admin.Server{})
	_, body := get(t, srv.URL+"/api/cluster")
	var st admin.ClusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(`"members": []`)) {
		t.Errorf("members should be an empty list, not null:\n%s", body)
	}
}

func TestAdminHealthz(t *testing.T) {
	var draining atomic.Bool
	for _, tc := range []struct {
		name     string
		draining func() bool
		set      bool
		want     int
	}{
		{"nil means serving", nil, false, http.StatusOK},
		{"serving", draining.Load, false, http.StatusOK},
		{"draining", draining.Load, true, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			draining.Store(tc.set)
			srv := newAdminServer(t, &admin.Server{Draining: tc.draining})
			resp, _ := get(t, srv.URL+"/healthz")
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
		})
	}
}

func TestAdminReload(t *testing.T) {
	configErrs := errors.Join(
		errors.New(`config.toml:12:1: unknown key "server.htpp"`),
		errors.New("config.toml:20:3: site[0].root: no such directory"),
	)
	for _, tc := range []struct {
		name     string
		reload   func() error
		method   string
		header   []string
		want     int
		contains []string
	}{
		{"success", func() error { return nil }, "POST", nil, 200, []string{`"reloaded": true`}},
		{"invalid config as JSON", func() error { return configErrs }, "POST", nil, 422,
			[]string{`"reloaded": false`, `"config.toml:12:1: unknown key \"server.htpp\""`, `site[0].root: no such directory`}},
		{"invalid config as text", func() error { return configErrs }, "POST", []string{"Accept", "text/plain"}, 422,
			[]string{"config.toml:12:1: unknown key \"server.htpp\"\nconfig.toml:20:3: site[0].root"}},
		{"multi-line error", func() error { return errors.New("a: one\nb: two") }, "POST", nil, 422,
			[]string{`"a: one"`, `"b: two"`}},
		{"not available", nil, "POST", nil, 501, nil},
		{"GET refused", func() error { return nil }, "GET", nil, 405, nil},
		{"PUT refused", func() error { return nil }, "PUT", nil, 405, nil},
		{"cross-site POST refused", func() error { return nil }, "POST",
			[]string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, 403, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			a := &admin.Server{}
			if tc.reload != nil {
				a.Reload = func() error { calls.Add(1); return tc.reload() }
			}
			srv := newAdminServer(t, a)
			resp, body := do(t, tc.method, srv.URL+"/api/reload", tc.header...)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			for _, s := range tc.contains {
				if !strings.Contains(string(body), s) {
					t.Errorf("body lacks %q:\n%s", s, body)
				}
			}
			wantCalls := int32(0)
			if tc.want == 200 || tc.want == 422 {
				wantCalls = 1
			}
			if calls.Load() != wantCalls {
				t.Errorf("Reload called %d times, want %d", calls.Load(), wantCalls)
			}
			if tc.want == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q", resp.Header.Get("Allow"))
			}
		})
	}
}

func TestAdminRoutes(t *testing.T) {
	view := &fakeView{self: "node-a"}
	view.set(threeMembers())
	reg := prometheus.NewRegistry()
	books.NewMetrics(reg)
	srv := newAdminServer(t, &admin.Server{
		View: view, Gatherer: reg, Version: "9.9.9",
		Sites:     []admin.Site{{Hosts: []string{"example.com", "<b>x</b>"}, Root: "/srv/www", CGI: []string{"/cgi-bin/"}}, {Root: "/srv/other"}},
		Listeners: []string{"http :8080", "https :8443"},
	})
	for _, tc := range []struct {
		method, path string
		want         int
		ctype        string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script src="/static/status.js" defer></script>`},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/static/status.js", 200, "text/javascript; charset=utf-8", "/api/cluster"},
		{"GET", "/static/status.css", 200, "text/css; charset=utf-8", ".members"},
		{"GET", "/static/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/static/", 404, "", ""},
		{"GET", "/static/index.html", 404, "", ""},
		{"GET", "/static/../admin.go", 404, "", ""},
		{"GET", "/metrics", 200, "", "shoal_cluster_members"},
		{"GET", "/nope", 404, "", ""},
		{"GET", "/api/clusterx", 404, "", ""},
		{"POST", "/", 405, "", ""},
		{"POST", "/healthz", 405, "", ""},
		{"DELETE", "/api/cluster", 405, "", ""},
		{"POST", "/metrics", 405, "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, body := do(t, tc.method, srv.URL+tc.path)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.ctype != "" && resp.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.ctype)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
			if tc.method == "HEAD" && len(body) != 0 {
				t.Errorf("HEAD has a body of %d bytes", len(body))
			}
		})
	}

	resp, body := get(t, srv.URL+"/")
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	page := string(body)
	for _, s := range []string{"node-a", "version 9.9.9", "example.com", "&lt;b&gt;x&lt;/b&gt;", "/srv/www", "/cgi-bin/", "http :8080", "https :8443", "any host"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if strings.Contains(page, "<b>x</b>") {
		t.Error("a site host reached the page unescaped")
	}
	// No inline code: every script has a src, no on* handlers, no style attributes.
	for _, bad := range []string{"<script>", " onclick=", " onload=", " style="} {
		if strings.Contains(page, bad) {
			t.Errorf("page has inline %q, which a strict CSP blocks", bad)
		}
	}
}

func TestAdminDescribe(t *testing.T) {
	var mu sync.Mutex
	host := "before.example"
	srv := newAdminServer(t, &admin.Server{
		Sites: []admin.Site{{Hosts: []string{"ignored.example"}}},
		Describe: func() ([]admin.Site, []string) {
			mu.Lock()
			defer mu.Unlock()
			return []admin.Site{{Hosts: []string{host}}}, []string{"http :8080"}
		},
	})
	for _, want := range []string{"before.example", "after.example"} {
		mu.Lock()
		host = want
		mu.Unlock()
		_, body := get(t, srv.URL+"/")
		if !strings.Contains(string(body), want) || strings.Contains(string(body), "ignored.example") {
			t.Errorf("page does not show %q from Describe", want)
		}
	}
}

func TestAdminDNSRebinding(t *testing.T) {
	srv := newAdminServer(t, &admin.Server{View: &fakeView{self: "a"}, Reload: func() error { return nil }})
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	for _, tc := range []struct {
		host string
		want int
	}{
		{"127.0.0.1" + port, 200},
		{"localhost" + port, 200},
		{"LOCALHOST.", 200},
		{"admin.localhost" + port, 200},
		{"[::1]" + port, 200},
		{"evil.example" + port, 403},
		{"evil.example", 403},
	} {
		t.Run(tc.host, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/api/cluster", nil)
			req.Host = tc.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("Host %q: status %d, want %d", tc.host, resp.StatusCode, tc.want)
			}
		})
	}
}
