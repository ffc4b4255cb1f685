package cluster

import (
	"context"
	"errors"
	"time"
)

// Why an attempt at a peer was cancelled before it finished.
var (
	// errPeerTimeout: no response header within Options.PeerTimeout (a
	// frozen or overloaded peer), so the request may go elsewhere.
	errPeerTimeout = errors.New("cluster: no response header from peer within peer_timeout")
	// errPeerSuspect: the peer's load reports stopped; it may be frozen.
	errPeerSuspect = errors.New("cluster: peer turned suspect")
	// errPeerDead: memberlist declared the peer dead or gone.
	errPeerDead = errors.New("cluster: peer turned dead")
)

// peerLife is a context that ends when its peer turns suspect or dead.
// Every attempt at the peer is tied to it, so one frozen peer's requests
// are cancelled together, at once, and retried elsewhere. A peer that
// comes back gets a new one.
type peerLife struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func newPeerLife() *peerLife {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &peerLife{ctx: ctx, cancel: cancel}
}

// lifeCtx is the context attempts at m run under now.
func (m *member) lifeCtx() context.Context {
	for {
		if l := m.life.Load(); l != nil {
			return l.ctx
		}
		m.life.CompareAndSwap(nil, newPeerLife())
	}
}

// liveCtx is lifeCtx for an attempt about to start: choose just found m
// available, so a life that ended means m came back since the last watch.
func (m *member) liveCtx() context.Context {
	life := m.lifeCtx()
	if life.Err() != nil {
		m.markUp()
		life = m.lifeCtx()
	}
	return life
}

// markDown cancels every attempt at m with cause; it reports whether m
// was up until now.
func (m *member) markDown(cause error) bool {
	l := m.life.Load()
	if l == nil {
		l = newPeerLife()
		if !m.life.CompareAndSwap(nil, l) {
			l = m.life.Load()
		}
	}
	if l.ctx.Err() != nil {
		return false
	}
	l.cancel(cause)
	return true
}

// markUp gives m a live context again after markDown; it reports whether
// m was down.
func (m *member) markUp() bool {
	l := m.life.Load()
	if l == nil || l.ctx.Err() == nil {
		return false
	}
	return m.life.CompareAndSwap(l, newPeerLife())
}

// watchLoop follows the peers' health for the attempts in flight: the
// request path reads health when it picks a peer, but an attempt already
// sent must learn of the peer's death while it waits.
func (c *Cluster) watchLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.Timings.watchEvery())
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.watchPeers(now)
		}
	}
}

// watchPeers marks down every peer that is dead or silent for StaleAfter
// (shown as suspect), and up again every other one. A peer that left, or
// is draining, is finishing what it was sent: its attempts run on.
func (c *Cluster) watchPeers(now time.Time) {
	stale := int64(c.opts.Timings.staleAfter())
	c.mu.Lock()
	list := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		list = append(list, m)
	}
	c.mu.Unlock()
	for _, m := range list {
		var cause error
		switch {
		case m.state.Load() == stDead:
			cause = errPeerDead
		case m.state.Load() == stAlive && !m.draining.Load() && now.UnixNano()-m.heard.Load() >= stale:
			cause = errPeerSuspect
		}
		if cause == nil {
			m.markUp()
			continue
		}
		if m.markDown(cause) {
			c.log.Info("cancelling the attempts in flight at a peer", "peer", m.name, "why", cause)
		}
	}
}
