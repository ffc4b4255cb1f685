package cluster

import (
	"bytes"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate adapts memberlist's callbacks to Cluster's handleX methods. It
// holds no logic, so the handlers are tested without a network. None of
// the handlers may call memberlist: its callbacks run under its own locks.
type delegate struct{ c *Cluster }

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.NamedBroadcast   = (*loadBroadcast)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte { return d.c.handleNodeMeta(limit) }
func (d *delegate) NotifyMsg(b []byte)        { d.c.handleMsg(bytes.Clone(b)) }
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.queue.GetBroadcasts(overhead, limit)
}
func (d *delegate) LocalState(join bool) []byte          { return d.c.handleLocalState() }
func (d *delegate) MergeRemoteState(b []byte, join bool) { d.c.handleMsg(bytes.Clone(b)) }
func (d *delegate) NotifyJoin(n *memberlist.Node)        { d.c.handleAlive(copyNode(n)) }
func (d *delegate) NotifyUpdate(n *memberlist.Node)      { d.c.handleAlive(copyNode(n)) }
func (d *delegate) NotifyLeave(n *memberlist.Node)       { d.c.handleLeave(copyNode(n)) }
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.c.handleConflict(copyNode(existing), copyNode(other))
}

// copyNode detaches a node from memberlist, whose structs change under
// its lock after the callback returns.
func copyNode(n *memberlist.Node) *memberlist.Node {
	cp := *n
	cp.Addr = bytes.Clone(n.Addr)
	cp.Meta = bytes.Clone(n.Meta)
	return &cp
}

func (c *Cluster) handleNodeMeta(limit int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.meta) > limit {
		return nil // New checked the size; this only guards a smaller limit
	}
	return bytes.Clone(c.meta)
}

func (c *Cluster) handleLocalState() []byte {
	b := c.report().encode(msgState)
	if l := c.moreSites(); l != nil {
		b = l.appendTo(b)
	}
	return b
}

func (c *Cluster) handleMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	switch kind := b[0]; kind {
	case msgState:
		l, sites, err := decodeState(b[1:])
		if err != nil {
			c.log.Debug("drop message", "kind", kind, "err", err)
		}
		if l != nil {
			c.applyLoad(l)
		}
		if sites != nil {
			c.handleSites(sites)
		}
	case msgSites:
		r := reader{b: b[1:]}
		l, err := decodeSiteList(&r)
		if err != nil {
			c.log.Debug("drop message", "kind", kind, "err", err)
			return
		}
		c.handleSites(l)
	case msgLoad, msgLoadGossip:
		l, err := decodeLoad(b[1:])
		if err != nil {
			c.log.Debug("drop message", "kind", kind, "err", err)
			return
		}
		if c.applyLoad(l) && kind == msgLoadGossip {
			// Spread what was news to us; a newer report from the same
			// node replaces this one in the queue.
			c.queue.QueueBroadcast(&loadBroadcast{name: l.Name, msg: b})
		}
	case msgApp:
		c.handleApp(b[1:])
	case msgACME:
		c.handleACME(b[1:])
	default:
		c.log.Debug("drop message", "kind", kind)
	}
}

func (c *Cluster) applyLoad(l *loadReport) bool {
	if l.Name == c.opts.Name {
		return false
	}
	m := c.lookup(l.Name)
	if m == nil || m.state.Load() != stAlive {
		return false
	}
	return m.applyReport(l)
}

// handleAlive records a joined or updated node.
func (c *Cluster) handleAlive(n *memberlist.Node) {
	if n.Name == c.opts.Name {
		return
	}
	meta, err := decodeMeta(n.Meta)
	if err == nil {
		_, err = parseBaseURL("peer_url", meta.PeerURL)
	}
	if err == nil {
		_, err = parseBaseURL("public_url", meta.PublicURL)
	}
	if err != nil {
		c.log.Warn("ignore member with unreadable meta", "name", n.Name, "addr", nodeAddr(n), "err", err)
		return
	}
	now := time.Now().UnixNano()
	c.mu.Lock()
	m, known := c.members[n.Name]
	if !known {
		m = &member{name: n.Name}
		c.members[n.Name] = m
	}
	m.node.Store(n)
	m.setMeta(meta)
	revived := m.state.Swap(stAlive) != stAlive
	if revived || !known {
		m.changed.Store(now)
		m.heard.Store(now) // grace until its first report
	}
	c.rebuildPeers()
	c.mu.Unlock()
	if revived || !known {
		c.log.Info("member alive", "name", n.Name, "addr", nodeAddr(n), "peer_url", meta.PeerURL)
		c.kickLoad()         // tell the newcomer our load now
		c.offerSites(n.Name) // and the site hashes beyond our meta
	}
}

// handleLeave records a node that memberlist no longer counts. memberlist
// does not say whether it left or crashed, so its last published draining
// flag decides.
func (c *Cluster) handleLeave(n *memberlist.Node) {
	if n.Name == c.opts.Name {
		return
	}
	c.mu.Lock()
	m := c.members[n.Name]
	if m == nil {
		c.mu.Unlock()
		return
	}
	st := stDead
	if m.draining.Load() {
		st = stLeft
	}
	m.state.Store(st)
	m.changed.Store(time.Now().UnixNano())
	c.rebuildPeers()
	c.mu.Unlock()
	if st == stLeft {
		c.log.Info("member left", "name", n.Name)
	} else {
		c.log.Warn("member dead", "name", n.Name, "addr", nodeAddr(n))
	}
}

// handleConflict notes another node claiming our name; the join loop
// decides outside memberlist's locks whether it is alive.
func (c *Cluster) handleConflict(existing, other *memberlist.Node) {
	if existing.Name != c.opts.Name {
		c.log.Warn("two nodes claim one name", "name", existing.Name, "addr", nodeAddr(existing), "other", nodeAddr(other))
		return
	}
	note := &conflictNote{addr: nodeAddr(other)}
	if meta, err := decodeMeta(other.Meta); err == nil {
		note.started = meta.Started
	}
	c.mu.Lock()
	c.conflict = note
	c.mu.Unlock()
}

// loadBroadcast is a load report in memberlist's broadcast queue; a newer
// one from the same node invalidates it.
type loadBroadcast struct {
	name string
	msg  []byte
}

func (b *loadBroadcast) Name() string    { return "load/" + b.name }
func (b *loadBroadcast) Message() []byte { return b.msg }
func (b *loadBroadcast) Finished()       {}
func (b *loadBroadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.Name()
}
