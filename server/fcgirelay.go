package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"

	"shoal/handlers/books"
	"shoal/handlers/fastcgi"
	"shoal/internal/http1"
)

// fcgiBooks is what the HTTP/1.1 fast path keeps per connection for the
// FastCGI relay, reused from one request to the next.
type fcgiBooks struct {
	in   fastcgi.Inbound
	wire wireWriter
	// head is the request being relayed (valid during Relay), for
	// fullRequest.
	head *http1.Head
	c    *http1.Conn
}

// relayFastCGI relays a request for an upstream of FastCGI targets
// (upstreamRelay.fastcgi): the FastCGI handler builds its params from the
// header block as it builds them from an http.Request on the full chain,
// and answers on a wireWriter over the connection, which writes what
// net/http would. What the relay leaves (every target down or refusing, a
// loop, an unclean path) goes to net/http unread, with nothing sent to
// php-fpm. The books are written once the answer is out, as the HTTP
// upstream relay's.
func (r *upstreamRelay) relayFastCGI(c *http1.Conn, h *http1.Head, closing bool) (wrote, keep bool) {
	st, b := r.site, connBooks(c)
	rq := &b.rq
	b.openRelay(st, c, h, books.KindUpstream, c, closing)
	fb := &b.fcgi
	fb.head, fb.c = h, c
	path, query, _ := strings.Cut(h.Target, "?")
	in := &fb.in
	in.Meta.Method, in.Meta.Proto, in.Meta.URI, in.Meta.Query = rq.Method, "HTTP/1.1", h.Target, query
	in.Meta.Host, in.Meta.Local, in.Meta.RemoteAddr, in.Meta.ClientIP = h.Host, c.Local(), c.Remote(), rq.ClientIP
	in.Meta.TLS, in.Meta.Lines, in.Meta.RequestID = c.TLS(), h.Lines, rq.RequestID
	in.Path = path
	if in.Request == nil {
		in.Request = b.fullRequest
	}
	w := &fb.wire
	w.reset(c, b.listener, h.IsHEAD, closing)
	served, err := r.serveFastCGI(in, w)
	fb.head = nil
	if !served {
		return false, false
	}
	keep = false
	switch {
	case errors.Is(err, errPanicked):
		if w.status == 0 {
			w.status = http.StatusInternalServerError // as finishHTTP books it
		}
	case err == nil:
		keep, err = w.end()
	}
	if err != nil && !errors.Is(err, errPanicked) {
		st.log.Warn("fastcgi: response cut short", "uri", rq.URI, "remote", rq.ClientIP, "error", err)
	}
	rq.Status, rq.Bytes = w.statusOrOK(), w.written
	rq.begin(st, b.cluster)
	rq.finish()
	return true, keep && err == nil
}

// errPanicked: the handler panicked (a local redirect's dispatch, whose
// static files abort a response cut short with http.ErrAbortHandler);
// the connection is closed, as net/http does.
var errPanicked = errors.New("fastcgi relay: handler panicked")

// serveFastCGI runs the upstream's relay, a panic turned into
// errPanicked, logged as net/http logs one (http.ErrAbortHandler quietly).
func (r *upstreamRelay) serveFastCGI(in *fastcgi.Inbound, w *wireWriter) (served bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				r.site.log.Error("fastcgi relay: panic serving a request", "uri", in.Meta.URI,
					"remote", in.Meta.ClientIP, "panic", p, "stack", string(debug.Stack()))
			}
			served, err = true, errPanicked
		}
	}()
	return r.h.RelayFastCGI(context.Background(), in, w)
}

// fullRequest is the request as net/http would have handed it to the
// site, its books attached: for the relay's rare answers that the site's
// own code gives (a local redirect through dispatch, an error page). It
// parses the header block as net/http does, so the two agree.
func (b *fastBooks) fullRequest() *http.Request {
	fb, rq := &b.fcgi, &b.rq
	h := fb.head
	raw := rq.Method + " " + h.Target + " HTTP/1.1\r\n" + string(h.Lines)
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil { // ParseHead checked it: cannot happen; a bare request still serves
		r, _ = http.NewRequest(rq.Method, h.Target, http.NoBody)
		r.Host, r.RequestURI = h.Host, h.Target
	}
	r.RemoteAddr = fb.c.Remote()
	if fb.c.TLS() {
		r.TLS = &tls.ConnectionState{HandshakeComplete: true}
	}
	r.Header.Set("X-Request-Id", rq.RequestID)
	ctx := context.Background()
	if ap, err := netip.ParseAddrPort(fb.c.Local()); err == nil {
		ctx = context.WithValue(ctx, http.LocalAddrContextKey, net.TCPAddrFromAddrPort(ap))
	}
	r = r.WithContext(ctx)
	return books.WithInfo(r, &rq.Info)
}
