package cluster

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clientFromHeader lets a test pick the client address ip_hash sees.
func clientFromHeader(o *Options) {
	o.ClientIP = func(r *http.Request) string {
		if v := r.Header.Get("X-Test-Client"); v != "" {
			return v
		}
		return hostOnly(r.RemoteAddr)
	}
}

// clientHashingTo returns a client address that ip_hash sends to want
// among nodes.
func clientHashingTo(t *testing.T, want string, nodes ...string) string {
	t.Helper()
	cands := make([]cand, len(nodes))
	for i, n := range nodes {
		cands[i] = cand{name: n}
	}
	for i := 1; i < 255; i++ {
		ip := fmt.Sprintf("198.51.100.%d", i)
		if rendezvous(cands, ip).name == want {
			return ip
		}
	}
	t.Fatalf("no client address hashes to %s", want)
	return ""
}

func TestRetunePolicyAndModeNextRequest(t *testing.T) {
	nodes := startCluster(t, 2, clientFromHeader)
	a, b := nodes[0], nodes[1]
	client := clientHashingTo(t, b.name, a.name, b.name)
	base := a.c.Tunables()

	// least_loaded with an idle node: served here.
	if res, body := get(t, a.url+"/x", "X-Test-Client", client); res.StatusCode != 200 || body != a.name {
		t.Fatalf("before retune: %d %q, want served by %s", res.StatusCode, body, a.name)
	}
	steps := []struct {
		name       string
		mode       string
		policy     string
		wantStatus int
		wantBody   string
	}{
		{"ip_hash proxies", "proxy", "ip_hash", 200, b.name},
		{"redirect mode", "redirect", "ip_hash", http.StatusTemporaryRedirect, ""},
		{"back to least_loaded", "proxy", "least_loaded", 200, a.name},
	}
	for _, s := range steps {
		tn := base
		tn.Mode, tn.Policy = s.mode, s.policy
		if err := a.c.Retune(tn); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := a.c.Tunables(); got != tn {
			t.Fatalf("%s: Tunables() = %+v, want %+v", s.name, got, tn)
		}
		// The very next request follows the new settings: no polling.
		res, body := get(t, a.url+"/x", "X-Test-Client", client)
		if res.StatusCode != s.wantStatus {
			t.Fatalf("%s: status %d, want %d", s.name, res.StatusCode, s.wantStatus)
		}
		if s.wantStatus == http.StatusTemporaryRedirect {
			if loc := res.Header.Get("Location"); !strings.HasPrefix(loc, b.url+"/x?") {
				t.Fatalf("%s: Location %q, want %s", s.name, loc, b.url)
			}
			continue
		}
		if body != s.wantBody {
			t.Fatalf("%s: served by %q, want %q", s.name, body, s.wantBody)
		}
	}
}

func TestRetuneCapacityAndHashSeenByPeers(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	tn := a.c.Tunables()
	tn.Capacity, tn.ConfigHash = 9, "cafe0001"
	if err := a.c.Retune(tn); err != nil {
		t.Fatal(err)
	}
	if self, _ := memberOf(a.c, a.name); self.Capacity != 9 || self.Config != "cafe0001" {
		t.Fatalf("own entry: capacity %d config %q", self.Capacity, self.Config)
	}
	eventually(t, 2*time.Second, "peer sees the new capacity and config hash", func() bool {
		m, _ := memberOf(b.c, a.name)
		return m.Capacity == 9 && m.Config == "cafe0001"
	})
	// The meta itself was republished, not only the load reports: a
	// later meta-only update (draining) must not bring the old capacity
	// back, and a node joining now learns it from the meta.
	eventually(t, 2*time.Second, "peer holds the new meta", func() bool {
		m := b.c.lookup(a.name)
		meta := m.meta.Load()
		return meta != nil && meta.Capacity == 9 && meta.Config == "cafe0001"
	})
	late := startNode(t, "n9", []string{a.c.GossipAddr()})
	converged(t, a, b, late)
	eventually(t, 2*time.Second, "late joiner sees the new capacity", func() bool {
		m, _ := memberOf(late.c, a.name)
		return m.Capacity == 9 && m.Config == "cafe0001"
	})
}

func TestRetuneRefusesInvalid(t *testing.T) {
	c := viewCluster(t, "round_robin", fakePeer(peerSpec{name: "a"}))
	before := c.Tunables()
	for _, tc := range []struct {
		name string
		edit func(*Tunables)
	}{
		{"mode", func(t *Tunables) { t.Mode = "teleport" }},
		{"policy", func(t *Tunables) { t.Policy = "fastest" }},
		{"capacity", func(t *Tunables) { t.Capacity = -1 }},
		{"margin NaN", func(t *Tunables) { t.Margin = math.NaN() }},
		{"margin Inf", func(t *Tunables) { t.Margin = math.Inf(1) }},
		{"retries", func(t *Tunables) { t.Retries = -2 }},
		{"config hash too long for meta", func(t *Tunables) { t.ConfigHash = strings.Repeat("x", 600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := before
			tn.Sticky = true // a valid change riding along must not apply either
			tc.edit(&tn)
			if err := c.Retune(tn); err == nil {
				t.Fatal("accepted")
			}
			if got := c.Tunables(); got != before {
				t.Fatalf("settings changed to %+v", got)
			}
		})
	}
}

func TestRetuneKeepsRoundRobinPosition(t *testing.T) {
	prev := newTuning(Tunables{Policy: "round_robin"}, nil)
	if next := newTuning(Tunables{Policy: "round_robin", Sticky: true}, prev); next.policy != prev.policy {
		t.Error("unchanged policy was rebuilt")
	}
	if next := newTuning(Tunables{Policy: "random"}, prev); next.policy == prev.policy {
		t.Error("changed policy was kept")
	}
}

// TestRetuneUnderLoad swaps every tunable while requests run; with -race
// it checks the swap is safe, and no request may fail meanwhile.
func TestRetuneUnderLoad(t *testing.T) {
	nodes := startCluster(t, 2, func(o *Options) { o.Capacity = 1 })
	a := nodes[0]
	const workers, each, retunes = 4, 40, 30
	var failed, done atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				res, err := testClient.Get(a.url + "/x?sleep=1")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 && res.StatusCode != http.StatusTemporaryRedirect {
					failed.Add(1)
				}
				done.Add(1)
			}
		}()
	}
	policies := []string{"least_loaded", "round_robin", "ip_hash", "random"}
	modes := []string{"proxy", "redirect"}
	var retuneErr error
	for i := 0; i < retunes; i++ {
		tn := Tunables{
			Mode:       modes[i%2],
			Policy:     policies[i%len(policies)],
			Capacity:   1 + i%3,
			Margin:     float64(i%3) / 10,
			Sticky:     i%2 == 1,
			Retries:    i % 2,
			ConfigHash: fmt.Sprintf("h%d", i),
		}
		if err := a.c.Retune(tn); err != nil {
			retuneErr = err
			break
		}
		_ = a.c.Members()
	}
	wg.Wait()
	if retuneErr != nil {
		t.Fatal(retuneErr)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during retunes", failed.Load(), workers*each)
	}
	if got := a.c.Tunables().ConfigHash; got != fmt.Sprintf("h%d", retunes-1) {
		t.Fatalf("last retune lost: config hash %q", got)
	}
}

// BenchmarkChoose measures the routing decision with the tunables read
// from their snapshot (go test ./cluster -run '^$' -bench Choose). The
// snapshot itself costs one atomic load and no allocation.
func BenchmarkChoose(b *testing.B) {
	c := viewCluster(b, "least_loaded", fakePeer(peerSpec{name: "a"}), fakePeer(peerSpec{name: "b"}))
	r := mustReqNoT()
	b.ReportAllocs()
	for b.Loop() {
		c.choose(c.tune.Load(), r, 10, nil)
	}
}
