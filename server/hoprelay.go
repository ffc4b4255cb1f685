package server

import (
	"context"
	"net/http"
	"strings"

	"shoal/cluster"
	"shoal/handlers/books"
	"shoal/internal/http1"
)

// The cluster hop on the HTTP/1.1 fast path: a GET or HEAD the balance
// setting covers is routed by cluster.Pick from the connection's client
// address, without an *http.Request. When the cluster keeps it here, the
// fast path answers it as any other (a cached file); when it goes to a
// peer, hopRelay proxies it through the cluster's lean hop (Relay:
// signing, forwarding fields, peer_timeout, the peer's load) and writes
// the answer on the connection's goroutine. A peer that fails before
// anything reached the client leaves the request, unread, to net/http,
// whose full chain routes it again (retries, error pages): no request is
// lost to a dead peer.

// covers reports whether cluster.balance covers a fast path's request
// for path (balanced, as the full chain applies it).
func (st *site) covers(path string) bool {
	switch st.balance {
	case "all":
		return true
	case "none":
		return false
	}
	return balanced(st.balance, st.generated(path))
}

// pickFast asks the cluster where a covered request goes and records a
// peer in a; false when the full chain must decide or serve it: the
// cluster routes only there (sticky, redirect mode), the request came
// over a peer's connection, or the site's headers or routes would change
// the relayed answer.
func (st *site) pickFast(a *fastAnswer, h *http1.Head, scheme, remote string) bool {
	if h.Peer {
		return false
	}
	ch, ok := a.cluster.Pick(hostOnly(remote), st.label) // no forwarding fields: the connection's address
	if !ok {
		return false
	}
	if ch.Here() {
		return true
	}
	method := http.MethodGet
	if h.IsHEAD {
		method = http.MethodHead
	}
	if len(st.headers) > 0 {
		return false
	}
	if key, plain := st.fastRoutes(method, scheme, h.Path); !plain || key != 0 {
		return false
	}
	a.peer = ch
	return true
}

// hopRelay relays a site's requests the cluster sends to a peer
// (http1.Relay); the peer is the one routeFast picked, kept in the
// connection's fastBooks.
type hopRelay struct{ site *site }

// Relay proxies the request to the peer and writes the books once the
// answer is out: a proxied request's, as the full chain keeps them
// (handler proxy, the peer's name).
func (r *hopRelay) Relay(c *http1.Conn, h *http1.Head, _ []byte, closing bool) (wrote, keep bool) {
	st, b := r.site, connBooks(c)
	peer := b.peer
	b.peer = cluster.Choice{}
	rq := &b.rq
	b.out = countingWriter{w: c}
	fields := b.openRelay(st, c, h, books.KindProxy, &b.out, closing)
	rq.Peer = peer.Peer()
	scheme := "http"
	if c.TLS() {
		scheme = "https"
	}
	b.hop = cluster.HopRequest{Method: rq.Method, Target: h.Target, Host: h.Host, Lines: string(h.Lines),
		Remote: c.Remote(), Client: rq.ClientIP, Scheme: scheme, RequestID: rq.RequestID}
	if via := fields.all("via"); len(via) > 0 {
		b.hop.Via = strings.Join(via, ", ")
	}
	relayed, err := b.cluster.Relay(context.Background(), peer, &b.hop, &b.sink)
	if !relayed || b.out.n == 0 && err != nil {
		// Nothing reached the client: the full chain serves it.
		if !relayed && st.metrics != nil {
			st.metrics.PeerFailed(peer.Peer())
		}
		return false, false
	}
	return true, b.closeRelay(st, nil, err) // proxied: no local work in the cluster's load, as on the full chain
}

// countingWriter counts what a relay wrote to the client.
type countingWriter struct {
	w *http1.Conn
	n int64
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	return n, err
}

// WriteLast is Write for a kept connection's last bytes (the sink's
// End): the connection may send them with the read of the next request.
func (cw *countingWriter) WriteLast(p []byte) (int, error) {
	n, err := cw.w.WriteLast(p)
	cw.n += int64(n)
	return n, err
}
