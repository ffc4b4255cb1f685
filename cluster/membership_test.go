package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestJoinAndConverge(t *testing.T) {
	nodes := startCluster(t, 4)
	for _, n := range nodes {
		ms := n.c.Members()
		if len(ms) != 4 {
			t.Fatalf("%s sees %d members", n.name, len(ms))
		}
		for _, m := range ms {
			if m.PeerURL == "" || m.Capacity != 4 || m.Started.IsZero() {
				t.Errorf("%s: member %+v lacks its meta", n.name, m)
			}
		}
	}
}

func TestLoadVisibleEverywhereWithinOneSecond(t *testing.T) {
	nodes := startCluster(t, 4)
	a := nodes[0]
	wg := holdRequests(t, a, 3)
	start := time.Now()
	deadline := start.Add(time.Second)
	for _, n := range nodes[1:] {
		for {
			m, _ := memberOf(n.c, a.name)
			if m.Inflight == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %s in-flight %d after 1s, want 3", n.name, a.name, m.Inflight)
			}
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("load seen everywhere after %v", time.Since(start))
	a.release()
	wg.Wait()
	eventually(t, time.Second, "load back to 0", func() bool {
		m, _ := memberOf(nodes[3].c, a.name)
		return m.Inflight == 0
	})
}

func TestDrainingRespectedThenLeft(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b := nodes[0], nodes[1]
	b.c.SetDraining()
	eventually(t, time.Second, "draining seen", func() bool {
		m, _ := memberOf(a.c, b.name)
		return m.Draining
	})
	// Draining peers are never chosen, whatever the policy.
	req := mustReq(t)
	for i := 0; i < 200; i++ {
		if m := a.c.choose(req, 100, nil); m != nil && m.name == b.name {
			t.Fatal("chose a draining node")
		}
	}
	if err := b.c.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "left, not dead", func() bool { return stateOf(a.c, b.name) == StateLeft })
}

func TestCrashIsDead(t *testing.T) {
	nodes := startCluster(t, 3)
	nodes[2].crash()
	eventually(t, 10*time.Second, "crashed node dead", func() bool { return stateOf(nodes[0].c, "n2") == StateDead })
}

func TestWrongSecretRefused(t *testing.T) {
	nodes := startCluster(t, 2)
	other := []byte("ffffffffffffffffffffffffffffffff")
	bad := startNode(t, "intruder", []string{nodes[0].c.GossipAddr()}, func(o *Options) { o.Secret = other })
	eventually(t, 5*time.Second, "two join attempts", func() bool { return bad.c.joinFail.Load() >= 2 })
	if _, ok := memberOf(nodes[0].c, "intruder"); ok {
		t.Fatal("node with another secret joined")
	}
	if len(bad.c.Members()) != 1 {
		t.Fatalf("intruder sees %d members", len(bad.c.Members()))
	}
}

func TestOtherLabelRefused(t *testing.T) {
	nodes := startCluster(t, 2)
	bad := startNode(t, "other-cluster", []string{nodes[0].c.GossipAddr()}, func(o *Options) { o.Label = "other" })
	eventually(t, 5*time.Second, "two join attempts", func() bool { return bad.c.joinFail.Load() >= 2 })
	if _, ok := memberOf(nodes[0].c, "other-cluster"); ok || len(bad.c.Members()) != 1 {
		t.Fatal("clusters with different labels merged")
	}
}

func TestNameTaken(t *testing.T) {
	nodes := startCluster(t, 2)
	_, err := tryStartNode(t, "n1", "127.0.0.1:0", []string{nodes[0].c.GossipAddr()})
	if !errors.Is(err, ErrNameTaken) {
		t.Fatalf("err = %v, want ErrNameTaken", err)
	}
	if !strings.Contains(err.Error(), `"n1"`) {
		t.Errorf("error does not name the node: %v", err)
	}
	if stateOf(nodes[0].c, "n1") != StateAlive {
		t.Error("the original n1 lost its place")
	}
}

func TestRestartSameName(t *testing.T) {
	for _, samePort := range []bool{true, false} {
		name := map[bool]string{true: "same-port", false: "new-port"}[samePort]
		t.Run(name, func(t *testing.T) {
			nodes := startCluster(t, 3)
			old := nodes[2]
			oldAddr := old.c.GossipAddr()
			oldBoot := old.c.boot
			old.crash()
			bind := "127.0.0.1:0"
			if samePort {
				bind = oldAddr
			}
			var fresh *testNode
			eventually(t, 10*time.Second, "restart binds", func() bool {
				n, err := tryStartNode(t, "n2", bind, []string{nodes[0].c.GossipAddr()})
				if err != nil {
					t.Logf("restart: %v", err)
					return false
				}
				fresh = n
				return true
			})
			start := time.Now()
			eventually(t, 20*time.Second, "restarted node alive everywhere", func() bool {
				for _, n := range nodes[:2] {
					m := n.c.lookup("n2")
					if m == nil || m.state.Load() != stAlive || m.meta.Load().Boot == oldBoot || m.node.Load().Address() != fresh.c.GossipAddr() {
						return false
					}
				}
				return true
			})
			t.Logf("restarted node accepted after %v", time.Since(start))
			res, body := get(t, fresh.url+"/x")
			if res.StatusCode != 200 || body != "n2" {
				t.Fatalf("restarted node answers %d %q", res.StatusCode, body)
			}
		})
	}
}

func TestMetaTooLarge(t *testing.T) {
	_, err := New(Options{Name: "x", Bind: "127.0.0.1:0", Secret: testSecret, PeerURL: "http://h/" + strings.Repeat("a", 600)})
	if err == nil || !strings.Contains(err.Error(), "512") {
		t.Fatalf("err = %v, want a meta size error", err)
	}
}

func TestOptionsChecked(t *testing.T) {
	for _, o := range []Options{
		{Bind: "127.0.0.1:0", Secret: testSecret, PeerURL: "http://h"},
		{Name: "x", Bind: "127.0.0.1:0", Secret: []byte("short"), PeerURL: "http://h"},
		{Name: "x", Bind: "127.0.0.1:0", Secret: testSecret},
		{Name: "x", Bind: "127.0.0.1:0", Secret: testSecret, PeerURL: "ftp://h"},
		{Name: "x", Bind: "127.0.0.1:0", Secret: testSecret, PeerURL: "http://h", Mode: "teleport"},
		{Name: "x", Bind: "127.0.0.1:0", Secret: testSecret, PeerURL: "http://h", Policy: "fastest"},
	} {
		if c, err := New(o); err == nil {
			c.Shutdown()
			t.Errorf("New(%+v) accepted", o)
		}
	}
}
