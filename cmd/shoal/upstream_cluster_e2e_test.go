package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The upstream cluster tests run two shoal processes in front of Go test
// backends and read each node's /api/upstreams: health found by one node
// shows on the other without a request through it, and cluster_inflight
// sums what both nodes have in flight.

const upstreamClusterConfig = `[server]
drain_delay = "300ms"

[log]
access = "off"

[[site]]
root = "www"

[[site.route]]
path = "/app/*"
upstream = "app"

[[site.route]]
path = "/slow/*"
upstream = "slow"

[[upstream]]
name = "app"
targets = [%q, %q]
fail_timeout = "60s"
retries = 1

[[upstream]]
name = "checked"
targets = [%q]
health = "/healthz"
health_interval = "100ms"
fail_timeout = "60s"

[[upstream]]
name = "slow"
targets = [%q]
timeout = "30s"

[cluster]
enabled = true
balance = "none"
`

type apiTarget struct {
	URL             string `json:"url"`
	Healthy         bool   `json:"healthy"`
	Inflight        int64  `json:"inflight"`
	ClusterInflight int64  `json:"cluster_inflight"`
	Failures        int64  `json:"failures"`
}

// target is the node's /api/upstreams entry for one target, or false.
func (n *cnode) target(upstream, url string) (apiTarget, bool) {
	c := &http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + n.admin + "/api/upstreams")
	if err != nil {
		return apiTarget{}, false
	}
	defer res.Body.Close()
	var st struct {
		Upstreams []struct {
			Name    string      `json:"name"`
			Targets []apiTarget `json:"targets"`
		} `json:"upstreams"`
	}
	if json.NewDecoder(res.Body).Decode(&st) != nil {
		return apiTarget{}, false
	}
	for _, u := range st.Upstreams {
		for _, t := range u.Targets {
			if u.Name == upstream && t.URL == url {
				return t, true
			}
		}
	}
	return apiTarget{}, false
}

// within polls cond every 10 ms for at most d.
func within(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// upstreamBackends starts the app's two targets, the checked one and the
// slow one, and returns the config naming them; the slow one holds every
// request until release is closed.
func upstreamBackends(t *testing.T) (config string, one, checked *httptest.Server, health *atomic.Int32, sick *atomic.Bool, slow *httptest.Server, release chan struct{}) {
	health, sick = &atomic.Int32{}, &atomic.Bool{}
	app := func(name string, checked bool) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" && checked {
				health.Add(1)
				if sick.Load() {
					w.WriteHeader(500)
				}
				return
			}
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	one, two := app("one", false), app("two", false)
	checked = app("checked", true)
	release = make(chan struct{})
	slow = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "slow")
	}))
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
		slow.Close()
	})
	config = fmt.Sprintf(upstreamClusterConfig, one.URL, two.URL, checked.URL, slow.URL)
	return
}

// TestE2EUpstreamHealthShared: node a finds a target dead by a request
// (passive) and node b, which no request goes through, shows it unhealthy
// within 2 s; a target whose active check fails (checked by one node
// only) shows unhealthy on both, and healthy on both when it recovers.
func TestE2EUpstreamHealthShared(t *testing.T) {
	config, one, checked, checks, sick, _, _ := upstreamBackends(t)
	cl := newCClusterWith(t, 2, config)
	a, b := cl.nodes["a"], cl.nodes["b"]
	oneURL := one.URL

	// One prober for the checked target: about one check per interval,
	// not one per node. Counted over a second, with room for a slow box.
	n0 := checks.Load()
	time.Sleep(time.Second) // measuring a rate over a fixed window, not synchronising
	if got := checks.Load() - n0; got > 15 {
		t.Errorf("%d health checks in 1s at 100ms: more than one node checks the target", got)
	}

	one.Close() // connections refused from now on
	within(t, 5*time.Second, "node a finds target one dead through its requests", func() bool {
		a.do("/app/x", nil)
		st, _ := a.target("app", oneURL)
		return st.Failures > 0 && !st.Healthy
	})
	took := within(t, 2*time.Second, "node b shows target one unhealthy", func() bool {
		st, ok := b.target("app", oneURL)
		return ok && !st.Healthy
	})
	t.Logf("node b saw the passive down-mark after %v", took)
	if st, _ := b.target("app", oneURL); st.Failures != 0 {
		t.Errorf("node b counted %d failures of its own: a request went through it", st.Failures)
	}

	sick.Store(true)
	for _, n := range []*cnode{a, b} {
		within(t, 2*time.Second, "node "+n.name+" shows the checked target unhealthy", func() bool {
			st, ok := n.target("checked", checked.URL)
			return ok && !st.Healthy
		})
	}
	sick.Store(false)
	for _, n := range []*cnode{a, b} {
		within(t, 2*time.Second, "node "+n.name+" shows the checked target healthy again", func() bool {
			st, ok := n.target("checked", checked.URL)
			return ok && st.Healthy
		})
	}
}

// TestE2EUpstreamClusterInflight: requests held by a slow backend, three
// through node a and two through node b, show as each node's own
// inflight and as cluster_inflight 5 on both; released, 0 on both.
func TestE2EUpstreamClusterInflight(t *testing.T) {
	config, _, _, _, _, slow, release := upstreamBackends(t)
	cl := newCClusterWith(t, 2, config)
	a, b := cl.nodes["a"], cl.nodes["b"]
	var wg sync.WaitGroup
	for n, k := range map[*cnode]int{a: 3, b: 2} {
		for range k {
			wg.Go(func() {
				if res, body, err := n.do("/slow/x", nil); err != nil || res.StatusCode != 200 || body != "slow" {
					t.Errorf("slow request through %s: %v %q", n.name, err, body)
				}
			})
		}
	}
	for n, own := range map[*cnode]int64{a: 3, b: 2} {
		within(t, 5*time.Second, "node "+n.name+" sees 5 in flight cluster-wide", func() bool {
			st, _ := n.target("slow", slow.URL)
			return st.Inflight == own && st.ClusterInflight == 5
		})
	}
	close(release)
	wg.Wait()
	for _, n := range []*cnode{a, b} {
		within(t, 3*time.Second, "node "+n.name+" sees nothing in flight", func() bool {
			st, ok := n.target("slow", slow.URL)
			return ok && st.Inflight == 0 && st.ClusterInflight == 0
		})
	}
}
