package cluster

import (
	"context"
	"strings"
	"time"

	"shoal/internal/forward"
)

// The hop for a server's own HTTP/1.1 path: Pick routes a request the
// balance setting covers without an *http.Request, and Relay proxies it
// to the peer Pick chose through the lean path's pools, with the full
// chain's signing, fields, peer_timeout and response fixes. What Relay
// cannot answer (nothing written) goes back to the caller, whose full
// chain routes it again: a peer found failing here is skipped there.

// Choice is where Pick sends a request: this node, or one peer.
type Choice struct {
	m    *member
	pool *forward.Pool
}

// Here reports whether the request is served by this node.
func (ch Choice) Here() bool { return ch.m == nil }

// Peer names the peer chosen; "" for this node.
func (ch Choice) Peer() string {
	if ch.m == nil {
		return ""
	}
	return ch.m.name
}

// Pick is the routing of Serve for a covered request of site from the
// client address client (trusted proxies applied), with no cluster
// header or marker: the same policy, capacity, margin and drift check. ok
// is false when only the full chain can route it: sticky affinity is on
// (the cookie decides), the mode is redirect, or the peer chosen is not
// reached through the lean path.
func (c *Cluster) Pick(client, site string) (ch Choice, ok bool) {
	t := c.tune.Load()
	if t.set.Sticky || t.redirect {
		return Choice{}, false
	}
	n := c.inflight.Add(1) // as route: concurrent arrivals see each other
	m := c.pick(t, c.siteNamed(site), client, n-1, nil)
	c.inflight.Add(-1)
	if m == nil {
		return Choice{}, true
	}
	u := m.peerURL.Load()
	if u.Scheme != "http" && (c.peerTLS == nil || u.Scheme != "https") {
		return Choice{}, false // ReverseProxy's: https to a peer without peer TLS
	}
	pool := c.hops.get(canonicalAddr(u))
	if pool == nil {
		return Choice{}, false // shutting down
	}
	return Choice{m: m, pool: pool}, true
}

// HopRequest is a GET or HEAD a server read itself, to relay to a peer.
type HopRequest struct {
	// Method, Target (path and query as received) and Host.
	Method, Target, Host string
	// Lines is the client's header block as received, after the request
	// line. It carries no forwarding or cluster field (the caller leaves
	// such requests to the full chain).
	Lines string
	// Remote is the client connection's address (host:port), Client the
	// client's address (trusted proxies applied), Scheme how it reached
	// this node ("http" or "https").
	Remote, Client, Scheme string
	// Via is the Via the client sent ("": none).
	Via string
	// RequestID goes to the peer as X-Request-Id, in place of the
	// client's.
	RequestID string
}

// hopDropID is hopDrop with X-Request-Id: a relay sends its own.
var hopDropID = map[string]bool{"X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true,
	"Forwarded": true, "Via": true, hopHeader: true, loadHeader: true, "X-Request-Id": true}

// Relay sends req to the peer ch names (Pick's) and streams its answer
// to dst, fixed as the full chain fixes it (the peer's load taken out
// and applied, a Location to its internal address rewritten). wrote
// reports whether the answer was passed to dst: when not, err says why
// and, unless ctx ended, the peer is marked failed, so the full chain's
// own choice skips it. An error with wrote set is an answer cut short.
func (c *Cluster) Relay(ctx context.Context, ch Choice, req *HopRequest, dst forward.Sink) (wrote bool, err error) {
	m := ch.m
	a := &attempt{peer: m, scheme: req.Scheme, host: req.Host}
	u := m.peerURL.Load()
	target := req.Target
	if p := strings.TrimSuffix(u.EscapedPath(), "/"); p != "" {
		target = p + target
	}
	v := c.vouchFrom(&hopFrom{method: req.Method, proto: "1.1", remote: req.Remote, client: req.Client, via: req.Via},
		a, req.Host, target)
	var extra [6]forward.Field
	fr := forward.Request{Method: req.Method, Target: target, Host: req.Host, Lines: req.Lines, Drop: hopDropID,
		Extra: append(v.fields(extra[:0], a), forward.Field{Name: "X-Request-Id", Value: req.RequestID})}
	sent := time.Now()
	cut, err := c.leanForward(ctx, a, ch.pool, &fr, &hopSink{Sink: dst, c: c, a: a})
	if err == nil || cut {
		return true, err
	}
	if ctx.Err() == nil {
		m.markSick(c.opts.Timings.unhealthy(), sent)
		c.log.Info("peer failed; the full chain routes the request again", "peer", m.name,
			"method", req.Method, "path", req.Target, "err", err)
	}
	return false, err
}

// hopSink fixes the peer's response head (fixHead) before passing it on.
type hopSink struct {
	forward.Sink
	c *Cluster
	a *attempt
}

func (s *hopSink) WriteHead(h *forward.Head) error {
	s.c.fixHead(s.a, h)
	return s.Sink.WriteHead(h)
}
