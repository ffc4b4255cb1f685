package cluster

import (
	"fmt"

	"github.com/hashicorp/memberlist"
	"net/http"
	"testing"
	"time"
)

// viewCluster is a Cluster with no network: just a hand-made view of
// peers, for deterministic policy tests.
func viewCluster(t testing.TB, policy string, peers ...*member) *Cluster {
	c := &Cluster{
		opts:    Options{Name: "self", Capacity: 4, Policy: policy, Timings: fastTimings, Logger: testLogger(t)},
		members: map[string]*member{},
		kick:    make(chan struct{}, 1),
		keys:    deriveKeys(testSecret),
	}
	c.log = c.opts.logger()
	c.queue = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return len(peers) + 1 }, RetransmitMult: 4}
	c.tune.Store(newTuning(c.opts.tunables(), nil))
	for _, m := range peers {
		c.members[m.name] = m
	}
	c.rebuildPeers()
	return c
}

type peerSpec struct {
	name     string
	inflight int64
	state    int32
	draining bool
	sick     bool
	silent   bool // no load report for longer than StaleAfter
}

func fakePeer(s peerSpec) *member {
	m := &member{name: s.name}
	m.setMeta(&nodeMeta{Capacity: 4, PeerURL: "http://" + s.name, PublicURL: "http://" + s.name, Draining: s.draining})
	m.state.Store(s.state)
	m.inflight.Store(s.inflight)
	m.heard.Store(time.Now().UnixNano())
	if s.silent {
		m.heard.Store(time.Now().Add(-time.Hour).UnixNano())
	}
	if s.sick {
		m.markSick(time.Hour, time.Now())
	}
	return m
}

func chosen(c *Cluster, inflight int64) string {
	if m := c.choose(c.tune.Load(), mustReqNoT(), inflight, nil); m != nil {
		return m.name
	}
	return "self"
}

func TestLeastLoadedServesLocallyBelowCapacity(t *testing.T) {
	c := viewCluster(t, "least_loaded", fakePeer(peerSpec{name: "idle"}))
	for in := int64(0); in < 4; in++ {
		if got := chosen(c, in); got != "self" {
			t.Fatalf("in-flight %d of 4: chose %s", in, got)
		}
	}
	if got := chosen(c, 4); got != "idle" {
		t.Fatalf("full: chose %s, want the idle peer", got)
	}
}

func TestTwoChoicesNeverPicksUnavailable(t *testing.T) {
	c := viewCluster(t, "least_loaded",
		fakePeer(peerSpec{name: "draining", draining: true}),
		fakePeer(peerSpec{name: "dead", state: stDead}),
		fakePeer(peerSpec{name: "left", state: stLeft}),
		fakePeer(peerSpec{name: "sick", sick: true}),
		fakePeer(peerSpec{name: "silent", silent: true}),
		fakePeer(peerSpec{name: "busy", inflight: 3}),
		fakePeer(peerSpec{name: "ok", inflight: 2}),
	)
	counts := map[string]int{}
	for i := 0; i < 2000; i++ {
		counts[chosen(c, 40)]++
	}
	for name := range counts {
		if name != "ok" && name != "busy" {
			t.Fatalf("picked unavailable peer %s (%v)", name, counts)
		}
	}
	// Of two sampled peers the less loaded wins, so "ok" (the lighter)
	// wins every draw in which it is sampled: here always, with 2 peers.
	if counts["ok"] != 2000 {
		t.Fatalf("counts %v: want every pick on the lighter peer", counts)
	}
}

func TestTwoChoicesSpreadsOverEqualPeers(t *testing.T) {
	var peers []*member
	for i := 0; i < 5; i++ {
		peers = append(peers, fakePeer(peerSpec{name: fmt.Sprint("p", i)}))
	}
	c := viewCluster(t, "least_loaded", peers...)
	counts := map[string]int{}
	for i := 0; i < 5000; i++ {
		counts[chosen(c, 40)]++
	}
	for _, m := range peers {
		if counts[m.name] < 700 {
			t.Fatalf("counts %v: equal peers not shared (herding)", counts)
		}
	}
}

func TestMarginKeepsLocal(t *testing.T) {
	for _, tc := range []struct {
		peer int64 // peer in-flight of capacity 4
		self int64 // own in-flight of capacity 4
		want string
	}{
		{peer: 4, self: 4, want: "self"},   // equal: stay
		{peer: 4, self: 5, want: "peer"},   // 1.0 <= 1.25-0.1
		{peer: 5, self: 5, want: "self"},   // equal
		{peer: 3, self: 4, want: "peer"},   // 0.75 <= 0.9
		{peer: 20, self: 4, want: "self"},  // peer far worse
		{peer: 0, self: 100, want: "peer"}, // overloaded here
		{peer: 12, self: 12, want: "self"}, // all overloaded alike
		{peer: 11, self: 12, want: "peer"}, // 2.75 <= 2.9
	} {
		c := viewCluster(t, "least_loaded", fakePeer(peerSpec{name: "peer", inflight: tc.peer}))
		if got := chosen(c, tc.self); got != tc.want {
			t.Errorf("peer %d self %d: chose %s, want %s", tc.peer, tc.self, got, tc.want)
		}
	}
}

func TestMarginCountsOutstanding(t *testing.T) {
	p := fakePeer(peerSpec{name: "peer", inflight: 0})
	c := viewCluster(t, "least_loaded", p)
	p.sent.Add(4) // we sent it 4 since its last report
	if got := chosen(c, 4); got != "self" {
		t.Fatalf("chose %s although our own unanswered requests fill the peer", got)
	}
}

func TestLoadEstimateSinceReport(t *testing.T) {
	p := fakePeer(peerSpec{name: "peer"})
	p.sent.Add(3) // three requests in flight there...
	p.applyReport(&loadReport{Name: "peer", Boot: p.boot, Seq: 1, Inflight: 3, Capacity: 4})
	if got := p.load(); got != 0.75 {
		t.Fatalf("load %v after a report that includes our 3, want 0.75 (no double count)", got)
	}
	p.done.Add(2) // ...two answered since
	p.sent.Add(1) // and one more sent
	if got := p.load(); got != 0.5 {
		t.Fatalf("load %v, want (3-2+1)/4", got)
	}
}

func TestDrainingSelfSendsAway(t *testing.T) {
	c := viewCluster(t, "least_loaded", fakePeer(peerSpec{name: "peer", inflight: 3}))
	c.draining.Store(true)
	if got := chosen(c, 0); got != "peer" {
		t.Fatalf("draining node kept the request (chose %s)", got)
	}
}

func TestRoundRobinCycles(t *testing.T) {
	c := viewCluster(t, "round_robin", fakePeer(peerSpec{name: "a"}), fakePeer(peerSpec{name: "b", inflight: 100}), fakePeer(peerSpec{name: "dead", state: stDead}))
	counts := map[string]int{}
	for i := 0; i < 300; i++ {
		counts[chosen(c, 0)]++
	}
	if counts["self"] != 100 || counts["a"] != 100 || counts["b"] != 100 {
		t.Fatalf("counts %v", counts)
	}
}

func TestRandomOnlyAvailable(t *testing.T) {
	c := viewCluster(t, "random", fakePeer(peerSpec{name: "a"}), fakePeer(peerSpec{name: "d", draining: true}))
	counts := map[string]int{}
	for i := 0; i < 1000; i++ {
		counts[chosen(c, 0)]++
	}
	if counts["d"] != 0 || counts["a"] < 350 || counts["self"] < 350 {
		t.Fatalf("counts %v", counts)
	}
}

func TestIPHashMovesOnlyTheLostShare(t *testing.T) {
	const nodes, clients = 5, 5000
	all := make([]cand, nodes)
	for i := range all {
		all[i] = cand{name: fmt.Sprint("node", i)}
	}
	before := map[string]string{}
	for i := 0; i < clients; i++ {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		before[ip] = rendezvous(all, ip).name
	}
	lost := all[2].name
	rest := append(append([]cand{}, all[:2]...), all[3:]...)
	moved, share := 0, map[string]int{}
	for ip, was := range before {
		now := rendezvous(rest, ip).name
		share[was]++
		if now != was {
			moved++
			if was != lost {
				t.Fatalf("client %s moved from %s, which is still there", ip, was)
			}
		}
	}
	if frac := float64(moved) / clients; frac < 0.15 || frac > 0.25 {
		t.Fatalf("moved %.2f of clients, want about 1/%d", frac, nodes)
	}
	for name, n := range share {
		if n < clients/nodes*7/10 {
			t.Fatalf("uneven shares %v (%s)", share, name)
		}
	}
}

func TestIPHashStablePerClient(t *testing.T) {
	c := viewCluster(t, "ip_hash", fakePeer(peerSpec{name: "a"}), fakePeer(peerSpec{name: "b"}))
	c.opts.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-Client") }
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"} {
			r := mustReqNoT()
			r.Header.Set("X-Test-Client", ip)
			name := "self"
			if m := c.choose(c.tune.Load(), r, 0, nil); m != nil {
				name = m.name
			}
			if i == 0 {
				seen[ip+"="+name] = true
			} else if !seen[ip+"="+name] {
				t.Fatalf("client %s moved to %s without a membership change", ip, name)
			}
		}
	}
}

func TestStickyCookieWinsWhileAvailable(t *testing.T) {
	a := fakePeer(peerSpec{name: "a", inflight: 100})
	c := viewCluster(t, "least_loaded", a, fakePeer(peerSpec{name: "b"}))
	c.opts.Sticky = true
	c.tune.Store(newTuning(c.opts.tunables(), nil))
	r := mustReqNoT()
	r.AddCookie(&http.Cookie{Name: stickyCookie, Value: c.keys.stickyValue("a")})
	if m := c.choose(c.tune.Load(), r, 0, nil); m == nil || m.name != "a" {
		t.Fatal("affinity cookie ignored")
	}
	a.markSick(time.Hour, time.Now())
	if m := c.choose(c.tune.Load(), r, 0, nil); m != nil && m.name == "a" {
		t.Fatal("affinity kept on an unhealthy node")
	}
	forged := mustReqNoT()
	forged.AddCookie(&http.Cookie{Name: stickyCookie, Value: b64.EncodeToString([]byte("b")) + ".AAAA"})
	if m := c.choose(c.tune.Load(), forged, 0, nil); m != nil {
		t.Fatal("forged affinity cookie honoured")
	}
}
