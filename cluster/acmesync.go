package cluster

// The cluster side of automatic HTTPS (internal/acme.Cluster): one lock
// per name through the cluster, so a certificate is ordered once, and a
// key space every node keeps a copy of (challenge tokens, certificates,
// their private keys, the ACME account).
//
// Transport: every message is a memberlist user message sent with
// SendReliable, i.e. over a TCP stream that memberlist encrypts and
// authenticates (AES-GCM) with the cluster secret, never by gossip. A
// request carries an id and the sender's name; the answer goes back the
// same way. A node joins a moment before its ACME starts (ServeACME):
// what peers publish meanwhile is kept in memory (bounded, during the
// first minute after start) and stored when it starts, so a challenge
// token published in that moment is still answered.
//
// Lock: the oldest live member (earliest published start time, then name)
// grants the locks; a node asks it and, once granted, renews its lease
// every acmeRenew. Each hold has an id of its own, carried by its lock,
// renewal and unlock messages: each message travels on a stream of its
// own, so a node's unlock may reach the granter after the same node's
// next lock request, and must then not release the newer hold. The grant
// lapses when the holder Unlocks, leaves or is declared dead (or
// restarts: its boot id changes), or when no renewal came for acmeLease.
// Membership changes: a newcomer never takes the role, since it is the
// youngest; when the granting node goes, the next oldest takes over with
// an empty table, accepts the holders' renewals at once and grants
// nothing new for acmeGrace (longer than a renewal period), so a lock
// held across the change stays held. Two nodes that ordered while apart
// (a partition, or both alone at start) may both hold a name; to avoid
// the second case a node waits up to acmeJoinWait after start for its
// first join before it takes a lock.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"shoal/internal/acme"
)

// msgACME is the kind byte of this file's messages, dispatched by
// handleMsg (delegate.go).
const msgACME byte = 65

// Operations of an acmeMsg.
const (
	acmeLock byte = iota + 1
	acmeUnlock
	acmePublish
	acmeFetch
	acmeReply
)

// Statuses of a reply.
const (
	acmeOK       byte = iota
	acmeBusy          // another node holds the lock (or the granter is in its grace)
	acmeNotOwner      // the receiver does not grant locks
	acmeNotFound      // fetch: the receiver lacks the key
	acmeFailed        // the receiver's storage refused
	acmeNoACME        // the receiver runs no ACME
)

// Flags of an acmeMsg.
const (
	acmeFlagDelete byte = 1 << iota // publish: value nil, delete the key
	acmeFlagRenew                   // lock: a holder renewing its lease
)

// Defaults of acmeSync's timings.
const (
	acmeLease    = 30 * time.Second
	acmeRenew    = 5 * time.Second
	acmeGrace    = 12 * time.Second
	acmeAckWait  = 5 * time.Second
	acmeAskWait  = 3 * time.Second
	acmeJoinWait = 10 * time.Second
	acmePoll     = time.Second
)

// Bounds on what a peer may send: ACME values are certificates and keys
// of a few KiB.
const (
	maxACMEKey   = 1024
	maxACMEValue = 4 << 20
	// maxACMEWork bounds the requests served at once; more are dropped
	// and their senders retry or skip.
	maxACMEWork = 32
)

// acmeMsg is one request or reply.
type acmeMsg struct {
	Op     byte
	Status byte
	Flags  byte
	ID     uint64
	Boot   uint32 // the sender's boot id (lock holder identity)
	From   string // the sender's node name
	Key    string // lock name or storage key
	Value  []byte
}

func (m *acmeMsg) encode() []byte {
	b := make([]byte, 0, 32+len(m.From)+len(m.Key)+len(m.Value))
	b = append(b, msgACME, m.Op, m.Status, m.Flags)
	b = binary.AppendUvarint(b, m.ID)
	b = binary.BigEndian.AppendUint32(b, m.Boot)
	b = appendString(b, m.From)
	b = appendString(b, m.Key)
	b = binary.AppendUvarint(b, uint64(len(m.Value)))
	return append(b, m.Value...)
}

// decodeACMEMsg reads a message; b starts after the kind byte.
func decodeACMEMsg(b []byte) (*acmeMsg, error) {
	r := reader{b: b}
	m := &acmeMsg{Op: r.byte(), Status: r.byte(), Flags: r.byte(), ID: r.uvarint(), Boot: r.uint32()}
	m.From = r.string()
	m.Key = r.string()
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) || n > maxACMEValue {
		return nil, errBadMsg
	}
	if n > 0 {
		m.Value = append([]byte(nil), r.b[:n]...)
	}
	r.b = r.b[n:]
	if len(r.b) != 0 || m.Op < acmeLock || m.Op > acmeReply || m.From == "" || len(m.Key) > maxACMEKey ||
		(m.Op != acmeReply && m.Key == "") {
		return nil, errBadMsg
	}
	return m, nil
}

// acmeSync is a Cluster's ACME state; its zero value is ready.
type acmeSync struct {
	storage atomic.Pointer[acme.Storage]
	nextID  atomic.Uint64
	work    chan struct{} // semaphore of requests being served; made by once
	once    sync.Once

	// Timings; zero: the defaults above. Tests shorten them before use.
	lease, renew, grace, ackWait, askWait, joinWait, poll time.Duration

	// mu guards everything below.
	mu      sync.Mutex
	pending map[uint64]chan *acmeMsg // requests awaiting replies
	grants  map[string]acmeGrant     // locks this node granted, as owner
	held    map[string]acmeHold      // locks this node holds or is taking
	owner   string                   // the granting node last seen
	graceTo time.Time                // grant nothing new before this
	early   map[string][]byte        // publishes received before ServeACME
	earlyN  int                      // bytes in early
}

// acmeGrant is one lock as its granter knows it.
type acmeGrant struct {
	holder  string
	boot    uint32
	hold    uint64 // the holder's id for this hold
	expires time.Time
}

// acmeHold is one lock as its holder knows it.
type acmeHold struct {
	id   uint64
	done chan struct{} // closed on Unlock
}

// holdValue carries a hold id in a lock or unlock message's Value.
func holdValue(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// holdID reads holdValue; 0 (no hold) when the value is not one.
func holdID(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (s *acmeSync) init() {
	s.once.Do(func() {
		s.work = make(chan struct{}, maxACMEWork)
		s.mu.Lock()
		s.pending = map[uint64]chan *acmeMsg{}
		s.grants = map[string]acmeGrant{}
		s.held = map[string]acmeHold{}
		s.mu.Unlock()
	})
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// ServeACME hands this node's ACME storage to the cluster: peers'
// publishes are stored in it and their fetches answered from it. Until
// then they get acmeNoACME.
func (c *Cluster) ServeACME(s *acme.Storage) {
	a := &c.acme
	a.init()
	a.mu.Lock()
	defer a.mu.Unlock()
	// Under mu, so a publish arriving meanwhile waits (keepEarly) and
	// lands after these older ones.
	for key, value := range a.early {
		if err := s.Receive(key, value); err != nil {
			c.log.Warn("acme: cannot store a key a peer published", "key", key, "err", err)
		}
	}
	a.early, a.earlyN = nil, 0
	a.storage.Store(s)
	// From now on a takeover of the lock role is noticed (observeOwner).
	c.observeOwner(c.acmeOwner(), time.Now())
}

// Bounds on what a node keeps for its ACME storage before it has one: a
// node joins the cluster a moment before its ACME starts, and a challenge
// token published in between must still be answerable.
const (
	maxEarlyBytes = 1 << 20
	earlyWindow   = time.Minute // after start; later, a node without ACME runs none
)

// receivePublish stores a key a peer published, in the storage or,
// before there is one, in the early buffer.
func (c *Cluster) receivePublish(key string, value []byte) byte {
	for {
		if st := c.acme.storage.Load(); st != nil {
			if err := st.Receive(key, value); err != nil {
				c.log.Warn("acme: cannot store a key a peer published", "key", key, "err", err)
				return acmeFailed
			}
			return acmeOK
		}
		kept, retry := c.keepEarly(key, value)
		switch {
		case kept:
			return acmeOK
		case !retry:
			return acmeNoACME
		}
	}
}

// keepEarly holds a publish that arrived before ServeACME; not kept when
// the node is past its start or the buffer is full, and retry when
// ServeACME ran meanwhile.
func (c *Cluster) keepEarly(key string, value []byte) (kept, retry bool) {
	a := &c.acme
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.storage.Load() != nil {
		return false, true
	}
	if time.Since(c.started) > earlyWindow {
		a.early, a.earlyN = nil, 0
		return false, false
	}
	if a.early == nil {
		a.early = map[string][]byte{}
	}
	if a.earlyN-len(a.early[key])+len(value) > maxEarlyBytes {
		return false, false
	}
	a.earlyN += len(value) - len(a.early[key])
	a.early[key] = value
	return true, false
}

// acmeOwner is the node that grants locks: the oldest live member.
func (c *Cluster) acmeOwner() string {
	best, bestStart := c.opts.Name, c.started.UnixMilli()
	for _, m := range *c.peers.Load() {
		meta := m.meta.Load()
		if meta == nil {
			continue
		}
		if meta.Started < bestStart || (meta.Started == bestStart && m.name < best) {
			best, bestStart = m.name, meta.Started
		}
	}
	return best
}

// observeOwner notes who grants locks now; a node that takes the role
// over from another starts its grace. s.mu must be held.
func (c *Cluster) observeOwner(owner string, now time.Time) {
	s := &c.acme
	if owner == c.opts.Name && s.owner != c.opts.Name && s.owner != "" {
		s.graceTo = now.Add(orDefault(s.grace, acmeGrace))
		c.log.Info("acme: this node now grants the cluster's certificate locks", "previous", s.owner)
	}
	s.owner = owner
}

// grantLock answers a lock request as owner; hold is the asker's id for
// the hold it takes or renews.
func (c *Cluster) grantLock(name, from string, boot uint32, hold uint64, renew bool, now time.Time) byte {
	s := &c.acme
	owner := c.acmeOwner()
	s.mu.Lock()
	defer s.mu.Unlock()
	c.observeOwner(owner, now)
	if owner != c.opts.Name {
		return acmeNotOwner
	}
	g, ok := s.grants[name]
	grace := now.Before(s.graceTo)
	switch mine := ok && g.holder == from && g.boot == boot; {
	case mine && g.hold == hold:
	case mine && renew:
		return acmeBusy // a late renewal of a hold that ended
	case mine:
		// The same node's next hold: it holds a name once at a time
		// (reserveLock), so the previous one ended, its unlock still
		// on the way.
	case ok && !c.grantLapsed(g, now):
		return acmeBusy
	case renew && !grace:
		// Released or lapsed: a renewal that crossed the holder's
		// Unlock on the way must not take the lock back.
		return acmeBusy
	case !renew && grace:
		return acmeBusy // a holder from before the takeover may still renew
	}
	s.grants[name] = acmeGrant{holder: from, boot: boot, hold: hold, expires: now.Add(orDefault(s.lease, acmeLease))}
	return acmeOK
}

// grantLapsed reports whether a grant's holder stopped holding it: its
// lease ran out, or it is no longer a live member with the same boot.
func (c *Cluster) grantLapsed(g acmeGrant, now time.Time) bool {
	if now.After(g.expires) {
		return true
	}
	if g.holder == c.opts.Name {
		return g.boot != c.boot
	}
	m := c.peer(g.holder)
	if m == nil {
		return true
	}
	meta := m.meta.Load()
	return meta == nil || meta.Boot != g.boot
}

func (c *Cluster) releaseLock(name, from string, boot uint32, hold uint64) {
	s := &c.acme
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.grants[name]; ok && g.holder == from && g.boot == boot && g.hold == hold {
		delete(s.grants, name)
	}
}

// Lock blocks until this node holds the cluster-wide lock name or ctx
// ends (see the file comment for how the lock behaves).
func (c *Cluster) Lock(ctx context.Context, name string) error {
	s := &c.acme
	s.init()
	c.waitFirstJoin(ctx)
	wait := 50 * time.Millisecond
	for {
		if hold, ok := c.reserveLock(name); ok {
			st, err := c.askLock(ctx, name, hold, false)
			if st == acmeOK {
				c.startRenewing(name)
				return nil
			}
			c.unreserveLock(name)
			if err != nil {
				c.log.Debug("acme: lock request", "name", name, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.stop:
			return errors.New("cluster: shut down")
		case <-time.After(wait):
		}
		wait = min(2*wait, orDefault(s.poll, acmePoll))
	}
}

// reserveLock marks name as being taken by this node, so two callers in
// one process never both hold it, and returns the new hold's id; false
// when it already is.
func (c *Cluster) reserveLock(name string) (uint64, bool) {
	s := &c.acme
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.held[name]; ok {
		return 0, false
	}
	h := acmeHold{id: s.nextID.Add(1), done: make(chan struct{})}
	s.held[name] = h
	return h.id, true
}

func (c *Cluster) unreserveLock(name string) {
	s := &c.acme
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.held[name]; ok {
		close(h.done)
		delete(s.held, name)
	}
}

// askLock asks the owner for name (the owner being this node or a peer).
func (c *Cluster) askLock(ctx context.Context, name string, hold uint64, renew bool) (byte, error) {
	owner := c.acmeOwner()
	if owner == c.opts.Name {
		return c.grantLock(name, owner, c.boot, hold, renew, time.Now()), nil
	}
	c.acme.mu.Lock()
	c.observeOwner(owner, time.Now())
	c.acme.mu.Unlock()
	m := c.peer(owner)
	if m == nil {
		return acmeNotOwner, fmt.Errorf("cluster: lock owner %s gone", owner)
	}
	var flags byte
	if renew {
		flags = acmeFlagRenew
	}
	replies := c.ask(ctx, []*member{m}, &acmeMsg{Op: acmeLock, Flags: flags, Key: name, Value: holdValue(hold)},
		orDefault(c.acme.askWait, acmeAskWait), nil)
	r, ok := replies[owner]
	if !ok {
		return acmeNotOwner, fmt.Errorf("cluster: lock owner %s did not answer", owner)
	}
	return r.Status, nil
}

// startRenewing keeps the lease of a held lock until Unlock or shutdown.
func (c *Cluster) startRenewing(name string) {
	s := &c.acme
	s.mu.Lock()
	h := s.held[name]
	s.mu.Unlock()
	done := h.done
	go func() {
		t := time.NewTicker(orDefault(s.renew, acmeRenew))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-c.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), orDefault(s.askWait, acmeAskWait))
			st, err := c.askLock(ctx, name, h.id, true)
			cancel()
			select {
			case <-done:
				return // released while the renewal was on the way
			default:
			}
			if st == acmeBusy {
				// Another node holds it (two halves of a partition
				// met); the order in progress goes on, at worst ordered
				// twice.
				c.log.Warn("acme: lost a certificate lock to another node", "name", name)
			} else if err != nil {
				c.log.Debug("acme: lock renewal", "name", name, "err", err)
			}
		}
	}()
}

// Unlock releases a lock this node holds.
func (c *Cluster) Unlock(ctx context.Context, name string) error {
	s := &c.acme
	s.init()
	s.mu.Lock()
	h, ok := s.held[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("cluster: lock %q is not held here", name)
	}
	c.unreserveLock(name)
	owner := c.acmeOwner()
	if owner == c.opts.Name {
		c.releaseLock(name, owner, c.boot, h.id)
		return nil
	}
	if m := c.peer(owner); m != nil {
		// No answer is needed: the lease ends the grant anyway.
		c.send(m, &acmeMsg{Op: acmeUnlock, Key: name, Value: holdValue(h.id)})
	}
	return nil
}

// waitFirstJoin holds a node that is still alone, with peers to join,
// for up to joinWait after its start: two nodes started together must
// not each take every lock for themselves.
func (c *Cluster) waitFirstJoin(ctx context.Context) {
	if len(c.addrs(c.opts.Join, c.GossipAddr())) == 0 {
		return
	}
	until := c.started.Add(orDefault(c.acme.joinWait, acmeJoinWait))
	for c.alive.Load() == 0 && time.Now().Before(until) {
		select {
		case <-ctx.Done():
			return
		case <-c.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Publish hands key=value (nil: delete) to every live peer and returns
// once each stored it; a peer that does not answer within ackWait is
// skipped with a log line (it fetches what it lacks later).
func (c *Cluster) Publish(ctx context.Context, key string, value []byte) error {
	c.acme.init()
	peers := *c.peers.Load()
	if len(peers) == 0 {
		return nil
	}
	msg := &acmeMsg{Op: acmePublish, Key: key, Value: value}
	if value == nil {
		msg.Flags = acmeFlagDelete
	}
	replies := c.ask(ctx, peers, msg, orDefault(c.acme.ackWait, acmeAckWait), nil)
	for _, m := range peers {
		r, ok := replies[m.name]
		switch {
		case !ok:
			c.log.Warn("acme: peer did not acknowledge a key; skipped", "peer", m.name, "key", key)
		case r.Status == acmeFailed:
			c.log.Warn("acme: peer could not store a key", "peer", m.name, "key", key)
		}
	}
	return nil
}

// Fetch asks every live peer for key; the first copy wins.
func (c *Cluster) Fetch(ctx context.Context, key string) ([]byte, error) {
	c.acme.init()
	peers := *c.peers.Load()
	if len(peers) == 0 {
		return nil, fs.ErrNotExist
	}
	replies := c.ask(ctx, peers, &acmeMsg{Op: acmeFetch, Key: key}, orDefault(c.acme.askWait, acmeAskWait),
		func(r *acmeMsg) bool { return r.Status == acmeOK })
	for _, r := range replies {
		if r.Status == acmeOK {
			return r.Value, nil
		}
	}
	return nil, fs.ErrNotExist
}

// ask sends msg to peers and collects their replies by sender until all
// answered, wait passed, ctx ended, or stop accepts a reply.
func (c *Cluster) ask(ctx context.Context, peers []*member, msg *acmeMsg, wait time.Duration, stop func(*acmeMsg) bool) map[string]*acmeMsg {
	s := &c.acme
	msg.ID = s.nextID.Add(1)
	ch := make(chan *acmeMsg, len(peers))
	s.mu.Lock()
	s.pending[msg.ID] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, msg.ID)
		s.mu.Unlock()
	}()
	for _, m := range peers {
		go c.send(m, msg)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	out := make(map[string]*acmeMsg, len(peers))
	for len(out) < len(peers) {
		select {
		case r := <-ch:
			out[r.From] = r
			if stop != nil && stop(r) {
				return out
			}
		case <-timer.C:
			return out
		case <-ctx.Done():
			return out
		case <-c.stop:
			return out
		}
	}
	return out
}

// send delivers msg to m over memberlist's encrypted TCP stream.
func (c *Cluster) send(m *member, msg *acmeMsg) {
	n := m.node.Load()
	if n == nil {
		return
	}
	cp := *msg
	cp.From, cp.Boot = c.opts.Name, c.boot
	if err := c.ml.SendReliable(n, cp.encode()); err != nil {
		c.log.Debug("acme: send to peer", "to", m.name, "op", msg.Op, "err", err)
	}
}

// handleACME takes one message from a peer. Replies go to their waiting
// request; requests are served off memberlist's goroutine (they touch the
// disk and answer over the network), a bounded number at a time.
func (c *Cluster) handleACME(b []byte) {
	m, err := decodeACMEMsg(b)
	if err != nil {
		c.log.Debug("drop message", "kind", msgACME, "err", err)
		return
	}
	s := &c.acme
	s.init()
	if m.Op == acmeReply {
		s.mu.Lock()
		ch := s.pending[m.ID]
		s.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default:
			}
		}
		return
	}
	select {
	case s.work <- struct{}{}:
	default:
		c.log.Warn("acme: too many peer requests at once; one dropped", "from", m.From, "op", m.Op)
		return
	}
	go func() {
		defer func() { <-s.work }()
		c.serveACME(m)
	}()
}

// serveACME answers one request.
func (c *Cluster) serveACME(m *acmeMsg) {
	reply := &acmeMsg{Op: acmeReply, ID: m.ID}
	st := c.acme.storage.Load()
	switch m.Op {
	case acmeLock:
		reply.Status = c.grantLock(m.Key, m.From, m.Boot, holdID(m.Value), m.Flags&acmeFlagRenew != 0, time.Now())
	case acmeUnlock:
		c.releaseLock(m.Key, m.From, m.Boot, holdID(m.Value))
		return
	case acmePublish:
		value := m.Value
		if m.Flags&acmeFlagDelete != 0 {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		reply.Status = c.receivePublish(m.Key, value)
	case acmeFetch:
		ctx, cancel := context.WithTimeout(context.Background(), orDefault(c.acme.askWait, acmeAskWait))
		defer cancel()
		switch b, err := fetchLocal(ctx, st, m.Key); {
		case err == nil:
			reply.Value = b
		case errors.Is(err, fs.ErrNotExist):
			reply.Status = acmeNotFound
		case st == nil:
			reply.Status = acmeNoACME
		default:
			reply.Status = acmeFailed
		}
	}
	if to := c.waitMember(m.From); to != nil {
		c.send(to, reply)
	} else {
		c.log.Debug("acme: no address to answer", "to", m.From)
	}
}

func fetchLocal(ctx context.Context, st *acme.Storage, key string) ([]byte, error) {
	if st == nil {
		return nil, errors.New("no acme")
	}
	return st.Local(ctx, key)
}

// waitMember finds the sender of a request: a node that has just joined
// may ask before its arrival reached this node's member list.
func (c *Cluster) waitMember(name string) *member {
	deadline := time.Now().Add(2 * time.Second)
	for {
		if m := c.lookup(name); m != nil && m.node.Load() != nil {
			return m
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-c.stop:
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}
