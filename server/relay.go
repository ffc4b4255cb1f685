package server

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"shoal/cluster"
	"shoal/handlers/books"
	"shoal/handlers/upstream"
	"shoal/internal/forward"
	"shoal/internal/http1"
)

// fastBooks is what the HTTP/1.1 fast path keeps per connection for the
// node (http1.Conn.Books): the books of the request being answered and,
// for a relayed one, its sink and what the upstream is told; reused from
// one request to the next, so a fast answer allocates none of them.
type fastBooks struct {
	rq   request
	sink forward.WireSink
	in   upstream.Inbound
	// cluster and listener are the answer's (fastAnswer.cluster, the
	// HTTPS listener's header lines) for the relay to use.
	cluster  *cluster.Cluster
	listener []byte
	// fields adds the Date (when the upstream sent none) and the
	// listener's lines to a relayed head: made once per connection.
	fields func(b []byte, h *forward.Head) []byte
	c      *http1.Conn
	// scratch holds an answer the relay writes itself (timedOut).
	scratch []byte
	// peer is the cluster's choice for a request relayed to a peer, hop
	// what it is told, out what reached the client (hoprelay.go).
	peer cluster.Choice
	hop  cluster.HopRequest
	out  countingWriter
	// fcgi is the FastCGI relay's state (fcgirelay.go).
	fcgi fcgiBooks
}

// connBooks is c's fastBooks, made at its first fast answer.
func connBooks(c *http1.Conn) *fastBooks {
	b, _ := c.Books.(*fastBooks)
	if b == nil {
		b = &fastBooks{c: c}
		b.fields = b.addFields
		c.Books = b
	}
	return b
}

func (b *fastBooks) addFields(dst []byte, h *forward.Head) []byte {
	if !hasField(h, "Date") {
		dst = append(dst, b.c.DateLine(b.rq.Started)...)
	}
	return append(dst, b.listener...)
}

// hasField reports whether h carries an end-to-end field of that name.
func hasField(h *forward.Head, name string) bool {
	for i, f := range h.Fields {
		if len(f.Name) == len(name) && !h.Hop(i) && strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// upstreamRelay relays a site's requests for one upstream on the
// HTTP/1.1 fast path (http1.Relay): a GET or HEAD whose first matching
// route is that upstream's and nothing else (route.PlainUpstream), on a
// site without headers of its own, served here (no cluster, or a balance
// that leaves upstream requests to this node). The upstream's Relay does
// what its ServeHTTP does (targets, retries, passive health, the request
// and response fields) without net/http in between; whatever it leaves,
// or cannot get an answer for, goes to net/http unread, whose full chain
// serves it as it would have (the site's 502 and 504 pages included).
type upstreamRelay struct {
	site *site
	h    *upstream.Handler
	// fastcgi: the upstream's targets are FastCGI applications, relayed
	// by relayFastCGI.
	fastcgi bool
}

// fastUpstream is the relay for a request the fast routes declined, when
// an upstream takes it as it is; nil otherwise.
func (st *site) fastUpstream(method, scheme, path string, a fastAnswer) *upstreamRelay {
	if a.hop || len(st.headers) > 0 || a.cluster != nil && balanced(st.balance, true) {
		return nil
	}
	if name := st.routes.PlainUpstream(method, scheme, path); name != "" {
		return st.relays[name]
	}
	return nil
}

// relaysFor makes a site's relays, one per upstream whose targets all
// speak HTTP, or all FastCGI.
func relaysFor(st *site) map[string]*upstreamRelay {
	m := map[string]*upstreamRelay{}
	for name, h := range st.upstreams {
		uh, ok := h.(*upstream.Handler)
		switch {
		case !ok:
		case uh.Relayable():
			m[name] = &upstreamRelay{site: st, h: uh}
		case uh.FastCGIRelayable():
			m[name] = &upstreamRelay{site: st, h: uh, fastcgi: true}
		}
	}
	return m
}

// Relay sends the request to the upstream and its answer to the client,
// then writes the books (the access log and metrics see it once it is
// out, as HTTP/2's fast answers).
func (r *upstreamRelay) Relay(c *http1.Conn, h *http1.Head, _ []byte, closing bool) (wrote, keep bool) {
	if r.fastcgi {
		return r.relayFastCGI(c, h, closing)
	}
	st, b := r.site, connBooks(c)
	rq := &b.rq
	b.openRelay(st, c, h, books.KindUpstream, c, closing)
	lines := b.in.Lines // the last request's: a kept connection's often match
	if string(h.Lines) != lines {
		lines = string(h.Lines)
	}
	b.in = upstream.Inbound{Method: rq.Method, Target: h.Target, Host: h.Host, Lines: lines,
		ClientIP: rq.ClientIP, TLS: c.TLS(), RequestID: rq.RequestID, Arrived: rq.Started}
	wrote, err := r.h.Relay(context.Background(), &b.in, &b.sink)
	if !wrote && upstream.TimedOut(err) {
		return r.timedOut(c, rq, b, closing, err)
	}
	if !wrote {
		return false, false
	}
	if err == nil {
		err = b.sink.End()
	}
	return true, b.closeRelay(st, b.cluster, err)
}

// openRelay opens the books of a request a relay answers (its handler
// kind, client and request ID read as every fast path reads them) and
// readies the sink to write the answer to w. It returns the request's
// header block.
func (b *fastBooks) openRelay(st *site, c *http1.Conn, h *http1.Head, kind string, w io.Writer, closing bool) headBlock {
	rq := &b.rq
	*rq = request{}
	rq.Started = time.Now()
	fields := headBlock(h.Lines)
	readFast(rq, st, h, c.Remote(), "HTTP/1.1", fields)
	rq.Handler = kind
	if rq.RequestID == "" {
		trusted := books.TrustedPeer(c.Remote(), st.trusted)
		var sent string
		if trusted { // an untrusted client's ID is replaced unread
			sent = fields.first("x-request-id")
		}
		rq.RequestID = st.ids.requestID(sent, trusted)
	}
	// The sink keeps its buffer from one request to the next.
	b.sink.W, b.sink.HEAD, b.sink.Close, b.sink.Fields = w, h.IsHEAD, closing, b.fields
	b.sink.Status, b.sink.Bytes = 0, 0
	return fields
}

// closeRelay writes the books of a relayed answer once it is out (err:
// how it ended; a cut before any status is a 502), counted in cl's local
// work when cl is set, and reports whether the connection may go on.
func (b *fastBooks) closeRelay(st *site, cl *cluster.Cluster, err error) (keep bool) {
	rq := &b.rq
	rq.Status, rq.Bytes = b.sink.Status, b.sink.Bytes
	if err != nil && rq.Status == 0 {
		rq.Status = http.StatusBadGateway
	}
	rq.begin(st, cl)
	rq.finish()
	return err == nil && b.sink.Keep
}

// timedOut answers 504 with the site's page for a request whose target
// did not answer in time, as the full chain does, and writes its books.
func (r *upstreamRelay) timedOut(c *http1.Conn, rq *request, b *fastBooks, closing bool, err error) (wrote, keep bool) {
	st := r.site
	rq.Status = r.h.Failed(rq.Method, rq.URI, rq.ClientIP, err)
	body := st.errors.Page(rq.Status)
	out := append(b.scratch[:0], "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(rq.Status), 10)
	out = append(out, " "+http.StatusText(rq.Status)+"\r\n"...)
	out = append(out, c.DateLine(rq.Started)...)
	for _, f := range books.PageFields(rq.Status) {
		out = append(out, f[0]+": "+f[1]+"\r\n"...)
	}
	out = append(out, "Content-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\n"...)
	out = append(out, b.listener...)
	if closing {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	if !b.sink.HEAD {
		out = append(out, body...)
		rq.Bytes = int64(len(body))
	}
	_, werr := c.Write(out)
	b.scratch = out[:0]
	rq.begin(st, b.cluster)
	rq.finish()
	return true, werr == nil
}
