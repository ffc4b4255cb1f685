package cluster

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// joinCalls is the join calls made by all nodes so far.
func joinCalls(nodes ...*testNode) int64 {
	var n int64
	for _, x := range nodes {
		n += x.c.joins.Load()
	}
	return n
}

func TestHealthyClusterMakesNoJoinCalls(t *testing.T) {
	// fastTimings re-join every 300ms; relaxed probes keep a loaded test
	// machine from faking a death, which would rightly cause a join.
	nodes := startCluster(t, 3, func(o *Options) {
		o.Tune = func(cfg *memberlist.Config) {
			fastGossip(cfg)
			cfg.ProbeInterval, cfg.ProbeTimeout, cfg.SuspicionMult = time.Second, 500*time.Millisecond, 4
		}
	})
	before := joinCalls(nodes...)
	window := time.Now()
	// A measurement window, not synchronisation: the old loop re-joined
	// every Rejoin, about 12 calls in it.
	time.Sleep(2 * time.Second)
	if got := joinCalls(nodes...) - before; got != 0 {
		t.Errorf("a healthy cluster made %d join calls in %v", got, time.Since(window).Round(time.Millisecond))
	}
	converged(t, nodes...)
}

func TestPartitionedClusterRejoins(t *testing.T) {
	p := &partition{group: map[int]int{}}
	in := func(g int) nodeOpt { return func(o *Options) { o.Tune = newCuttable(t, p, g) } }
	a := startNode(t, "a", nil, in(0))
	b := startNode(t, "b", []string{a.c.GossipAddr()}, in(0))
	c := startNode(t, "c", []string{a.c.GossipAddr()}, in(1))
	d := startNode(t, "d", []string{a.c.GossipAddr()}, in(1))
	all := []*testNode{a, b, c, d}
	converged(t, all...)
	left, right := joinCalls(a, b), joinCalls(c, d)

	p.set(true)
	eventually(t, 15*time.Second, "split seen on both sides", func() bool {
		return stateOf(a.c, "c") == StateDead && stateOf(d.c, "a") == StateDead
	})
	eventually(t, 5*time.Second, "both sides try to join the other", func() bool {
		return joinCalls(a, b) > left && joinCalls(c, d) > right
	})
	p.set(false)
	converged(t, all...)
}

// planCluster is a view cluster that knows live and dead peers by
// address, for joinPlan without a network.
func planCluster(t *testing.T, configured []string, live, dead int) *Cluster {
	var peers []*member
	add := func(name string, i int, state int32) {
		m := fakePeer(peerSpec{name: name, state: state})
		m.node.Store(&memberlist.Node{Name: name, Addr: net.ParseIP(fmt.Sprintf("192.0.2.%d", i)), Port: 7946})
		peers = append(peers, m)
	}
	for i := range live {
		add(fmt.Sprintf("live%d", i), 10+i, stAlive)
	}
	for i := range dead {
		add(fmt.Sprintf("dead%d", i), 100+i, stDead)
	}
	c := viewCluster(t, "least_loaded", peers...)
	c.opts.Join = configured
	return c
}

const planSelf = "192.0.2.250:7946"

func TestJoinPlan(t *testing.T) {
	seed := "198.51.100.1:7946"
	now := time.Now()
	later := now.Add(time.Hour)

	t.Run("alone: every configured and lost address", func(t *testing.T) {
		c := planCluster(t, []string{seed, planSelf}, 0, 2)
		idle := later
		got := c.joinPlan(planSelf, true, now, &idle)
		slices.Sort(got)
		if want := []string{"192.0.2.100:7946", "192.0.2.101:7946", seed}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v (never this node's own address)", got, want)
		}
	})

	t.Run("healthy: no join until the idle time", func(t *testing.T) {
		c := planCluster(t, []string{seed}, 5, 0)
		idle := later
		if got := c.joinPlan(planSelf, false, now, &idle); got != nil {
			t.Errorf("healthy cluster plans a join to %v", got)
		}
	})

	t.Run("healthy, idle time passed: one address of all, seldom the seed", func(t *testing.T) {
		c := planCluster(t, []string{seed}, 9, 0)
		picked := map[string]int{}
		for range 1000 {
			idle := now.Add(-time.Second)
			got := c.joinPlan(planSelf, false, now, &idle)
			if len(got) != 1 {
				t.Fatalf("idle re-join to %v, want one address", got)
			}
			if !idle.After(now.Add(time.Minute - time.Millisecond)) {
				t.Fatalf("next idle re-join at %v, want at least a minute on", idle.Sub(now))
			}
			picked[got[0]]++
		}
		if len(picked) != 10 || picked[seed] > 200 {
			t.Errorf("idle re-joins spread %v, want all 10 addresses, the seed about a tenth", picked)
		}
	})

	t.Run("members lost: a few of them and one configured", func(t *testing.T) {
		c := planCluster(t, []string{seed}, 3, 6)
		picked := map[string]int{}
		for range 300 {
			idle := later
			got := c.joinPlan(planSelf, false, now, &idle)
			if len(got) != maxRejoinTargets+1 || !slices.Contains(got, seed) {
				t.Fatalf("plan %v, want %d lost members and the seed", got, maxRejoinTargets)
			}
			for _, a := range got {
				picked[a]++
			}
		}
		for i := range 6 {
			if a := fmt.Sprintf("192.0.2.%d:7946", 100+i); picked[a] == 0 {
				t.Errorf("lost member %s never tried: %v", a, picked)
			}
		}
		for i := range 3 {
			if a := fmt.Sprintf("192.0.2.%d:7946", 10+i); picked[a] != 0 {
				t.Errorf("live member %s joined while members are lost", a)
			}
		}
	})
}
