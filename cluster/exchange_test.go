package cluster

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// inbox collects what one channel of one node received.
type inbox struct {
	mu  sync.Mutex
	got [][]byte
}

func (b *inbox) add(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, p)
}

func (b *inbox) has(want []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range b.got {
		if bytes.Equal(g, want) {
			return true
		}
	}
	return false
}

func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

// Each channel's payloads reach only that channel's function, on every
// peer; a channel nobody reads drops them; nil stops delivery.
func TestPeerMessagesByChannel(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0]
	boxes := map[byte][]*inbox{}
	for _, ch := range []byte{1, 2} {
		for _, n := range nodes[1:] {
			b := &inbox{}
			n.c.OnPeerMessage(ch, b.add)
			boxes[ch] = append(boxes[ch], b)
		}
	}
	one, two := []byte("rates"), []byte("health")
	for _, tc := range []struct {
		ch      byte
		payload []byte
	}{{1, one}, {2, two}, {9, []byte("nobody")}} {
		if !a.c.SendToPeers(tc.ch, tc.payload) {
			t.Fatalf("SendToPeers(%d) refused", tc.ch)
		}
	}
	for ch, want := range map[byte][]byte{1: one, 2: two} {
		for i, b := range boxes[ch] {
			eventually(t, 2*time.Second, "payload on its channel", func() bool { return b.has(want) })
			if b.len() != 1 {
				t.Errorf("channel %d node %d got %d payloads, want only its own", ch, i, b.len())
			}
		}
	}

	nodes[1].c.OnPeerMessage(1, nil)
	a.c.SendToPeers(1, []byte("after"))
	a.c.SendToPeers(2, []byte("marker"))
	eventually(t, 2*time.Second, "marker", func() bool { return boxes[2][0].has([]byte("marker")) })
	eventually(t, 2*time.Second, "after on the other node", func() bool { return boxes[1][1].has([]byte("after")) })
	if boxes[1][0].has([]byte("after")) {
		t.Error("payload delivered after OnPeerMessage(nil)")
	}
}

func TestSendToPeersRefusesOversize(t *testing.T) {
	n := startNode(t, "solo", nil)
	if n.c.SendToPeers(1, make([]byte, MaxPeerPayload+1)) {
		t.Error("oversize payload accepted")
	}
	if !n.c.SendToPeers(1, make([]byte, MaxPeerPayload)) {
		t.Error("payload of MaxPeerPayload refused")
	}
}

func TestHandleAppIgnoresEmpty(t *testing.T) {
	n := startNode(t, "solo", nil)
	n.c.handleApp(nil)
	n.c.handleMsg([]byte{msgApp})
}

// AlivePeers names the live peers, not the node itself, and drops a
// peer that died.
func TestAlivePeers(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0]
	eventually(t, 2*time.Second, "both peers alive", func() bool { return len(a.c.AlivePeers()) == 2 })
	for _, name := range a.c.AlivePeers() {
		if name == a.name {
			t.Error("AlivePeers names the node itself")
		}
	}
	nodes[2].crash()
	eventually(t, 10*time.Second, "the crashed peer dropped", func() bool {
		p := a.c.AlivePeers()
		return len(p) == 1 && p[0] == nodes[1].name
	})
}
