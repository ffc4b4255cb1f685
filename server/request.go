package server

import (
	"context"
	"io"
	"net/http"
	"time"

	"golang.org/x/net/http2/hpack"

	"shoal/cluster"
	"shoal/handlers/books"
	"shoal/internal/http1"
)

// The request path, top to bottom (ARCHITECTURE.md draws it).
//
// A request enters one of three ways, and each opens and closes the same
// books, a request value, through begin and finish:
//
//	HTTP/1.1 fast  internal/http1's Front -> Node.fastRoute -> answerFast
//	               (a cached static file answered from the connection's
//	               goroutine, or a plain upstream request or cluster hop
//	               relayed from it; anything else is handed to net/http; over
//	               TLS after the http1 TLS front's handshake, with
//	               Node.fastRouteTLS)
//	HTTP/2 fast    internal/h2 -> Node.h2Fast -> Answer.Sent
//	               (the same, for a stream of an HTTP/2 connection)
//	full chain     net/http (HTTP/1.1 handed off), internal/h2's handler
//	               (HTTP/2) and quic-go (HTTP/3), all into
//	               cluster guard -> Node.serveHTTP(S) -> site.ServeHTTP
//
// Both fast paths decide in routeFast, one function: the site by Host,
// the cluster's word (a hop from a peer is checked here, the balance
// setting may want the request elsewhere), the site's routes
// (routesFor), then the cached file. Whatever they decline takes the full
// chain, which decides the same things in the same order: site.ServeHTTP
// opens the books, routesFor, the body limits, then site.balanced, where
// the cluster serves the request here, proxies it or redirects it
// (cluster.Serve), and site.route picks CGI, page or static file.

// request is one request's books, from its first byte to its last: what
// the access log writes (the Entry, whose Info the handlers fill in
// through the request's context), the metrics span, the cluster's count
// of local work, and what the site's rules decided. The HTTP/1.1 fast
// path keeps one in its connection's state and the HTTP/2 one in its
// answer, so the books cost them no allocation of their own; the full
// chain allocates one with its Recorder (fullBooks).
type request struct {
	books.Entry
	site *site
	span books.Span
	// cluster is set when begin counted the request as local work in the
	// cluster's load (the fast paths; cluster.Serve counts the full
	// chain's itself, around the site's dispatch).
	cluster *cluster.Cluster
	// hop: a peer proxied the request here, with a valid signature.
	hop bool
	// redirected: a script's local redirect of a request whose rates
	// were counted when it came in (internalRedirect).
	redirected bool
	// route is what the site's routes decided; nil: none touched it.
	route *routeDecision
}

// begin opens the books: the request is in flight from now (metrics) and,
// when c is given, counted in the cluster's load as local work. The
// fields describing the request are filled before (Entry.Read, readFast).
func (rq *request) begin(st *site, c *cluster.Cluster) {
	rq.site = st
	rq.Site = st.label
	if rq.Started.IsZero() {
		rq.Started = time.Now()
	}
	rq.span = st.metrics.StartAt(st.label, rq.Started)
	if c != nil {
		c.ServingLocal()
		rq.cluster = c
	}
}

// finish closes the books with the status and bytes sent: the access-log
// line, the cluster's load, then the metrics, so whoever sees a request
// in the metrics finds the rest of its books written.
func (rq *request) finish() {
	now := time.Now()
	rq.Duration = now.Sub(rq.Started)
	if a := rq.site.access; a != nil {
		a.Log(&rq.Entry)
	}
	if rq.cluster != nil {
		rq.cluster.DoneLocal()
		rq.cluster = nil
	}
	rq.span.EndAt(&rq.Info, rq.Status, rq.Bytes, now)
}

// ServeHTTP is the full chain of a site, for every request net/http,
// internal/h2's handler or quic-go serves: books, routes, body limits,
// then the cluster and the site's dispatch.
func (st *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rq, ok := r.Context().Value(booksKey{}).(*request); ok {
		st.serveInside(rq, w, r) // the listener opened the books (redirect_http)
		return
	}
	st.serveBooked(w, r, nil)
}

// booksKey marks a request whose books a listener opened before the site
// chain: its value is the *request.
type booksKey struct{}

// serveBooked opens the books of r and serves it with first, when given
// (the http listener's redirect_http, which hands what it does not
// redirect to the site with the books open), else with the site.
func (st *site) serveBooked(w http.ResponseWriter, r *http.Request, first http.Handler) {
	b := &fullBooks{}
	rq, rec := &b.request, &b.rec
	rq.Started = time.Now()
	rq.Read(r, st.trusted)
	if st.access != nil {
		rq.ReadLogged(r)
	}
	_, rq.hop = cluster.FromPeer(r)
	rq.RequestID = st.ids.requestID(r.Header.Get("X-Request-Id"), rq.hop || books.TrustedPeer(r.RemoteAddr, st.trusted))
	r.Header.Set("X-Request-Id", rq.RequestID) // to CGI (HTTP_X_REQUEST_ID), peers and upstreams
	r = books.WithInfo(r, &rq.Info)
	rq.begin(st, nil) // cluster.Serve counts the full chain's local work
	rec.Init(w, st.sendTimeout, rq.Started)
	rec.Defaults = st.headers
	defer rq.finishHTTP(rec)
	if first != nil {
		first.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), booksKey{}, rq)))
		return
	}
	st.serveInside(rq, rec, r)
}

// fullBooks is a full-chain request's books and the Recorder that learns
// its status and bytes: one allocation.
type fullBooks struct {
	request
	rec books.Recorder
}

// serveInside is the site's chain inside the books: routes, body limits,
// then site.balanced (the cluster and the site's dispatch).
func (st *site) serveInside(rq *request, w http.ResponseWriter, r *http.Request) {
	r, ok := st.applyRoutes(rq, w, r)
	if !ok || !st.limitBody(w, r) {
		return
	}
	st.chain.ServeHTTP(w, r)
}

// finishHTTP is finish for the full chain, deferred: the status and bytes
// come from the Recorder; a handler that panicked before answering counts
// as a 500, and the panic goes on to net/http after the books.
func (rq *request) finishHTTP(rec *books.Recorder) {
	var p any
	if rec.Status == 0 {
		if p = recover(); p != nil {
			rec.Status = http.StatusInternalServerError
		}
	}
	rq.Status, rq.Bytes = rec.StatusOrOK(), rec.Bytes
	rq.finish()
	if p != nil {
		panic(p)
	}
}

// limitBody applies max_body_bytes and body_timeout to a request with a
// body; false: it was refused (413).
func (st *site) limitBody(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	rc := http.NewResponseController(w)
	if st.bodyTimeout > 0 {
		// Also bounds the body net/http drains itself when the handler
		// read none of it: a trickled body never pins the connection.
		_ = rc.SetReadDeadline(time.Now().Add(st.bodyTimeout))
	}
	// A CGI mapping may have its own cap; it refuses (and logs) an
	// oversize body itself.
	maxBody, cgiOwns := st.bodyLimit(r.URL.Path)
	if r.ContentLength > maxBody && !cgiOwns {
		// Refused before a byte is read, also for Expect: 100-continue.
		// net/http drains a small rest (so the client reads the 413
		// instead of a reset) and closes on a large one.
		st.errors.Serve(w, r, http.StatusRequestEntityTooLarge)
		return false
	}
	r.Body = &bodyReader{
		ReadCloser: http.MaxBytesReader(w, r.Body, maxBody),
		rc:         rc,
		timeout:    st.bodyTimeout,
	}
	return true
}

// bodyReader gives each read of a request body its own deadline
// (body_timeout: the longest wait between two reads), so a trickled body
// is cut off while a slow but steady upload is not.
type bodyReader struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.timeout > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.timeout > 0 {
		// The whole body is in: net/http now watches the connection for
		// the client leaving, which a stale deadline would cut. After a
		// timeout the deadline stays, so net/http's own drain of the rest
		// cannot wait forever either.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// readFast fills the request's fields from what a fast path parsed, as
// Entry.Read does from an *http.Request on the full chain: the request
// line, the client (trusted proxies applied to remote), and the fields
// only the access log reads (looked up only when it is on).
func readFast[F fieldReader](rq *request, st *site, h *http1.Head, remote, proto string, fields F) {
	rq.Method = http.MethodGet
	if h.IsHEAD {
		rq.Method = http.MethodHead
	}
	rq.URI, rq.Proto, rq.Host = h.Target, proto, h.Host
	rq.ClientIP = books.ClientAddr(remote, st.trusted, func() []string { return fields.all("x-forwarded-for") })
	if st.access == nil {
		return
	}
	rq.Referer = fields.first("referer")
	rq.UserAgent = fields.first("user-agent")
	if auth := fields.first("authorization"); auth != "" {
		rq.User = books.BasicUser(auth)
	}
	// Only the log reads a fast answer's ID: made only when it is on.
	trusted := rq.hop || books.TrustedPeer(remote, st.trusted)
	var sent string
	if trusted { // an untrusted client's ID is replaced unread
		sent = fields.first("x-request-id")
	}
	rq.RequestID = st.ids.requestID(sent, trusted)
}

// fieldReader reads header fields of a request a fast path parsed, by
// lower-case name: the HTTP/1.1 header block or the HTTP/2 field list.
type fieldReader interface {
	headBlock | fieldList
	first(name string) string
	all(name string) []string
}

// headBlock is an HTTP/1.1 header block as http1.ParseHead checked it.
type headBlock []byte

func (b headBlock) first(name string) string {
	var v string
	b.each(name, func(value []byte) bool { v = string(value); return false })
	return v
}

func (b headBlock) all(name string) []string {
	var vs []string
	b.each(name, func(value []byte) bool { vs = append(vs, string(value)); return true })
	return vs
}

// each calls fn with each value of the field name, in order, until fn
// returns false.
func (b headBlock) each(name string, fn func([]byte) bool) {
	for rest := []byte(b); len(rest) > 0; {
		line, more, _ := cutLine(rest)
		rest = more
		if len(line) == 0 {
			return
		}
		if k, v, ok := http1.SplitHeader(line); ok && http1.EqualFold(k, name) && !fn(v) {
			return
		}
	}
}

// cutLine splits b at its first CRLF.
func cutLine(b []byte) (line, rest []byte, found bool) {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return b[:i], b[i+2:], true
		}
	}
	return b, nil, false
}

// fieldList is an HTTP/2 request's regular fields (lower-case names).
type fieldList []hpack.HeaderField

func (fs fieldList) first(name string) string {
	for _, f := range fs {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func (fs fieldList) all(name string) []string {
	var vs []string
	for _, f := range fs {
		if f.Name == name {
			vs = append(vs, f.Value)
		}
	}
	return vs
}
