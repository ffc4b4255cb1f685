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
