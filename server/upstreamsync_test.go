package server

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"shoal/server/config"
)

// TestChooseProber: every node picks the same prober from the same
// members in any order, the targets spread over the nodes, and a node
// leaving moves only the targets it probed.
func TestChooseProber(t *testing.T) {
	nodes := []string{"a", "b", "c", "d"}
	per := map[string]int{}
	before := map[string]string{}
	for i := range 200 {
		target := fmt.Sprintf("http://10.0.0.%d:3000", i)
		p := chooseProber(nodes, "app", target)
		if q := chooseProber([]string{"d", "c", "b", "a"}, "app", target); q != p {
			t.Fatalf("%s: %s or %s by the order of the list", target, p, q)
		}
		per[p]++
		before[target] = p
	}
	for _, n := range nodes {
		if per[n] < 20 {
			t.Errorf("node %s probes %d of 200 targets: not spread", n, per[n])
		}
	}
	left := slices.DeleteFunc(slices.Clone(nodes), func(s string) bool { return s == "b" })
	for target, p := range before {
		q := chooseProber(left, "app", target)
		if q == "b" || (p != "b" && q != p) {
			t.Errorf("%s: prober %s became %s when b left", target, p, q)
		}
	}
	if chooseProber(nil, "app", "x") != "" {
		t.Error("a prober among no nodes")
	}
}

// TestPeerLoads: the peers' counts are summed per target, a count not
// repeated is forgotten, and a node that left is dropped at once.
func TestPeerLoads(t *testing.T) {
	set, err := buildUpstreams([]config.Upstream{{Name: "app", Targets: []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}}},
		nil, "self", slog.New(slog.NewTextHandler(io.Discard, nil)), upstreamHooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.close()
	cluster := func(i int) int64 { return set.snapshot()[0].Targets[i].ClusterInflight }
	p := newPeerLoads()
	now := time.Now()
	p.apply("b", []loadEntry{{"app", "http://127.0.0.1:1", 3}, {"nope", "x", 9}}, now, set)
	p.apply("c", []loadEntry{{"app", "http://127.0.0.1:1", 4}, {"app", "http://127.0.0.1:2", 1}}, now, set)
	if cluster(0) != 7 || cluster(1) != 1 {
		t.Fatalf("sums %d, %d; want 7, 1", cluster(0), cluster(1))
	}
	live := map[string]bool{"b": true, "c": true}
	p.apply("b", []loadEntry{{"app", "http://127.0.0.1:1", 2}}, now.Add(loadForget), set)
	p.expire(now.Add(loadForget+time.Millisecond), live, set)
	if cluster(0) != 2 || cluster(1) != 0 {
		t.Errorf("after c fell silent: %d, %d; want 2, 0", cluster(0), cluster(1))
	}
	p.expire(now.Add(loadForget+2*time.Millisecond), map[string]bool{"c": true}, set)
	if cluster(0) != 0 {
		t.Errorf("after b left: %d; want 0", cluster(0))
	}
}
