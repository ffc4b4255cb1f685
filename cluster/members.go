package cluster

import (
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Member states as shown to operators.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect" // memberlist says alive, but its load reports stopped
	StateDead    = "dead"
	StateLeft    = "left"
)

const (
	stAlive int32 = iota
	stDead
	stLeft
)

// member is what this node knows of one peer. Fields read by the request
// path are atomics; the type is only used by pointer.
type member struct {
	name string

	meta    atomic.Pointer[nodeMeta]
	more    atomic.Pointer[siteList]        // site hashes beyond its meta (drift.go)
	node    atomic.Pointer[memberlist.Node] // a copy, for sending and re-joining
	peerURL atomic.Pointer[url.URL]
	pubURL  atomic.Pointer[url.URL]
	state   atomic.Int32
	changed atomic.Int64 // unix nanos of the last state change

	// Load as last reported by the peer.
	inflight atomic.Int64
	capacity atomic.Int64
	draining atomic.Bool
	heard    atomic.Int64 // unix nanos of the last report (or of the join)

	// repMu guards boot and seq, so reports that race (UDP and push/pull)
	// are applied in order.
	repMu sync.Mutex
	boot  uint32
	seq   uint64

	// This node's own dealings with the peer: requests sent and answered
	// (both only grow), and both counts when the last report arrived.
	sent, done   atomic.Int64
	sent0, done0 atomic.Int64
	sickUntil    atomic.Int64 // unix nanos; passive health
	sickAt       atomic.Int64 // unix nanos of the last failure counted in fails
	fails        atomic.Int32 // consecutive failures

	life atomic.Pointer[peerLife] // ends when the peer turns suspect or dead (peerwatch.go)
}

// load is the peer's in-flight count as last reported, plus what we sent
// it since, minus what it answered us since, as a fraction of its
// capacity. Adding all our unanswered requests to the report instead would
// count those the report already includes twice: measured end to end, the
// entry node then kept about half of all work instead of a third.
func (m *member) load() float64 {
	capacity := max(m.capacity.Load(), 1)
	est := m.inflight.Load() + (m.sent.Load() - m.sent0.Load()) - (m.done.Load() - m.done0.Load())
	return float64(max(est, 0)) / float64(capacity)
}

// available is the one predicate every policy shares: alive, answering,
// heard from recently, and not draining. Fullness is not part of it:
// least_loaded weighs load itself, and the others must stay predictable.
func (m *member) available(now int64, stale time.Duration) bool {
	return m.state.Load() == stAlive &&
		!m.draining.Load() &&
		now >= m.sickUntil.Load() &&
		now-m.heard.Load() < int64(stale)
}

func (m *member) healthy(now int64) bool { return now >= m.sickUntil.Load() }

// markSick keeps requests away for a while, doubling with each failure in
// a row so a dead peer costs one failed try per window, not one per
// request. sent is when the failed attempt began: one that began before
// the last counted failure was in flight with it (a batch that all hit
// peer_timeout together) and is the same failure, not one more in a row;
// counting each such attempt had a peer that failed once while starting
// skipped for 32 s, long after it had answered again.
func (m *member) markSick(base time.Duration, sent time.Time) {
	now := time.Now()
	last := m.sickAt.Load()
	if sent.UnixNano() < last || !m.sickAt.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	n := min(m.fails.Add(1), 5)
	m.sickUntil.Store(now.Add(base << (n - 1)).UnixNano())
}

func (m *member) markWell() {
	if m.fails.Load() != 0 {
		m.fails.Store(0)
		m.sickUntil.Store(0)
	}
}

// setMeta records a peer's published facts; a new boot id means a restarted
// process, whose predecessor's failures and report sequence no longer count.
func (m *member) setMeta(meta *nodeMeta) {
	old := m.meta.Swap(meta)
	if old == nil || old.Boot != meta.Boot {
		m.repMu.Lock()
		m.boot, m.seq = meta.Boot, 0
		m.repMu.Unlock()
		m.fails.Store(0)
		m.sickUntil.Store(0)
		m.inflight.Store(0)
	}
	m.capacity.Store(int64(max(meta.Capacity, 1)))
	m.draining.Store(meta.Draining)
	if u, err := url.Parse(meta.PeerURL); err == nil {
		m.peerURL.Store(u)
	}
	if u, err := url.Parse(meta.PublicURL); err == nil {
		m.pubURL.Store(u)
	}
}

// applyReport takes a load report if it is newer than the last one.
func (m *member) applyReport(l *loadReport) bool {
	m.repMu.Lock()
	if l.Boot == m.boot && l.Seq <= m.seq {
		m.repMu.Unlock()
		return false
	}
	if l.Boot != m.boot {
		// A report from a new process may arrive before its meta.
		m.fails.Store(0)
		m.sickUntil.Store(0)
	}
	m.boot, m.seq = l.Boot, l.Seq
	m.sent0.Store(m.sent.Load())
	m.done0.Store(m.done.Load())
	m.inflight.Store(l.Inflight)
	m.repMu.Unlock()
	if l.Capacity > 0 {
		m.capacity.Store(int64(l.Capacity))
	}
	m.draining.Store(l.Draining)
	m.heard.Store(time.Now().UnixNano())
	return true
}

// Member is a copy of one node's entry, for status pages and the API.
type Member struct {
	Name      string    `json:"name"`
	State     string    `json:"state"`
	Load      float64   `json:"load"`
	Inflight  int64     `json:"inflight"`
	Capacity  int       `json:"capacity"`
	Draining  bool      `json:"draining"`
	Healthy   bool      `json:"healthy"`
	PeerURL   string    `json:"peer_url"`
	PublicURL string    `json:"public_url"`
	Config    string    `json:"config"`
	Version   string    `json:"version"`
	Started   time.Time `json:"started"`
	Addr      string    `json:"addr"`
	Self      bool      `json:"self,omitempty"`

	// Sites is the member's hash of each of this node's sites, by site
	// name (absent: it published none for that site).
	Sites map[string]string `json:"sites,omitempty"`
	// Drift names this node's sites whose hash the member lacks or
	// differs in: no requests for those go to it.
	Drift []string `json:"drift,omitempty"`
}

// Members returns a copy of every known node, this one included, sorted by
// name. Dead and departed nodes stay listed for Timings.Forget.
func (c *Cluster) Members() []Member {
	now := time.Now().UnixNano()
	stale := c.opts.Timings.staleAfter()
	c.mu.Lock()
	list := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		list = append(list, m)
	}
	c.mu.Unlock()

	out := make([]Member, 0, len(list)+1)
	out = append(out, c.selfMember())
	for _, m := range list {
		meta := m.meta.Load()
		if meta == nil {
			continue
		}
		e := Member{
			Name:      m.name,
			State:     stateName(m, now, stale),
			Inflight:  m.inflight.Load(),
			Capacity:  int(m.capacity.Load()),
			Draining:  m.draining.Load(),
			Healthy:   m.healthy(now),
			PeerURL:   meta.PeerURL,
			PublicURL: meta.PublicURL,
			Config:    meta.Config,
			Version:   meta.Version,
			Started:   time.UnixMilli(meta.Started),
		}
		e.Load = float64(e.Inflight) / float64(max(e.Capacity, 1))
		c.siteView(&e, m)
		if n := m.node.Load(); n != nil {
			e.Addr = n.Address()
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (c *Cluster) selfMember() Member {
	t := c.tune.Load()
	capacity := t.capacity
	in := c.inflight.Load()
	e := Member{
		Name:      c.opts.Name,
		State:     StateAlive,
		Load:      float64(in) / float64(capacity),
		Inflight:  in,
		Capacity:  capacity,
		Draining:  c.draining.Load(),
		Healthy:   true,
		PeerURL:   c.opts.PeerURL,
		PublicURL: c.opts.publicURL(),
		Config:    t.set.ConfigHash,
		Version:   c.opts.Version,
		Started:   c.started,
		Addr:      c.GossipAddr(),
		Self:      true,
	}
	c.siteView(&e, nil)
	return e
}

func stateName(m *member, now int64, stale time.Duration) string {
	switch m.state.Load() {
	case stDead:
		return StateDead
	case stLeft:
		return StateLeft
	}
	if now-m.heard.Load() >= int64(stale) {
		return StateSuspect
	}
	return StateAlive
}

// rebuildPeers refreshes the lock-free list of live peers. mu must be held.
func (c *Cluster) rebuildPeers() {
	live := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		if m.state.Load() == stAlive && m.meta.Load() != nil {
			live = append(live, m)
		} else if m.state.Load() == stDead {
			m.markDown(errPeerDead) // its attempts in flight end now, not at the next watch
		}
	}
	slices.SortFunc(live, func(a, b *member) int { return strings.Compare(a.name, b.name) })
	c.peers.Store(&live)
	c.alive.Store(int32(len(live)))
}

// peer returns the live peer called name, or nil.
func (c *Cluster) peer(name string) *member {
	for _, m := range *c.peers.Load() {
		if m.name == name {
			return m
		}
	}
	return nil
}

// lookup returns any known member called name, or nil.
func (c *Cluster) lookup(name string) *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[name]
}

func nodeAddr(n *memberlist.Node) string {
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}
