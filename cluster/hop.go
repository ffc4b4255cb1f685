package cluster

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"shoal/internal/forward"
)

// The hop's lean path: a proxied request goes to the peer through
// internal/forward (request head written from the client's header, the
// answer streamed back from the connection's buffer) instead of
// ReverseProxy and a RoundTripper; upgrades and, without peer TLS, https
// peer URLs still take ReverseProxy.

// hopPools keeps one forward.Pool per peer address.
type hopPools struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle int
	idle    time.Duration
	timeout time.Duration // peer_timeout

	// mu guards pools, closed and pruned.
	mu     sync.Mutex
	pools  map[string]*forward.Pool
	closed bool
	pruned time.Time // the last walk over the pools (get)
}

func newHopPools(t *http.Transport, peerTimeout time.Duration) *hopPools {
	return &hopPools{dial: t.DialContext, maxIdle: t.MaxIdleConnsPerHost, idle: t.IdleConnTimeout, timeout: peerTimeout,
		pools: map[string]*forward.Pool{}}
}

// get returns addr's pool, made at its first use; nil once closed.
func (hp *hopPools) get(addr string) *forward.Pool {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if hp.closed {
		return nil
	}
	if now := time.Now(); now.Sub(hp.pruned) >= hp.idle {
		// A peer that left (or moved) is asked nothing more: its pool's
		// connections would be held until shutdown.
		hp.pruned = now
		for a, p := range hp.pools {
			if a != addr && p.Prune() == 0 {
				delete(hp.pools, a)
			}
		}
	}
	p := hp.pools[addr]
	if p == nil {
		p = forward.NewPool(forward.PoolOptions{MaxIdle: hp.maxIdle, IdleTimeout: hp.idle,
			Dial: func(ctx context.Context) (net.Conn, error) {
				// peer_timeout bounds the whole attempt, a connect and a
				// peer TLS handshake to a frozen peer included.
				ctx, cancel := context.WithTimeout(ctx, hp.timeout)
				defer cancel()
				return hp.dial(ctx, "tcp", addr)
			}})
		hp.pools[addr] = p
	}
	return p
}

func (hp *hopPools) close() {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	hp.closed = true
	for addr, p := range hp.pools {
		p.Close()
		delete(hp.pools, addr)
	}
}

// hopPool is the pool the lean path sends r to m through; nil when r
// goes through ReverseProxy.
func (c *Cluster) hopPool(r *http.Request, m *member) *forward.Pool {
	u := m.peerURL.Load()
	if !forward.Lean(r) || u.Scheme != "http" && (c.peerTLS == nil || u.Scheme != "https") {
		return nil
	}
	return c.hops.get(canonicalAddr(u))
}

// canonicalAddr is u's host:port, the scheme's port when it has none.
func canonicalAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// hopDrop: client fields the hop replaces with its own.
var hopDrop = map[string]bool{"X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true,
	"Forwarded": true, "Via": true, hopHeader: true, loadHeader: true}

// proxyLean makes one attempt through the lean path, as proxyTo does
// through ReverseProxy: cancelled when no response head comes within
// peer_timeout or the peer turns suspect or dead; an error means nothing
// was written to w.
func (c *Cluster) proxyLean(w http.ResponseWriter, r *http.Request, a *attempt, pool *forward.Pool) error {
	u := a.peer.peerURL.Load()
	target := r.URL.RequestURI()
	if strings.TrimSuffix(u.Path, "/") != "" {
		out := *r.URL
		out.Path, out.RawPath = peerPath(u, r.URL)
		target = out.RequestURI()
	}
	host := r.Host
	if host == "" {
		host = u.Host
	}
	v := c.vouch(r, a, host, target)
	req := forward.Request{Method: r.Method, Target: target, Host: host, Header: r.Header, Drop: hopDrop,
		Extra: v.fields(nil, a)}
	req.Body, req.ContentLength = forward.Body(r)
	sink := forward.ResponseWriterSink{W: w, Fix: func(h http.Header) { c.fixResponse(a, h) }}
	cut, err := c.leanForward(r.Context(), a, pool, &req, &sink)
	if cut {
		// Cut after the head went out: abort the client's response rather
		// than let it look complete, as ReverseProxy does.
		if r.Context().Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler)
		}
		return nil
	}
	return err
}

// fields appends what the hop vouches for to dst, as request fields.
func (v vouched) fields(dst []forward.Field, a *attempt) []forward.Field {
	return append(dst, forward.Field{Name: "X-Forwarded-For", Value: v.xff}, forward.Field{Name: "X-Forwarded-Proto", Value: a.scheme},
		forward.Field{Name: "X-Forwarded-Host", Value: a.host}, forward.Field{Name: "Via", Value: v.via},
		forward.Field{Name: hopHeader, Value: v.hop})
}

// leanForward sends req to a.peer on pool, within peer_timeout for the
// response head and cancelled when the peer turns suspect or dead, and
// streams the answer to dst. cut reports an answer broken off after
// something may have reached dst; otherwise an error means nothing did
// (errPeerTimeout, the peer's death, or the transport's error).
func (c *Cluster) leanForward(ctx context.Context, a *attempt, pool *forward.Pool, req *forward.Request, dst forward.Sink) (cut bool, err error) {
	m := a.peer
	life := m.liveCtx()
	// peer_timeout bounds the whole attempt: a new connection's connect
	// and handshake count (a frozen peer may take a connect, not answer).
	req.HeaderTimeout, req.TimeoutFromDial, req.Abort = c.opts.peerTimeout(), true, life
	m.sent.Add(1)
	defer m.done.Add(1)
	err = pool.Forward(ctx, req, dst)
	switch {
	case err == nil:
		m.markWell()
		return false, nil
	case !errors.Is(err, forward.ErrNoResponse):
		return true, err
	case errors.Is(err, forward.ErrHeaderTimeout):
		return false, errPeerTimeout
	}
	if life.Err() != nil && ctx.Err() == nil {
		return false, context.Cause(life) // the peer turned suspect or dead meanwhile
	}
	return false, err
}
