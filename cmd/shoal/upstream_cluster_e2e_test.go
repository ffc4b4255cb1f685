package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
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

// upBackends are the Go test applications behind the two nodes.
type upBackends struct {
	config       string           // the shoal config naming them
	one, checked *httptest.Server // a target of "app"; the target of "checked"
	slow         *httptest.Server // holds every request until release is closed
	release      chan struct{}
	checks       atomic.Int32 // health checks the checked target answered
	sick         atomic.Bool  // the checked target fails its checks
	mu           sync.Mutex
	agents       []string // the User-Agent of each check (names the node)
}

// lastAgents is the User-Agent of the last n checks, or nil.
func (bs *upBackends) lastAgents(n int) []string {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if len(bs.agents) < n {
		return nil
	}
	return append([]string(nil), bs.agents[len(bs.agents)-n:]...)
}

// upstreamBackends starts the app's two targets, the checked one and the
// slow one.
func upstreamBackends(t *testing.T) *upBackends {
	bs := &upBackends{release: make(chan struct{})}
	app := func(name string, checked bool) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" && checked {
				bs.checks.Add(1)
				bs.mu.Lock()
				bs.agents = append(bs.agents, r.UserAgent())
				bs.mu.Unlock()
				if bs.sick.Load() {
					w.WriteHeader(500)
				}
				return
			}
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	two := app("two", false)
	bs.one, bs.checked = app("one", false), app("checked", true)
	bs.slow = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-bs.release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "slow")
	}))
	t.Cleanup(func() {
		select {
		case <-bs.release:
		default:
			close(bs.release)
		}
		bs.slow.Close()
	})
	bs.config = fmt.Sprintf(upstreamClusterConfig, bs.one.URL, two.URL, bs.checked.URL, bs.slow.URL)
	return bs
}

// TestE2EUpstreamHealthShared: node a finds a target dead by a request
// (passive) and node b, which no request goes through, shows it unhealthy
// within 2 s; a target whose active check fails (checked by one node
// only) shows unhealthy on both, and healthy on both when it recovers.
func TestE2EUpstreamHealthShared(t *testing.T) {
	bs := upstreamBackends(t)
	cl := newCClusterWith(t, 2, bs.config)
	a, b := cl.nodes["a"], cl.nodes["b"]
	one, checked, checks, sick := bs.one, bs.checked, &bs.checks, &bs.sick
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
	bs := upstreamBackends(t)
	cl := newCClusterWith(t, 2, bs.config)
	a, b := cl.nodes["a"], cl.nodes["b"]
	slow, release := bs.slow, bs.release
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

// TestE2EUpstreamProberTakeover: the node that checks a target is killed;
// the other takes the checks over within a few seconds and sees the
// target fail them.
func TestE2EUpstreamProberTakeover(t *testing.T) {
	bs := upstreamBackends(t)
	cl := newCClusterWith(t, 2, bs.config)
	agentOf := func(n *cnode) string { return "shoal-health-check (node " + n.name + ")" }
	// At start each node checks until it has joined; then one does.
	bs.mu.Lock()
	bs.agents = nil
	bs.mu.Unlock()
	var prober, other *cnode
	within(t, 5*time.Second, "five checks in a row by one node", func() bool {
		last := bs.lastAgents(5)
		for _, n := range cl.nodes {
			if len(last) == 5 && !slices.ContainsFunc(last, func(a string) bool { return a != agentOf(n) }) {
				prober = n
			}
		}
		return prober != nil
	})
	for _, n := range cl.nodes {
		if n != prober {
			other = n
		}
	}
	prober.cmd.Process.Kill()
	<-prober.exited
	bs.sick.Store(true)
	took := within(t, 8*time.Second, "node "+other.name+" checks the target and shows it down", func() bool {
		st, ok := other.target("checked", bs.checked.URL)
		return ok && !st.Healthy
	})
	t.Logf("node %s took the checks over after %v", other.name, took)
	if got := bs.lastAgents(1); got[0] != agentOf(other) {
		t.Errorf("last check by %q, want %q", got[0], agentOf(other))
	}
}
