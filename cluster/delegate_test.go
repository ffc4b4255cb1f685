package cluster

import (
	"net"
	"reflect"
	"testing"

	"github.com/hashicorp/memberlist"
)

func metaNode(t *testing.T, name string, meta *nodeMeta) *memberlist.Node {
	b, err := meta.encode()
	if err != nil {
		t.Fatal(err)
	}
	return &memberlist.Node{Name: name, Addr: net.ParseIP("127.0.0.1"), Port: 7946, Meta: b}
}

func TestHandlersWithoutNetwork(t *testing.T) {
	c := viewCluster(t, "least_loaded")
	meta := &nodeMeta{Capacity: 8, Boot: 1, PeerURL: "http://10.0.0.2:8080", PublicURL: "https://b.example", Version: "v1", Config: "abcd"}
	c.handleAlive(metaNode(t, "b", meta))
	if c.peer("b") == nil {
		t.Fatal("joined member not live")
	}
	c.handleAlive(metaNode(t, "bad", &nodeMeta{PeerURL: "gopher://x", PublicURL: "gopher://x"}))
	if c.lookup("bad") != nil {
		t.Fatal("member with an unusable peer_url accepted")
	}

	load := func(seq uint64, in int64, draining bool) []byte {
		return (&loadReport{Name: "b", Boot: 1, Seq: seq, Inflight: in, Capacity: 8, Draining: draining}).encode(msgLoad)
	}
	c.handleMsg(load(5, 3, false))
	c.handleMsg(load(4, 7, false)) // older: ignored
	if got := c.lookup("b").inflight.Load(); got != 3 {
		t.Fatalf("in-flight %d, want 3 (older report must not win)", got)
	}
	for _, junk := range [][]byte{{}, {msgLoad}, {msgLoad, 0, 200}, {99, 1, 2, 3}, {msgLoadGossip, 0, 1, 'b', 0, 0}} {
		c.handleMsg(junk) // must not panic or apply
	}
	if got := c.lookup("b").inflight.Load(); got != 3 {
		t.Fatalf("junk changed in-flight to %d", got)
	}

	// A gossip report that is news is queued again for others.
	gossip := (&loadReport{Name: "b", Boot: 1, Seq: 9, Inflight: 2, Capacity: 8}).encode(msgLoadGossip)
	c.handleMsg(gossip)
	if c.queue.NumQueued() != 1 {
		t.Fatalf("news not relayed: %d queued", c.queue.NumQueued())
	}
	c.handleMsg(gossip)
	if c.queue.NumQueued() != 1 {
		t.Fatal("a repeated report was relayed again")
	}

	// Leaving: the last draining flag tells a clean leave from a crash.
	c.handleMsg(load(10, 0, true))
	c.handleLeave(metaNode(t, "b", meta))
	if got := stateName(c.lookup("b"), 0, 1); got != StateLeft {
		t.Fatalf("drained then gone: %s, want left", got)
	}
	c.handleAlive(metaNode(t, "b", &nodeMeta{Capacity: 8, Boot: 2, PeerURL: meta.PeerURL, PublicURL: meta.PublicURL}))
	if c.peer("b") == nil || c.lookup("b").draining.Load() {
		t.Fatal("restarted member not live and fresh")
	}
	c.handleLeave(metaNode(t, "b", meta))
	if got := stateName(c.lookup("b"), 0, 1); got != StateDead {
		t.Fatalf("vanished without draining: %s, want dead", got)
	}

	// A conflict about our own name is noted for the join loop.
	c.handleConflict(metaNode(t, "self", meta), metaNode(t, "self", meta))
	if c.conflict == nil || c.conflict.started != meta.Started {
		t.Fatal("conflict over our name not noted")
	}
}

func TestMetaRoundTripAndLimit(t *testing.T) {
	m := &nodeMeta{Draining: true, Capacity: 64, Started: 1700000000000, Boot: 42, PeerURL: "http://a:1", PublicURL: "https://a", Version: "1.0", Config: "beef",
		Sites: []siteHash{{ID: 1, Hash: 0xdeadbeef}, {ID: 7, Hash: 2}}}
	b, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeMeta(b)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := decodeMeta(b[:len(b)-2]); err == nil {
		t.Fatal("truncated meta decoded")
	}
	// A newer layout appends fields; this one still reads its prefix.
	if got, err := decodeMeta(append(append([]byte{}, b...), 1, 2, 3)); err != nil || got.Config != "beef" {
		t.Fatalf("newer meta: %+v %v", got, err)
	}
}
