package server

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"shoal/cluster"
)

// loadExchange is how often a node tells its peers its in-flight counts
// per upstream target (only those not zero or just changed), and
// loadForget how long a count stands without being repeated: a node
// repeats every count that is not zero, so a silent one reached zero (its
// last packet lost) or left.
const (
	loadExchange = 250 * time.Millisecond
	loadForget   = 2 * time.Second
)

// announceAgain is how much a new down-mark must outlast the one last
// announced for the same target before it is sent: failing requests mark
// a target down one after another, the peers need hear it once.
const announceAgain = time.Second

// announceRepeat is when a down-mark is sent a second time: a packet lost
// would otherwise leave a peer sending requests to a dead target until
// it found out by itself.
const announceRepeat = 300 * time.Millisecond

// targetKey names one target of one upstream.
type targetKey struct{ upstream, target string }

// upstreamHooks connects the upstreams of a runtime being built to the
// cluster (which may start later, or never): findings go to the peers at
// once, and one node per target runs its checks.
func (n *Node) upstreamHooks() upstreamHooks {
	a := &healthAnnouncer{n: n, sent: map[targetKey]time.Time{}}
	return upstreamHooks{onMarkDown: a.down, onMarkUp: a.up, prober: n.probes}
}

// healthAnnouncer sends this node's health findings to the peers.
type healthAnnouncer struct {
	n    *Node
	mu   sync.Mutex
	sent map[targetKey]time.Time // the last down-mark sent per target
}

func (a *healthAnnouncer) down(upstream, target string, until time.Time) {
	c := a.n.cl.get()
	if c == nil {
		return
	}
	k := targetKey{upstream, target}
	a.mu.Lock()
	if last, ok := a.sent[k]; ok && until.Sub(last) < announceAgain {
		a.mu.Unlock()
		return
	}
	a.sent[k] = until
	a.mu.Unlock()
	a.send(c, healthNews{Down: true, Remaining: time.Until(until), Upstream: upstream, Target: target})
	time.AfterFunc(announceRepeat, func() {
		a.mu.Lock()
		last, ok := a.sent[k]
		still := ok && last.Equal(until) // not announced up (or down anew) since
		a.mu.Unlock()
		if still && time.Until(until) > 0 {
			a.send(c, healthNews{Down: true, Remaining: time.Until(until), Upstream: upstream, Target: target})
		}
	})
}

func (a *healthAnnouncer) up(upstream, target string) {
	c := a.n.cl.get()
	if c == nil {
		return
	}
	a.mu.Lock()
	delete(a.sent, targetKey{upstream, target})
	a.mu.Unlock()
	a.send(c, healthNews{Upstream: upstream, Target: target})
}

func (a *healthAnnouncer) send(c *cluster.Cluster, h healthNews) {
	b, ok := appendHealth(nil, h)
	if !ok || !c.SendToPeers(peerUpstreamHealth, b) {
		a.n.log.Warn("upstream: target health too long to share", "upstream", h.Upstream, "target", h.Target)
	}
}

// probes says whether this node runs the checks of a target: the alive
// member with the highest rendezvous score for it does, so each target
// has one prober, and when it leaves or falls silent (suspect, 3 s) the
// next in score takes over at its next check. Without a cluster this
// node checks every target.
func (n *Node) probes(upstream, target string) bool {
	c := n.cl.get()
	if c == nil {
		return true
	}
	p := chooseProber(append(c.AlivePeers(), c.Self()), upstream, target)
	return p == "" || p == c.Self()
}

// chooseProber is the node among live that checks a target: rendezvous
// hashing, so every node agrees from the same list, and a node leaving
// moves only the targets it checked.
func chooseProber(live []string, upstream, target string) string {
	best, bestScore := "", uint64(0)
	for _, name := range live {
		if s := proberScore(name, upstream, target); best == "" || s > bestScore || (s == bestScore && name < best) {
			best, bestScore = name, s
		}
	}
	return best
}

func proberScore(node, upstream, target string) uint64 {
	h := fnv.New64a()
	for _, s := range []string{node, upstream, target} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// syncUpstreams runs while the node does, with a cluster: it applies the
// peers' health findings as they come, and every loadExchange sends this
// node's in-flight counts per target and sums the peers' into each
// target's cluster in-flight.
func (n *Node) syncUpstreams(ctx context.Context, c *cluster.Cluster) {
	if c == nil {
		return
	}
	loads := newPeerLoads()
	c.OnPeerMessage(peerUpstreamHealth, n.applyHealth)
	defer c.OnPeerMessage(peerUpstreamHealth, nil)
	c.OnPeerMessage(peerUpstreamLoad, func(b []byte) {
		node, entries, err := parseLoads(b)
		if err != nil || node == c.Self() {
			n.log.Debug("upstream: drop in-flight message", "err", err)
			return
		}
		loads.apply(node, entries, time.Now(), n.upstreams())
	})
	defer c.OnPeerMessage(peerUpstreamLoad, nil)
	tick := time.NewTicker(loadExchange)
	defer tick.Stop()
	sent := map[targetKey]int64{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			n.sendLoads(c, sent)
			loads.expire(now, liveNames(c), n.upstreams())
		}
	}
}

// upstreams is the upstream set of the config in force.
func (n *Node) upstreams() *upstreamSet { return n.state.Load().upstreamSet() }

func (n *Node) applyHealth(b []byte) {
	h, err := parseHealth(b)
	if err != nil {
		n.log.Debug("upstream: drop health message", "err", err)
		return
	}
	if h.Down {
		n.upstreams().markDown(h.Upstream, h.Target, time.Now().Add(h.Remaining))
	} else {
		n.upstreams().markUp(h.Upstream, h.Target)
	}
}

// sendLoads sends the counts that are not zero or changed since the last
// send; sent is that last send, updated.
func (n *Node) sendLoads(c *cluster.Cluster, sent map[targetKey]int64) {
	var entries []loadEntry
	for _, u := range n.upstreams().snapshot() {
		for _, t := range u.Targets {
			k := targetKey{u.Name, t.URL}
			if last, ok := sent[k]; t.Inflight != 0 || (ok && last != t.Inflight) {
				entries = append(entries, loadEntry{Upstream: u.Name, Target: t.URL, N: t.Inflight})
			}
			if t.Inflight == 0 {
				delete(sent, k)
			} else {
				sent[k] = t.Inflight
			}
		}
	}
	for _, pkt := range appendLoads(c.Self(), entries, cluster.MaxPeerPayload) {
		c.SendToPeers(peerUpstreamLoad, pkt)
	}
}

func liveNames(c *cluster.Cluster) map[string]bool {
	live := map[string]bool{}
	for _, name := range c.AlivePeers() {
		live[name] = true
	}
	return live
}

// peerLoads is what each peer last said it has in flight per target.
type peerLoads struct {
	mu    sync.Mutex
	nodes map[string]map[targetKey]heardCount
}

type heardCount struct {
	n     int64
	heard time.Time
}

func newPeerLoads() *peerLoads {
	return &peerLoads{nodes: map[string]map[targetKey]heardCount{}}
}

// apply records node's counts and sets the sums of the targets named.
func (p *peerLoads) apply(node string, entries []loadEntry, now time.Time, set *upstreamSet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.nodes[node]
	if m == nil {
		m = map[targetKey]heardCount{}
		p.nodes[node] = m
	}
	for _, e := range entries {
		m[targetKey{e.Upstream, e.Target}] = heardCount{e.N, now}
	}
	for _, e := range entries {
		k := targetKey{e.Upstream, e.Target}
		set.setRemoteInflight(k.upstream, k.target, p.sum(k))
	}
}

// expire drops counts not repeated within loadForget and every count of
// a node no longer live, then sets every target's sum again (a reload
// may have built new upstreams meanwhile).
func (p *peerLoads) expire(now time.Time, live map[string]bool, set *upstreamSet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := map[targetKey]bool{}
	for node, m := range p.nodes {
		for k, hc := range m {
			keys[k] = true
			if !live[node] || now.Sub(hc.heard) > loadForget {
				delete(m, k)
			}
		}
		if len(m) == 0 {
			delete(p.nodes, node)
		}
	}
	for k := range keys {
		set.setRemoteInflight(k.upstream, k.target, p.sum(k))
	}
}

func (p *peerLoads) sum(k targetKey) int64 {
	var s int64
	for _, m := range p.nodes {
		s += m[k].n
	}
	return s
}
