package upstream

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"shoal/handlers/books"
	"shoal/internal/forward"
)

// httpTarget is an HTTP application's reverse proxy and keep-alive pool.
type httpTarget struct {
	// pool carries what forward.Lean accepts; transport and proxy the
	// rest (upgrades) and the health checks.
	pool      *forward.Pool
	transport *http.Transport
	proxy     *httputil.ReverseProxy
	// dropID, dropNoID and extra: the client fields not passed when this
	// node sets the request's ID and when not, the configured ones added
	// (forwardDrop, forwardExtra).
	dropID, dropNoID map[string]bool
	extra            []forward.Field
	keepAlive        time.Duration
	base             *url.URL // scheme and host the request goes to
	// clientHost: a unix socket has no host of its own, so the client's
	// Host is passed; a TCP target gets its own address, as nginx does.
	clientHost bool
}

// idleTimeout is how long a kept connection may sit unused: below the
// keep-alive timeout of common application servers (nginx 75s, Go 90s...
// Node's 5s is the exception a stale retry covers).
const idleTimeout = 60 * time.Second

var discardLogger = slog.New(slog.DiscardHandler)

func (u *Upstream) newHTTP(t *target) *httpTarget {
	ht := &httpTarget{base: &url.URL{Scheme: "http", Host: t.Address}, keepAlive: 30 * time.Second,
		dropID: u.forwardDrop(true), dropNoID: u.forwardDrop(false), extra: u.forwardExtra()}
	if t.TLS {
		ht.base.Scheme = "https"
	}
	dialer := &net.Dialer{Timeout: u.opts.connectTimeout(), KeepAlive: 30 * time.Second}
	dial := dialer.DialContext
	if t.Network == "unix" {
		ht.base.Host, ht.clientHost = "localhost", true
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", t.Address)
		}
	}
	ht.transport = &http.Transport{
		DialContext:           dial,
		TLSClientConfig:       u.opts.TLS,
		TLSHandshakeTimeout:   u.opts.connectTimeout(),
		ResponseHeaderTimeout: u.opts.timeout(),
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          0, // no total cap: per target only
		MaxIdleConnsPerHost:   u.opts.maxIdle(),
		IdleConnTimeout:       idleTimeout,
		// The client's Accept-Encoding goes through as sent: the proxy
		// must not ask for gzip and unpack it in between.
		DisableCompression: true,
		WriteBufferSize:    32 << 10,
		ReadBufferSize:     32 << 10,
	}
	ht.proxy = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { u.rewrite(ht, pr) },
		Transport:      ht.transport,
		ModifyResponse: func(resp *http.Response) error { ht.rewriteLocation(resp); return nil },
		ErrorHandler:   recordError,
		BufferPool:     u.buffers,
		ErrorLog:       slog.NewLogLogger(u.log.Handler(), slog.LevelWarn),
		// Zero: ReverseProxy flushes every write of a response without a
		// length or of type text/event-stream (server-sent events reach
		// the client as they come), and lets net/http buffer the rest, so
		// a small response leaves in one write, not a flush per copy.
		FlushInterval: 0,
	}
	ht.pool = u.newPool(t, ht)
	return ht
}

// serve proxies r to t; a non-nil error means nothing was written and
// another target may be tried.
func (ht *httpTarget) serve(u *Upstream, t *target, w http.ResponseWriter, r *http.Request) error {
	t.inflight.Add(1)
	defer t.inflight.Add(-1)
	if forward.Lean(r) {
		return ht.serveLean(u, w, r)
	}
	aw := &attemptWriter{ResponseWriter: w}
	ht.proxy.ServeHTTP(aw, r)
	return aw.err
}

// attemptWriter carries the error of an attempt that wrote nothing out of
// ReverseProxy's ErrorHandler, so the caller can retry or answer with the
// site's page.
type attemptWriter struct {
	http.ResponseWriter
	err error
}

// Unwrap lets ReverseProxy reach Flush and Hijack (for upgrades).
func (a *attemptWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }

func recordError(w http.ResponseWriter, _ *http.Request, err error) {
	if aw, ok := w.(*attemptWriter); ok {
		aw.err = err
		return
	}
	w.WriteHeader(http.StatusBadGateway)
}

// untrusted request headers: set by the client or by a proxy in front,
// never passed on (the fresh X-Forwarded-* replace them).
var untrusted = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-Ip"}

// rewrite is the one hook the request passes: ReverseProxy has already
// removed hop-by-hop headers; untrusted ones go, the path is mapped, then
// the trusted headers are set.
func (u *Upstream) rewrite(ht *httpTarget, pr *httputil.ProxyRequest) {
	out := pr.Out
	for _, k := range untrusted {
		out.Header.Del(k)
	}
	for k := range out.Header {
		if strings.HasPrefix(k, "X-Shoal-") {
			delete(out.Header, k)
		}
	}
	if p := u.opts.StripPrefix; p != "" {
		stripPrefix(out.URL, strings.TrimSuffix(p, "/"))
	}
	pr.SetURL(ht.base)
	if ht.clientHost {
		out.Host = pr.In.Host
	}
	pr.SetXForwarded()
	// SetXForwarded takes the connection's peer; behind trusted proxies
	// the client is the one Begin worked out.
	out.Header.Set("X-Forwarded-For", books.ClientIP(pr.In))
	out.Header.Add("Via", u.via)
	if u.opts.RequestID != nil {
		if id := u.opts.RequestID(pr.In); id != "" {
			out.Header.Set("X-Request-ID", id)
		}
	}
	for k, v := range u.opts.Headers {
		if name, ok := strings.CutPrefix(k, "-"); ok {
			out.Header.Del(name)
		} else {
			out.Header.Set(k, v)
		}
	}
}

// stripPrefix removes p from the path when it ends at a segment: "/api"
// maps "/api/x" to "/x" and "/api" to "/", and leaves "/apix" alone.
func stripPrefix(u *url.URL, p string) {
	rest, ok := strings.CutPrefix(u.Path, p)
	if !ok || (rest != "" && rest[0] != '/') {
		return
	}
	if rest == "" {
		rest = "/"
	}
	u.Path = rest
	if raw, ok := strings.CutPrefix(u.RawPath, p); ok && (raw == "" || raw[0] == '/') {
		u.RawPath = raw
	} else {
		u.RawPath = ""
	}
}

// rewriteLocation turns a redirect to the target's own address into one
// to the address the client used.
func (ht *httpTarget) rewriteLocation(resp *http.Response) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return
	}
	l, err := url.Parse(loc)
	if err != nil || l.Host == "" || !strings.EqualFold(l.Host, ht.base.Host) && !sameDefaultPort(l, ht.base) {
		return
	}
	out := resp.Request
	l.Scheme = out.Header.Get("X-Forwarded-Proto")
	l.Host = out.Header.Get("X-Forwarded-Host")
	resp.Header.Set("Location", l.String())
}

// sameDefaultPort matches "http://h/" against target h:80.
func sameDefaultPort(l, base *url.URL) bool {
	host, port, err := net.SplitHostPort(base.Host)
	if err != nil || !strings.EqualFold(l.Hostname(), host) || l.Port() != "" {
		return false
	}
	return l.Scheme == "http" && port == "80" || l.Scheme == "https" && port == "443"
}

// bufferPool gives ReverseProxy 32 KiB copy buffers, reused across its
// targets' requests.
type bufferPool struct{ p *sync.Pool }

func newBufferPool() bufferPool {
	return bufferPool{&sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b bufferPool) Get() []byte    { return *(b.p.Get().(*[]byte)) }
func (b bufferPool) Put(buf []byte) { b.p.Put(&buf) }
