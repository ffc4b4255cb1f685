package cluster

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"shoal/internal/forward"
)

// attempt is one try of one request at one peer; the proxy hooks find it
// in the request context and record the outcome in it.
type attempt struct {
	peer   *member
	scheme string // how the client reached us, for Location rewriting
	host   string
	cookie string // Set-Cookie to add (sticky), or ""
	err    error  // the transport failed before any response was written
	// header fires at peer_timeout unless the response header came first.
	header *time.Timer
}

type attemptKey struct{}

func attemptOf(r *http.Request) *attempt {
	a, _ := r.Context().Value(attemptKey{}).(*attempt)
	return a
}

// newTransport keeps a deep idle pool per peer: with Go's default of two
// idle connections per host most proxied requests under load would open a
// new connection. No environment proxy ever sits between peers. With peer
// TLS, every connection is a peer TLS one whatever the URL's scheme (the
// dialer hands net/http a finished TLS connection for http URLs too).
func newTransport(dial time.Duration, peer *peerTLS) *http.Transport {
	d := &net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       60 * time.Second, // below a peer's idle_timeout
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		// The client's Accept-Encoding goes through as it came: without
		// this, a request without one would fetch gzip from the peer and be
		// decompressed here, losing Content-Length and CPU.
		DisableCompression: true,
	}
	if peer != nil {
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return peer.dial(ctx, d, network, addr)
		}
		t.DialTLSContext = t.DialContext
	}
	return t
}

func (c *Cluster) newProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        c.rewrite,
		Transport:      c.transport,
		ModifyResponse: c.modifyResponse,
		ErrorHandler:   c.proxyError,
		BufferPool:     &bufferPool{},
		ErrorLog:       slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	}
}

// forward proxies r to target, retrying an idempotent request that has no
// body on other nodes (this one included) when a peer fails to answer.
func (c *Cluster) forward(t *tuning, w http.ResponseWriter, r *http.Request, next http.Handler, target *member) {
	var tried []*member
	for retries := 0; ; retries++ {
		sent := time.Now()
		err := c.proxyTo(w, r, target)
		if err == nil {
			c.observe(r, Route{Kind: Proxied, Peer: target.name, Retries: retries, FailedPeers: names(tried)})
			return
		}
		if r.Context().Err() != nil {
			return // the client left; nobody to answer
		}
		target.markSick(c.opts.Timings.unhealthy(), sent)
		tried = append(tried, target)
		if retries >= t.set.Retries || !replayable(r) {
			c.log.Warn("peer failed", "peer", target.name, "method", r.Method, "path", r.URL.Path, "err", err)
			c.observe(r, Route{Kind: Proxied, Peer: target.name, Retries: retries, Failed: true, FailedPeers: names(tried)})
			c.errorPage(w, r, http.StatusBadGateway)
			return
		}
		c.log.Info("peer failed; retrying elsewhere", "peer", target.name, "method", r.Method, "path", r.URL.Path, "err", err)
		n := c.inflight.Add(1)
		target = c.choose(t, r, n-1, tried)
		if target == nil {
			c.setSticky(w, r, c.opts.Name)
			c.serveLocal(w, r, next, Route{Kind: Local, Retries: retries + 1, FailedPeers: names(tried)}, true)
			return
		}
		c.inflight.Add(-1)
	}
}

// names lists members' names; nil for none, so the happy path allocates
// nothing.
func names(ms []*member) []string {
	if len(ms) == 0 {
		return nil
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.name
	}
	return out
}

// replayable reports whether r may run twice: an idempotent method and no
// body that a failed attempt could have consumed.
func replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 && len(r.TransferEncoding) == 0
}

// proxyTo makes one attempt; an error means nothing was written to w. The
// attempt is cancelled when no response header comes within peer_timeout
// or the peer turns suspect or dead meanwhile.
func (c *Cluster) proxyTo(w http.ResponseWriter, r *http.Request, m *member) error {
	a := &attempt{peer: m, scheme: c.clientScheme(r), host: r.Host, cookie: c.stickyCookieFor(r, m.name)}
	if a.host == "" {
		a.host = m.peerURL.Load().Host
	}
	if pool := c.hopPool(r, m); pool != nil {
		return c.proxyLean(w, r, a, pool)
	}
	ctx, cancel := context.WithCancelCause(context.WithValue(r.Context(), attemptKey{}, a))
	defer cancel(nil)
	a.header = time.AfterFunc(c.opts.peerTimeout(), func() { cancel(errPeerTimeout) })
	defer a.header.Stop()
	life := m.liveCtx()
	stop := context.AfterFunc(life, func() { cancel(context.Cause(life)) })
	defer stop()
	m.sent.Add(1)
	defer m.done.Add(1)
	c.proxy.ServeHTTP(w, r.WithContext(ctx))
	if a.err == nil {
		m.markWell()
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && r.Context().Err() == nil {
		return cause // say why: the transport only knows it was cancelled
	}
	return a.err
}

// clientScheme is how the client reached this node (or the trusted proxy
// in front of it).
func (c *Cluster) clientScheme(r *http.Request) string {
	if c.trusted(r) {
		if v := r.Header.Get("X-Forwarded-Proto"); v == "https" || v == "http" {
			return v
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// rewrite is the one hook between the client's request and the peer's:
// ReverseProxy has already dropped hop-by-hop and X-Forwarded-* headers
// from Out; this sets what this node vouches for.
func (c *Cluster) rewrite(pr *httputil.ProxyRequest) {
	a := attemptOf(pr.In)
	u := a.peer.peerURL.Load()
	out := pr.Out
	out.URL.Scheme, out.URL.Host = u.Scheme, u.Host
	out.URL.Path, out.URL.RawPath = peerPath(u, out.URL)
	out.Host = pr.In.Host // the peer picks the same virtual host
	host := out.Host
	if host == "" {
		host = out.URL.Host // what Request.Write sends then
	}
	v := c.vouch(pr.In, a, host, out.URL.RequestURI())
	h := out.Header
	h.Set("X-Forwarded-For", v.xff)
	h.Set("X-Forwarded-Proto", a.scheme)
	h.Set("X-Forwarded-Host", a.host)
	h.Set("Via", v.via)
	h.Set(hopHeader, v.hop)
}

// peerPath is the request's path under the peer URL's path.
func peerPath(peer, in *url.URL) (path, rawPath string) {
	path, rawPath = in.Path, in.RawPath
	if p := strings.TrimSuffix(peer.Path, "/"); p != "" {
		path = p + path
		if rawPath != "" {
			rawPath = p + rawPath
		}
	}
	return path, rawPath
}

// vouched is what this node says of a request it proxies: the client's
// address (X-Forwarded-For), the hops it passed (Via), and the signed hop
// header binding method, host, target, both nodes and the client.
type vouched struct{ xff, via, hop string }

// vouch works out the vouched fields of in, sent to host with target;
// a.host becomes the X-Forwarded-Host a trusted proxy in front gave.
func (c *Cluster) vouch(in *http.Request, a *attempt, host, target string) vouched {
	f := hopFrom{method: in.Method, remote: in.RemoteAddr, client: c.clientIP(in),
		proto: strconv.Itoa(in.ProtoMajor) + "." + strconv.Itoa(in.ProtoMinor),
		via:   strings.Join(in.Header.Values("Via"), ", ")}
	if c.trusted(in) {
		f.xff = strings.Join(in.Header.Values("X-Forwarded-For"), ", ")
		if v := in.Header.Get("X-Forwarded-Host"); v != "" {
			a.host = v
		}
	}
	return c.vouchFrom(&f, a, host, target)
}

// hopFrom is what the hop vouches for, read from the client's request:
// its method and protocol version ("1.1"), the connection's address
// (host:port), the client's address (trusted proxies applied), and the
// X-Forwarded-For (only from a trusted proxy) and Via it came with ("":
// none).
type hopFrom struct {
	method, proto, remote, client string
	xff, via                      string
}

// vouchFrom is vouch for a request read as f.
func (c *Cluster) vouchFrom(f *hopFrom, a *attempt, host, target string) vouched {
	xff := f.client
	if f.xff != "" {
		xff = f.xff + ", " + hostOnly(f.remote)
	}
	via := f.proto + " " + c.opts.Name
	if f.via != "" {
		via = f.via + ", " + via
	}
	clientAddr := net.JoinHostPort(f.client, "0")
	if h, port, err := net.SplitHostPort(f.remote); err == nil && h == f.client {
		clientAddr = net.JoinHostPort(f.client, port)
	}
	return vouched{xff: xff, via: via,
		hop: c.keys.hopValue(f.method, host, target, a.peer.name, c.opts.Name, clientAddr, time.Now())}
}

// modifyResponse takes the peer's signed load, points a Location at the
// peer's internal address back at this node, and adds the affinity cookie.
func (c *Cluster) modifyResponse(res *http.Response) error {
	a := attemptOf(res.Request)
	if a == nil {
		return nil
	}
	if !a.header.Stop() {
		return errPeerTimeout // too late: the attempt is being cancelled
	}
	c.fixResponse(a, res.Header)
	return nil
}

// fixResponse takes the peer's signed load out of a response header,
// points a Location at the peer's internal address back at this node, and
// adds the affinity cookie.
func (c *Cluster) fixResponse(a *attempt, h http.Header) {
	if v := h.Get(loadHeader); v != "" {
		h.Del(loadHeader)
		c.takeLoad(a, v)
	}
	if loc := h.Get("Location"); loc != "" {
		if fixed, ok := rewriteLocation(loc, a.peer.peerURL.Load(), a.scheme, a.host); ok {
			h.Set("Location", fixed)
		}
	}
	if a.cookie != "" {
		h.Add("Set-Cookie", a.cookie)
	}
}

// fixHead is fixResponse for a response head passed on as received (a
// fast path's relay): the load fields are dropped, a Location rewritten.
// It adds no cookie: the relay runs only with sticky off.
func (c *Cluster) fixHead(a *attempt, h *forward.Head) {
	for i := range h.Fields {
		f := &h.Fields[i]
		switch {
		case h.Hop(i):
		case strings.EqualFold(f.Name, loadHeader):
			h.Drop(i)
			c.takeLoad(a, f.Value)
		case strings.EqualFold(f.Name, "Location"):
			if fixed, ok := rewriteLocation(f.Value, a.peer.peerURL.Load(), a.scheme, a.host); ok {
				f.Value = fixed
			}
		}
	}
}

// takeLoad applies the peer's signed load report v, when it checks out
// and is the peer's own.
func (c *Cluster) takeLoad(a *attempt, v string) {
	if l, ok := c.keys.checkLoad(v, c.opts.Timings.hopValidity(), time.Now()); ok && l.Name == a.peer.name {
		a.peer.applyReport(l)
	}
}

// rewriteLocation maps an absolute URL on the peer's internal address to
// the address the client used.
func rewriteLocation(loc string, peer *url.URL, scheme, host string) (string, bool) {
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() || !strings.EqualFold(u.Host, peer.Host) {
		return "", false
	}
	u.Scheme, u.Host = scheme, host
	if p := strings.TrimSuffix(peer.Path, "/"); p != "" {
		u.Path = strings.TrimPrefix(u.Path, p)
		u.RawPath = ""
	}
	return u.String(), true
}

// proxyError records the failure for forward, which decides between a
// retry and a 502; it writes nothing.
func (c *Cluster) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if a := attemptOf(r); a != nil {
		a.err = err
		return
	}
	c.errorPage(w, r, http.StatusBadGateway)
}

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
