package cluster

import (
	"sync"
	"sync/atomic"
	"time"
)

// msgApp carries a payload of the server's own (rate-limit counts,
// upstream health and in-flight counts) to every live peer, best effort:
// a lost packet costs a fraction of a second of accuracy, never a request.
// After the msgApp byte comes the server's channel byte, then the payload.
const msgApp byte = 6

// maxAppPacket bounds the channel byte and payload of one message so
// that, with the kind byte and memberlist's encryption and label, it fits
// a UDP packet on any path.
const maxAppPacket = 1100

// MaxPeerPayload is the largest payload SendToPeers takes.
const MaxPeerPayload = maxAppPacket - 1

// appHandlers is the function per channel that receives what peers sent
// with SendToPeers; copied on write, so the receive path takes no lock.
type appHandlers struct {
	mu  sync.Mutex // orders writers
	fns atomic.Pointer[[256]func(payload []byte)]
}

// SendToPeers sends payload on channel to every live peer as one UDP
// packet each; a payload over MaxPeerPayload is refused (the caller
// splits its data).
func (c *Cluster) SendToPeers(channel byte, payload []byte) bool {
	if len(payload) > MaxPeerPayload {
		return false
	}
	peers := *c.peers.Load()
	if len(peers) == 0 {
		return true
	}
	msg := make([]byte, 0, 2+len(payload))
	msg = append(append(msg, msgApp, channel), payload...)
	for _, m := range peers {
		n := m.node.Load()
		if n == nil {
			continue
		}
		if err := c.ml.SendBestEffort(n, msg); err != nil {
			c.log.Debug("send to peer", "to", m.name, "err", err)
		}
	}
	return true
}

// OnPeerMessage sets the function that receives what peers sent on
// channel with SendToPeers (its own copy of each payload); nil drops
// them. Each server feature owns a channel, so they never see each
// other's payloads. fn runs on memberlist's receive path: it must be quick
// and must not call the Cluster.
func (c *Cluster) OnPeerMessage(channel byte, fn func(payload []byte)) {
	c.apps.mu.Lock()
	defer c.apps.mu.Unlock()
	next := new([256]func([]byte))
	if cur := c.apps.fns.Load(); cur != nil {
		*next = *cur
	}
	next[channel] = fn
	c.apps.fns.Store(next)
}

// handleApp dispatches b (channel byte, payload) to its channel's function.
func (c *Cluster) handleApp(b []byte) {
	if len(b) == 0 {
		return
	}
	fns := c.apps.fns.Load()
	if fns == nil || fns[b[0]] == nil {
		c.log.Debug("drop peer message on a channel nobody reads", "channel", b[0])
		return
	}
	fns[b[0]](b[1:])
}

// AlivePeers returns the names of the peers that are alive and not
// suspect (they reported load within Timings.StaleAfter): the nodes a
// feature may hand work to now. Lock-free, unlike Members.
func (c *Cluster) AlivePeers() []string {
	now := time.Now().UnixNano()
	stale := c.opts.Timings.staleAfter()
	peers := *c.peers.Load()
	out := make([]string, 0, len(peers))
	for _, m := range peers {
		if stateName(m, now, stale) == StateAlive {
			out = append(out, m.name)
		}
	}
	return out
}
