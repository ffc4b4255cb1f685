package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"shoal/handlers/books"
	"shoal/internal/forward"
)

// newPool is the lean path's keep-alive pool to t, dialing as the
// ReverseProxy's transport does: TCP or the unix socket, then TLS for an
// https:// target.
func (u *Upstream) newPool(t *target, ht *httpTarget) *forward.Pool {
	d := &net.Dialer{Timeout: u.opts.connectTimeout(), KeepAlive: ht.keepAlive}
	network, addr := t.Network, t.Address
	var tlsConf *tls.Config
	if t.TLS {
		tlsConf = u.opts.TLS.Clone()
		if tlsConf == nil {
			tlsConf = &tls.Config{}
		}
		if tlsConf.ServerName == "" {
			tlsConf.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tlsConf.NextProtos = []string{"http/1.1"}
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, u.opts.connectTimeout())
		defer cancel()
		c, err := d.DialContext(ctx, network, addr)
		if err != nil || tlsConf == nil {
			return c, err
		}
		tc := tls.Client(c, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
	return forward.NewPool(forward.PoolOptions{Dial: dial, MaxIdle: u.opts.maxIdle(), IdleTimeout: idleTimeout})
}

// forwardDrop are the client's fields never sent on (besides hop-by-hop
// ones): the untrusted ones replaced by this side's, X-Request-ID when
// this node sets it (withID), and those the upstream's headers set or
// remove.
func (u *Upstream) forwardDrop(withID bool) map[string]bool {
	drop := map[string]bool{"X-Request-Id": withID}
	for _, k := range untrusted {
		drop[k] = true
	}
	for k := range u.opts.Headers {
		drop[http.CanonicalHeaderKey(strings.TrimPrefix(k, "-"))] = true
	}
	return drop
}

// forwardExtra are the configured headers set on every request.
func (u *Upstream) forwardExtra() []forward.Field {
	var extra []forward.Field
	for k, v := range u.opts.Headers {
		if !strings.HasPrefix(k, "-") {
			extra = append(extra, forward.Field{Name: http.CanonicalHeaderKey(k), Value: v})
		}
	}
	return extra
}

// Inbound is a request as a server's own HTTP/1.1 path parsed it, for
// Relay: a GET or HEAD without a body.
type Inbound struct {
	// Method is GET or HEAD; Target the request-target as sent ("/p?q");
	// Host the client's Host.
	Method, Target, Host string
	// Lines is the header block as the client sent it.
	Lines string
	// ClientIP is the client's address (behind trusted proxies, the one
	// they name): X-Forwarded-For, and ip_hash's key.
	ClientIP string
	// TLS: the client came over TLS (X-Forwarded-Proto: https).
	TLS bool
	// RequestID is this server's ID of the request, sent as X-Request-ID.
	// "": the client's passes.
	RequestID string
	// Arrived is when the request came (the server's books read the
	// clock): the first pick and the pool take it instead of reading it
	// again. Zero: now.
	Arrived time.Time

	// The request to a target and the sink of its answer, made here so
	// that an Inbound a connection keeps makes Relay allocate neither.
	req   forward.Request
	extra [12]forward.Field
	sink  locationSink
}

// leanIn is what the lean path needs of a request, from either entry.
type leanIn struct {
	method, target, host, clientIP, requestID string
	tls                                       bool
}

// request is the request the lean path sends to ht for in: the client's
// fields pass (Header or Lines, set by the caller) but for the dropped
// ones; X-Forwarded-*, Via, the request's ID and the configured headers
// are added. The first three of extra's fields are X-Forwarded-For,
// -Proto and -Host.
func (ht *httpTarget) request(u *Upstream, in *leanIn, extra []forward.Field) forward.Request {
	proto := "http"
	if in.tls {
		proto = "https"
	}
	extra = append(extra, forward.Field{Name: "X-Forwarded-For", Value: in.clientIP},
		forward.Field{Name: "X-Forwarded-Proto", Value: proto},
		forward.Field{Name: "X-Forwarded-Host", Value: in.host},
		forward.Field{Name: "Via", Value: u.via})
	drop := ht.dropNoID
	if in.requestID != "" {
		drop = ht.dropID
		extra = append(extra, forward.Field{Name: "X-Request-Id", Value: in.requestID})
	}
	host := ht.base.Host
	if ht.clientHost && in.host != "" {
		host = in.host
	}
	return forward.Request{Method: in.method, Target: in.target, Host: host, Drop: drop, DropPrefix: "X-Shoal-",
		Extra: append(extra, ht.extra...), HeaderTimeout: u.opts.timeout()}
}

// serveLean proxies r through the lean forwarder: the same request as
// rewrite makes for ReverseProxy, the same answer as it gives. A non-nil
// error means nothing was written and another target may be tried.
func (ht *httpTarget) serveLean(u *Upstream, w http.ResponseWriter, r *http.Request) error {
	in := leanIn{method: r.Method, target: r.URL.RequestURI(), host: r.Host, clientIP: books.ClientIP(r), tls: r.TLS != nil}
	if p := u.opts.StripPrefix; p != "" {
		out := *r.URL
		stripPrefix(&out, strings.TrimSuffix(p, "/"))
		in.target = out.RequestURI()
	}
	if u.opts.RequestID != nil {
		in.requestID = u.opts.RequestID(r)
	}
	var extra [12]forward.Field
	req := ht.request(u, &in, extra[:0])
	req.Header = r.Header
	req.Body, req.ContentLength = forward.Body(r)
	sink := locationSink{Sink: &forward.ResponseWriterSink{W: w}, ht: ht, proto: req.Extra[1].Value, host: req.Extra[2].Value}
	err := ht.pool.Forward(r.Context(), &req, &sink)
	if err == nil || errors.Is(err, forward.ErrNoResponse) {
		return err
	}
	// Cut after the head went out: abort the client's response rather
	// than let it look complete, as ReverseProxy does.
	if r.Context().Value(http.ServerContextKey) != nil {
		panic(http.ErrAbortHandler)
	}
	u.log.Warn("upstream: response cut", "uri", r.RequestURI, "error", err)
	return nil
}

// Relayable reports whether Relay can take the upstream's requests: all
// its targets speak HTTP (FastCGI is ServeHTTP's alone).
func (h *Handler) Relayable() bool {
	for _, t := range h.u.targets {
		if t.http == nil {
			return false
		}
	}
	return true
}

// errNotRelayed: Relay leaves the request to ServeHTTP.
var errNotRelayed = errors.New("upstream: not for the relay")

// Relay serves in through the lean path, the answer written to dst, for
// a server's own HTTP/1.1 path. Targets are picked, retried, counted and
// marked as by ServeHTTP. It reports whether anything reached dst; when
// not, the error says why and the caller serves the request the full way
// (ServeHTTP), which answers with the site's error page (502: a target
// that failed here is skipped there) or, for what Relay does not take (a
// FastCGI target, a loop, a strip_prefix over an escaped path), as
// usual. An error with wrote set means the response was cut: close the
// connection.
func (h *Handler) Relay(ctx context.Context, in *Inbound, dst forward.Sink) (wrote bool, err error) {
	u := h.u
	if in.Method != http.MethodGet && in.Method != http.MethodHead || strings.Contains(in.Lines, u.via) {
		return false, errNotRelayed
	}
	li := leanIn{method: in.Method, target: in.Target, host: in.Host, clientIP: in.ClientIP, requestID: in.RequestID, tls: in.TLS}
	if !u.relayTarget(&li) {
		return false, errNotRelayed
	}
	return u.relayOn(ctx, in.ClientIP, in.Arrived, func(t *target, now time.Time) (wrote, next bool, err error) {
		if t.fcgi != nil {
			return false, false, errNotRelayed
		}
		in.req = t.http.request(u, &li, in.extra[:0])
		req := &in.req
		req.Lines, req.Now = in.Lines, now
		in.sink = locationSink{Sink: dst, ht: t.http, proto: req.Extra[1].Value, host: req.Extra[2].Value}
		t.inflight.Add(1)
		err = t.http.pool.Forward(ctx, req, &in.sink)
		t.inflight.Add(-1)
		if err == nil || !errors.Is(err, forward.ErrNoResponse) {
			return true, false, err
		}
		u.markFailed(t, err)
		return false, true, err
	})
}

// relayOn tries the targets the policy picks for client, each once, up
// to 1 + retries of them, as ServeHTTP does: try serves the request on t
// and says whether it answered and whether another target may take it
// (nothing reached the client nor ran). It returns the answering try's
// result, or the last error when none answered (errNoTarget: none
// available).
func (u *Upstream) relayOn(ctx context.Context, client string, now time.Time, try func(t *target, now time.Time) (served, next bool, err error)) (bool, error) {
	var tried [4]*target
	done := tried[:0]
	lastErr := errNoTarget
	for i := range 1 + max(u.opts.Retries, 0) {
		if i > 0 || now.IsZero() {
			now = time.Now() // a retry comes after the failed try's wait
		}
		t := u.pick(client, done, now.UnixNano())
		if t == nil {
			break
		}
		done = append(done, t)
		served, next, err := try(t, now)
		if !next || ctx.Err() != nil {
			return served, err
		}
		lastErr = err
	}
	return false, lastErr
}

// relayTarget maps li's raw target under strip_prefix; false when only
// the full path can (an escaped path, not origin-form).
func (u *Upstream) relayTarget(li *leanIn) bool {
	if !strings.HasPrefix(li.target, "/") {
		return false
	}
	p := strings.TrimSuffix(u.opts.StripPrefix, "/")
	if p == "" {
		return true
	}
	path, query, hasQuery := strings.Cut(li.target, "?")
	if strings.Contains(path, "%") {
		return false
	}
	rest, ok := strings.CutPrefix(path, p)
	if !ok || rest != "" && rest[0] != '/' {
		return true
	}
	if rest == "" {
		rest = "/"
	}
	if hasQuery {
		rest += "?" + query
	}
	li.target = rest
	return true
}

// locationSink points a redirect to the target's own address back at the
// address the client used, then passes the response on.
type locationSink struct {
	forward.Sink
	ht          *httpTarget
	proto, host string
}

func (s *locationSink) WriteHead(h *forward.Head) error {
	for i := range h.Fields {
		f := &h.Fields[i]
		if len(f.Name) == len("Location") && !h.Hop(i) && strings.EqualFold(f.Name, "Location") {
			if fixed, ok := s.ht.fixLocation(f.Value, s.proto, s.host); ok {
				f.Value = fixed
			}
		}
	}
	return s.Sink.WriteHead(h)
}

// fixLocation maps a redirect to the target's own address onto the
// address the client used.
func (ht *httpTarget) fixLocation(loc, proto, host string) (string, bool) {
	l, err := url.Parse(loc)
	if err != nil || l.Host == "" || !strings.EqualFold(l.Host, ht.base.Host) && !sameDefaultPort(l, ht.base) {
		return "", false
	}
	l.Scheme, l.Host = proto, host
	return l.String(), true
}
