package server

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"shoal/cluster"
	"shoal/handlers/books"
	"shoal/handlers/static"
	"shoal/internal/http1"
)

// fastAnswer is what routeFast finds for a request a fast path
// (HTTP/1.1 or HTTP/2) may answer itself.
type fastAnswer struct {
	site *site
	file *static.FastFile
	// cluster, when running, counts the request in this node's load.
	cluster *cluster.Cluster
	// hop: a peer proxied the request here; the response carries this
	// node's load and the access log the client the peer vouched for.
	hop    bool
	client string
	// routes is the set of header routes whose rules the file carries
	// (0: none; see fastRoutes).
	routes uint64
	// rt is the runtime the answer came from, held (acquire) until the
	// answer is out: a reload closes it only after its last request.
	rt *runtime
	// relay, set instead of file, sends the request to an upstream
	// (HTTP/1.1 fast path only; relay.go).
	relay *upstreamRelay
	// peer, when not Here, is the peer the cluster sends the request to,
	// instead of file (HTTP/1.1 fast path only; hoprelay.go).
	peer cluster.Choice
}

// done lets go of the runtime an answer held.
func (a *fastAnswer) done() {
	if a.rt != nil {
		a.rt.release()
		a.rt = nil
	}
}

func (a fastAnswer) ok() bool { return a.file != nil || a.relay != nil || !a.peer.Here() }

// fastRoute is the HTTP/1.1 fast path's hook into the sites
// (http1.Route): the answer for h (a cached file, an upstream's relay, or
// the relay of the cluster's hop to the peer it picked), or false when the
// request takes the full chain: redirect_http is on, only the full chain
// can route it (a redirect marker, sticky, redirect mode), it carries a
// hop header that does not check out or forwarding headers the cluster
// would strip, or nothing on the fast path answers it.
func (n *Node) fastRoute(c *http1.Conn, h *http1.Head) (http1.Answer, bool) {
	if n.state.Load().redirect.Load() != nil {
		return http1.Answer{}, false
	}
	return n.answerFast(c, h, n.routeFast(*h, "http", c.Remote()), nil)
}

// fastRouteTLS is fastRoute for HTTPS/1.1: routes see the scheme
// "https", and every answer carries the header lines serveHTTPS adds.
func (n *Node) fastRouteTLS(c *http1.Conn, h *http1.Head) (http1.Answer, bool) {
	a := n.routeFast(*h, "https", c.Remote())
	if !a.ok() {
		return http1.Answer{}, false
	}
	return n.answerFast(c, h, a, n.httpsLines())
}

// answerFast writes the books of a request the HTTP/1.1 fast path answers
// with a's file (server/request.go), kept in the connection's Books so
// that a request allocates none, and gives the front the response's
// bytes. The books are written before the response, as on the full path,
// where net/http sends a small response only once the handler has
// returned: a client that reads its response and then the metrics finds
// its request counted.
func (n *Node) answerFast(c *http1.Conn, h *http1.Head, a fastAnswer, listener []byte) (http1.Answer, bool) {
	if !a.ok() {
		return http1.Answer{}, false
	}
	b := connBooks(c)
	if a.relay != nil {
		b.cluster, b.listener = a.cluster, listener
		return http1.Answer{Relay: a.relay, Hold: a.rt}, true
	}
	if !a.peer.Here() {
		b.cluster, b.listener, b.peer = a.cluster, listener, a.peer
		return http1.Answer{Relay: a.site.hopRelay, Hold: a.rt}, true
	}
	st, ff := a.site, a.file
	remote := c.Remote()
	if a.hop && a.client != "" {
		remote = a.client // the client the peer vouched for
	}
	body := ff.Body
	if h.IsHEAD {
		body = nil
	}
	rq := &b.rq
	*rq = request{hop: a.hop}
	rq.Started = time.Now()
	readFast(rq, st, h, remote, "HTTP/1.1", headBlock(h.Lines))
	rq.Handler = books.KindStatic
	rq.begin(st, a.cluster)
	var load []byte
	if a.hop {
		load = []byte(a.cluster.LoadHeader()) // counts this request: between begin and finish
	}
	rq.Status, rq.Bytes = ff.Status, int64(len(body))
	rq.finish()
	return http1.Answer{StatusLine: ff.StatusLine, Header: ff.Header, Body: body, Load: load,
		Listener: listener, Now: rq.Started, Hold: a.rt}, true
}

// httpsFields caches the HSTS and Alt-Svc header lines for the values in
// force.
type httpsFields struct {
	hsts, alt string
	lines     []byte
}

// httpsLines are the Strict-Transport-Security and Alt-Svc lines of an
// HTTPS/1.1 answer, built again only when a reload or HTTP/3 changes
// their values.
func (n *Node) httpsLines() []byte {
	hsts := n.state.Load().cfg.TLS.HSTS
	alt := ""
	if p := n.altSvc.Load(); p != nil {
		alt = *p
	}
	if c := n.h1fields.Load(); c != nil && c.hsts == hsts && c.alt == alt {
		return c.lines
	}
	c := &httpsFields{hsts: hsts, alt: alt}
	if hsts != "" {
		c.lines = append(c.lines, "Strict-Transport-Security: "+hsts+"\r\n"...)
	}
	if alt != "" {
		c.lines = append(c.lines, "Alt-Svc: "+alt+"\r\n"...)
	}
	n.h1fields.Store(c)
	return c.lines
}

// routeFast is fastRoute for any listener: what redirect_http leaves alone.
// remote is the client connection's address. An answer with a file holds
// its runtime: the caller calls done once it is out (or dropped).
func (n *Node) routeFast(h http1.Head, scheme, remote string) (a fastAnswer) {
	rt := n.acquire()
	defer func() {
		if a.ok() {
			a.rt = rt
		} else {
			rt.release()
		}
	}()
	st := rt.vhosts.match(h.Host)
	a = fastAnswer{site: st, cluster: n.cl.get()}
	switch c := a.cluster; {
	case c == nil: // no cluster: its headers mean nothing
	case strings.Contains(h.Target, "_shoal"):
		return fastAnswer{}
	case h.Hop != "":
		a.hop = true // checked once the fast path knows it answers: the check spends the nonce
	case h.Forwarded:
		return fastAnswer{}
	case st.covers(h.Path):
		if !st.pickFast(&a, &h, scheme, remote) {
			return fastAnswer{}
		}
		if !a.peer.Here() {
			return a // relayed to the peer (hoprelay.go)
		}
	}
	method := http.MethodGet
	if h.IsHEAD {
		method = http.MethodHead
	}
	var ok bool
	if a.routes, ok = st.fastRoutes(method, scheme, h.Path); !ok || a.hop && st.routes != nil {
		// A hop's scheme is the client's, which only the full chain reads.
		if a.relay = st.fastUpstream(method, scheme, h.Path, a); a.relay != nil {
			return a
		}
		return fastAnswer{}
	}
	a.file = st.fastVariant(st.fast(h.Path, static.FastRequest(h.Cond)), a.routes)
	if a.hop && a.ok() {
		method := http.MethodGet
		if h.IsHEAD {
			method = http.MethodHead
		}
		if a.client, a.hop = a.cluster.CheckHop(h.Hop, method, h.Host, h.Target, h.Peer); !a.hop {
			return fastAnswer{}
		}
	}
	return a
}

// fastAnswered counts the responses the fast path of the listeners open
// now has sent.
func (n *Node) fastAnswered() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var sum int64
	for _, l := range n.listeners {
		if l.srv.front != nil {
			sum += l.srv.front.Answered()
		}
	}
	return sum
}

// capExempt: trusted_proxies and the cluster's peers carry the requests
// of many clients over their connections, so max_conns_per_ip does not
// apply to them.
func (n *Node) capExempt(ip netip.Addr) bool {
	for _, p := range n.state.Load().cfg.Server.Trusted() {
		if p.Contains(ip) {
			return true
		}
	}
	c := n.cl.get()
	if c == nil {
		return false
	}
	for _, m := range c.Members() {
		for _, a := range []string{m.Addr, m.PeerURL} {
			if u, err := url.Parse(a); err == nil && u.Host != "" {
				a = u.Host
			}
			if host, _, err := net.SplitHostPort(a); err == nil {
				a = host
			}
			if peer, err := netip.ParseAddr(a); err == nil && peer.Unmap() == ip {
				return true
			}
		}
	}
	return false
}
