package cluster

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// inbound is what a request brought from the cluster: a valid hop or
// redirect marker means "serve here".
type inbound struct {
	hop    bool   // a peer proxied it here
	from   string // that peer
	marked bool   // a peer redirected the client here
}

type inboundKey struct{}

// Guard strips this package's headers (and X-Forwarded-* from untrusted
// clients) from every request and, for a request a peer proxied here,
// restores the client's address in RemoteAddr. Place it outermost, before
// the middleware that works out the client IP; Middleware does the same
// checks itself when Guard did not run, minus the address.
func (c *Cluster) Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, _ = c.inspect(r, true)
		next.ServeHTTP(w, r)
	})
}

// Inbound is Guard for one request: it returns r cleaned of cluster
// headers, with the client address a peer vouched for in RemoteAddr.
func (c *Cluster) Inbound(r *http.Request) *http.Request {
	r, _ = c.inspect(r, true)
	return r
}

// Middleware routes each request as Serve does; covered (nil: all)
// says which requests the balance setting covers.
func (c *Cluster) Middleware(covered func(*http.Request) bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.Serve(w, r, next, covered == nil || covered(r))
		})
	}
}

// ServingLocal counts one request served here without Serve in the load
// peers see: the server's fast path uses it for what Serve would serve
// here anyway (a request the balance setting does not cover and that
// carries no cluster header or marker). Call the matching DoneLocal when
// the response is out.
func (c *Cluster) ServingLocal() {
	c.inflight.Add(1)
	c.served.Add(1)
	c.kickLoad()
}

// Accounting is this node's own count of local work: requests being
// served here now, and served here since start (through Serve or
// ServingLocal alike). Tests compare it across entry paths.
func (c *Cluster) Accounting() (inflight int64, served uint64) {
	return c.inflight.Load(), c.served.Load()
}

// FromPeer reports whether a peer proxied r here with a valid hop header,
// as Guard or Serve checked it, and which peer.
func FromPeer(r *http.Request) (peer string, ok bool) {
	if in, found := r.Context().Value(inboundKey{}).(*inbound); found && in.hop {
		return in.from, true
	}
	return "", false
}

// DoneLocal ends what ServingLocal started.
func (c *Cluster) DoneLocal() {
	c.inflight.Add(-1)
	c.kickLoad()
}

// CheckHop checks a request's X-Shoal-Hop value as Serve does: ok when a
// peer signed it for this method, host, target (path and query, as
// received) and this node within its validity, its nonce was not seen
// before, and (with Options.PeerTLS on) it came over a peer TLS
// connection (overPeerTLS). The nonce is spent: call it only when the
// request is answered on the strength of the answer. client is the
// address the peer vouches for.
func (c *Cluster) CheckHop(value, method, host, target string, overPeerTLS bool) (client string, ok bool) {
	if c.peerTLS != nil && !overPeerTLS {
		return "", false
	}
	h, ok := c.acceptHop(value, method, host, target, "fast path", time.Now())
	return h.client, ok
}

// acceptHop verifies a hop header and spends its nonce.
func (c *Cluster) acceptHop(v, method, host, target, remote string, now time.Time) (hop, bool) {
	h, ok := c.keys.checkHop(v, method, host, target, c.opts.Name, c.opts.Timings.hopValidity(), now)
	if !ok || h.from == c.opts.Name {
		c.log.Debug("ignore invalid hop header", "remote", remote, "target", target)
		return hop{}, false
	}
	switch c.replay.admit(h.nonce, h.ts, now) {
	case nonceSeen:
		c.refusals.note(c.log, "refused a replayed hop header", "remote", remote, "from", h.from, "target", target)
		return hop{}, false
	case nonceFull:
		c.refusals.note(c.log, "refused a hop header: too many hops within the validity window to check for replays", "remote", remote, "from", h.from)
		return hop{}, false
	}
	return h, true
}

// LoadHeader is the header line Serve adds to its response to a proxied
// request: this node's load, signed, for the peer that sent it. Call it
// between ServingLocal and DoneLocal, so the load counts the request.
func (c *Cluster) LoadHeader() string {
	return loadHeader + ": " + c.keys.loadValue(c.report(), time.Now()) + "\r\n"
}

// Serve routes one request. Every request served here counts as in-flight
// (the load peers see). A covered request goes through the policy and is
// served here by local, proxied to a peer or redirected there; one that
// carries a valid hop or redirect marker is always served here, so
// nothing takes a second hop.
func (c *Cluster) Serve(w http.ResponseWriter, r *http.Request, local http.Handler, covered bool) {
	r, in := c.inspect(r, false)
	switch {
	case in.hop:
		c.serveLocal(&loadWriter{ResponseWriter: w, c: c}, r, local, Route{Kind: Local}, false)
	case !covered:
		c.serveLocal(w, r, local, Route{Kind: Local}, false)
	case in.marked:
		c.setSticky(w, r, c.opts.Name)
		c.serveLocal(w, r, local, Route{Kind: Local}, false)
	default:
		c.route(w, r, local)
	}
}

// inspect strips and verifies what a request says about the cluster, once.
func (c *Cluster) inspect(r *http.Request, restore bool) (*http.Request, *inbound) {
	if in, ok := r.Context().Value(inboundKey{}).(*inbound); ok {
		return r, in
	}
	in := &inbound{}
	out := r.WithContext(context.WithValue(r.Context(), inboundKey{}, in))
	h := r.Header
	h.Del(loadHeader)
	now := time.Now()
	if v := h.Get(hopHeader); v != "" {
		h.Del(hopHeader)
		if c.peerTLS != nil && !OverPeerTLS(r) {
			c.log.Debug("ignore hop header from outside peer TLS", "remote", r.RemoteAddr, "target", r.RequestURI)
		} else if hp, ok := c.acceptHop(v, r.Method, r.Host, r.RequestURI, r.RemoteAddr, now); ok {
			in.hop, in.from = true, hp.from
			if restore && hp.client != "" {
				out.RemoteAddr = hp.client
			}
		}
	}
	if !in.hop && !c.trusted(r) {
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-Ip"} {
			h.Del(k)
		}
	}
	if strings.Contains(r.URL.RawQuery, markerParam+"=") {
		v, rest := takeParam(r.URL.RawQuery, markerParam)
		u := *r.URL
		u.RawQuery = rest
		out.URL = &u
		path, _, _ := strings.Cut(r.RequestURI, "?")
		out.RequestURI = path
		if rest != "" {
			out.RequestURI += "?" + rest
		}
		in.marked = c.keys.checkMark(v, r.Method, c.opts.Name, c.opts.Timings.hopValidity(), now)
	}
	return out, in
}

// takeParam removes every name=value from a raw query, keeping the rest
// byte for byte, and returns the last value.
func takeParam(raw, name string) (value, rest string) {
	var kept []string
	for _, p := range strings.Split(raw, "&") {
		if v, ok := strings.CutPrefix(p, name+"="); ok {
			value = v
			continue
		}
		kept = append(kept, p)
	}
	return value, strings.Join(kept, "&")
}

func (c *Cluster) trusted(r *http.Request) bool {
	return c.opts.TrustedProxy != nil && c.opts.TrustedProxy(hostOnly(r.RemoteAddr))
}

func (c *Cluster) clientIP(r *http.Request) string {
	if c.opts.ClientIP != nil {
		return c.opts.ClientIP(r)
	}
	return hostOnly(r.RemoteAddr)
}

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// route applies the policy to a covered request. It reserves a local slot
// first, so concurrent arrivals see each other in the in-flight count.
func (c *Cluster) route(w http.ResponseWriter, r *http.Request, next http.Handler) {
	t := c.tune.Load() // one snapshot per request, whatever a reload does meanwhile
	n := c.inflight.Add(1)
	target := c.choose(t, r, n-1, nil)
	if target == nil {
		c.setSticky(w, r, c.opts.Name)
		c.serveLocal(w, r, next, Route{Kind: Local}, true)
		return
	}
	c.inflight.Add(-1)
	if t.redirect {
		c.redirect(w, r, target)
		return
	}
	c.forward(t, w, r, next, target)
}

// choose returns the peer to send r to under t, or nil for this node.
// inflight is this node's count without r; peers in skip (which failed r)
// are left out.
func (c *Cluster) choose(t *tuning, r *http.Request, inflight int64, skip []*member) *member {
	site := c.siteOf(r) // only peers with this node's hash of r's site (drift.go)
	if t.set.Sticky {
		if name, ok := c.stickyNode(r); ok {
			if name == c.opts.Name && !c.draining.Load() {
				return nil
			}
			if m := c.peer(name); m != nil && c.usable(m, time.Now().UnixNano(), skip, site) {
				return m
			}
		}
	}
	key := ""
	if _, ok := t.policy.(ipHash); ok {
		key = c.clientIP(r)
	}
	return c.pick(t, site, key, inflight, skip)
}

// usable: m may take a request of site now (skip: it failed this one).
func (c *Cluster) usable(m *member, now int64, skip []*member, site siteFilter) bool {
	return m.available(now, c.opts.Timings.staleAfter()) && !contains(skip, m) && m.agrees(site)
}

// pick applies t's policy over the usable peers and this node, for a
// request of site from the client address key (read by ip_hash only):
// the peer, or nil for this node. choose (the full chain) and Pick (a
// fast path) share it.
func (c *Cluster) pick(t *tuning, site siteFilter, key string, inflight int64, skip []*member) *member {
	now := time.Now().UnixNano()
	peers := *c.peers.Load()
	capacity := int64(t.capacity)
	ch := choice{
		self:     cand{name: c.opts.Name, load: float64(inflight) / float64(capacity), self: true, idx: -1},
		selfOK:   !c.draining.Load(),
		inflight: inflight,
		capacity: capacity,
		key:      key,
		rnd:      randN,
	}
	var buf [16]cand
	ch.peers = buf[:0]
	for i, m := range peers {
		if c.usable(m, now, skip, site) {
			ch.peers = append(ch.peers, cand{name: m.name, load: m.load(), idx: i})
		}
	}
	p := t.policy.pick(&ch)
	if p.self || p.idx < 0 {
		return nil
	}
	return peers[p.idx]
}

func contains(list []*member, m *member) bool {
	for _, x := range list {
		if x == m {
			return true
		}
	}
	return false
}

// serveLocal runs next as local work; reserved says route already counted
// the request in inflight.
func (c *Cluster) serveLocal(w http.ResponseWriter, r *http.Request, next http.Handler, rt Route, reserved bool) {
	if !reserved {
		c.inflight.Add(1)
	}
	c.served.Add(1)
	c.kickLoad()
	defer func() {
		c.inflight.Add(-1)
		c.kickLoad()
	}()
	c.observe(r, rt)
	next.ServeHTTP(w, r)
}

func (c *Cluster) observe(r *http.Request, rt Route) {
	if c.opts.Observe != nil {
		c.opts.Observe(r, rt)
	}
}

func (c *Cluster) errorPage(w http.ResponseWriter, r *http.Request, status int) {
	if c.opts.ErrorPage != nil {
		c.opts.ErrorPage(w, r, status)
		return
	}
	http.Error(w, http.StatusText(status), status)
}

// redirect answers 307 to the peer's public URL with a signed marker, so
// the peer serves the repeated request whatever its load.
func (c *Cluster) redirect(w http.ResponseWriter, r *http.Request, m *member) {
	u := m.pubURL.Load()
	q := r.URL.RawQuery
	if q != "" {
		q += "&"
	}
	q += markerParam + "=" + c.keys.markValue(r.Method, m.name, time.Now())
	loc := strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/") + r.URL.EscapedPath() + "?" + q
	c.setSticky(w, r, m.name)
	w.Header().Set("Location", loc)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTemporaryRedirect)
	c.observe(r, Route{Kind: Redirected, Peer: m.name})
}

// stickyNode returns the node named by a valid affinity cookie.
func (c *Cluster) stickyNode(r *http.Request) (string, bool) {
	ck, err := r.Cookie(stickyCookie)
	if err != nil {
		return "", false
	}
	return c.keys.checkSticky(ck.Value)
}

// stickyCookieFor returns the Set-Cookie value that moves r's client to
// node, or "" when sticky is off or the client is there already. It reads
// the setting afresh: at a reload, one cookie more or less is harmless.
func (c *Cluster) stickyCookieFor(r *http.Request, node string) string {
	if !c.tune.Load().set.Sticky {
		return ""
	}
	if cur, ok := c.stickyNode(r); ok && cur == node {
		return ""
	}
	ck := &http.Cookie{
		Name:     stickyCookie,
		Value:    c.keys.stickyValue(node),
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	}
	return ck.String()
}

func (c *Cluster) setSticky(w http.ResponseWriter, r *http.Request, node string) {
	if v := c.stickyCookieFor(r, node); v != "" {
		w.Header().Add("Set-Cookie", v)
	}
}

// loadWriter adds this node's signed load to the response of a request a
// peer proxied here, so that peer's view of us is fresh after every reply.
type loadWriter struct {
	http.ResponseWriter
	c    *Cluster
	done bool
}

func (w *loadWriter) WriteHeader(code int) {
	if !w.done && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.done = true
		w.Header().Set(loadHeader, w.c.keys.loadValue(w.c.report(), time.Now()))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *loadWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps sendfile for static files served to a peer.
func (w *loadWriter) ReadFrom(src io.Reader) (int64, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return io.Copy(w.ResponseWriter, src)
}

func (w *loadWriter) Flush() {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *loadWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *loadWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
