package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"shoal/handlers"
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
// this node sets it, and those the upstream's headers set or remove.
func (u *Upstream) forwardDrop() map[string]bool {
	drop := map[string]bool{"Via": true, "X-Request-Id": u.opts.RequestID != nil}
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

// serveLean proxies r through the lean forwarder: the same request as
// rewrite makes for ReverseProxy, the same answer as it gives. A non-nil
// error means nothing was written and another target may be tried.
func (ht *httpTarget) serveLean(u *Upstream, w http.ResponseWriter, r *http.Request) error {
	var extra [12]forward.Field
	fields := ht.requestFields(u, r, extra[:0])
	target := r.URL.RequestURI()
	if p := u.opts.StripPrefix; p != "" {
		out := *r.URL
		stripPrefix(&out, strings.TrimSuffix(p, "/"))
		target = out.RequestURI()
	}
	host := ht.base.Host
	if ht.clientHost && r.Host != "" {
		host = r.Host
	}
	req := forward.Request{Method: r.Method, Target: target, Host: host, Header: r.Header,
		Drop: ht.drop, DropPrefix: "X-Shoal-", Extra: fields, HeaderTimeout: u.opts.timeout()}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		req.Body, req.ContentLength = r.Body, r.ContentLength
	}
	sink := leanSink{w: w, ht: ht, proto: fields[1].Value, host: fields[2].Value}
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

// requestFields are the fields this side adds: X-Forwarded-For, -Proto,
// -Host first (serveLean reads the last two back), then Via, the
// request's ID, the configured headers and the client's Via and
// X-Request-ID when they pass.
func (ht *httpTarget) requestFields(u *Upstream, r *http.Request, f []forward.Field) []forward.Field {
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	f = append(f, forward.Field{Name: "X-Forwarded-For", Value: handlers.ClientIP(r)},
		forward.Field{Name: "X-Forwarded-Proto", Value: proto},
		forward.Field{Name: "X-Forwarded-Host", Value: r.Host})
	for _, v := range r.Header["Via"] {
		f = append(f, forward.Field{Name: "Via", Value: v})
	}
	f = append(f, forward.Field{Name: "Via", Value: u.via})
	if u.opts.RequestID != nil {
		if id := u.opts.RequestID(r); id != "" {
			f = append(f, forward.Field{Name: "X-Request-Id", Value: id})
		} else {
			for _, v := range r.Header["X-Request-Id"] {
				f = append(f, forward.Field{Name: "X-Request-Id", Value: v})
			}
		}
	}
	return append(f, ht.extra...)
}

// leanSink writes the target's response to the client, its Location
// pointed back at the address the client used.
type leanSink struct {
	w           http.ResponseWriter
	ht          *httpTarget
	proto, host string
	rc          *http.ResponseController
}

func (s *leanSink) WriteHead(h *forward.Head) error {
	hdr := s.w.Header()
	forward.CopyHeader(hdr, h)
	if loc := hdr["Location"]; len(loc) > 0 {
		if fixed, ok := s.ht.fixLocation(loc[0], s.proto, s.host); ok {
			hdr.Set("Location", fixed)
		}
	}
	s.w.WriteHeader(h.Status)
	return nil
}

func (s *leanSink) Write(p []byte) (int, error) { return s.w.Write(p) }

// End has nothing to finish: net/http frames the body.
func (s *leanSink) End() error { return nil }

func (s *leanSink) Flush() error {
	if s.rc == nil {
		s.rc = http.NewResponseController(s.w)
	}
	return s.rc.Flush()
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
