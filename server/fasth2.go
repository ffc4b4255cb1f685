package server

import (
	"bytes"
	"net/http"
	"strings"
	"time"

	"shoal/handlers/books"
	"shoal/internal/h2"
	"shoal/internal/http1"
)

// h2Fast is the HTTP/2 fast path's way into the sites, as fastRoute is
// HTTP/1.1's: a GET or HEAD of a cached file is answered from memory on
// the connection's goroutine, with the request's books (server/request.go)
// and the headers serveHTTPS adds (HSTS, Alt-Svc). Anything else, and
// anything the HTTP/1.1 fast path would decline, returns nil and goes
// through the full chain. The books open and close in Sent, once the
// answer is sure to go out: an answer internal/h2 drops (it does not fit
// the client's window) leaves no trace, and the full chain keeps the
// books of the request instead.
func (n *Node) h2Fast(r *h2.Request) *h2.Answer {
	h, ok := h2Head(r)
	if !ok {
		return nil
	}
	a := n.routeFast(h, "https", r.RemoteAddr)
	if a.file == nil || a.hop {
		a.done()
		return nil
	}
	st, ff := a.site, a.file
	x := &h2Answer{Answer: h2.Answer{Status: ff.Status, Header: ff.H2Header(h2Block), Extra: n.h2HTTPSFields(),
		Body: ff.Body}}
	rq := &x.rq
	*rq = request{}
	rq.Started = time.Now()
	readFast(rq, st, &h, r.RemoteAddr, "HTTP/2.0", fieldList(r.Fields))
	rq.Handler = books.KindStatic
	rq.Status, rq.Bytes = ff.Status, int64(len(ff.Body))
	if h.IsHEAD {
		rq.Bytes = 0
	}
	x.Sent = func() {
		rq.begin(st, a.cluster)
		rq.finish()
		n.h2Answered.Add(1)
	}
	x.Release = a.done // sent or dropped, the runtime is let go
	return &x.Answer
}

// h2Answer is a fast answer and the books of its request in one
// allocation.
type h2Answer struct {
	h2.Answer
	rq request
}

// h2Head reads what the fast path needs from an HTTP/2 request, with the
// HTTP/1.1 parser's rules: a plain path, one host, no field that asks for
// more than a whole file or its 304.
func h2Head(r *h2.Request) (http1.Head, bool) {
	h := http1.Head{IsHEAD: r.Method == http.MethodHead, Target: r.Path, Host: r.Authority}
	path, query, hasQuery := strings.Cut(r.Path, "?")
	if !http1.PlainPath([]byte(path)) || hasQuery && !http1.PlainQuery([]byte(query)) {
		return h, false
	}
	h.Path = path
	hosts := 0
	for _, f := range r.Fields {
		switch field := http1.FieldOf([]byte(f.Name)); field {
		case http1.FieldHost:
			hosts++
			if h.Host == "" {
				h.Host = f.Value
			}
		case http1.FieldConnection, http1.FieldHop:
			return h, false // forbidden in HTTP/2; hops come over HTTP/1.1
		default:
			if !http1.SharedField(&h, field, f.Value) {
				return h, false
			}
		}
	}
	if hosts > 1 || r.Authority != "" && hosts == 1 {
		return h, false // let the full chain judge Host against :authority
	}
	return h, http1.ValidHost(h.Host)
}

// h2Block turns a cached file's HTTP/1.1 header lines into an HPACK block.
func h2Block(lines []byte) []byte {
	var blk []byte
	for len(lines) > 0 {
		line, rest, _ := bytes.Cut(lines, []byte("\r\n"))
		lines = rest
		if name, value, ok := http1.SplitHeader(line); ok {
			blk = h2.AppendField(blk, strings.ToLower(string(name)), string(value))
		}
	}
	return blk
}

// h2Fields caches the encoded HSTS and Alt-Svc fields for the values in
// force.
type h2Fields struct {
	hsts, alt string
	block     []byte
}

func (n *Node) h2HTTPSFields() []byte {
	hsts := n.state.Load().cfg.TLS.HSTS
	alt := ""
	if p := n.altSvc.Load(); p != nil {
		alt = *p
	}
	if c := n.h2fields.Load(); c != nil && c.hsts == hsts && c.alt == alt {
		return c.block
	}
	c := &h2Fields{hsts: hsts, alt: alt}
	if hsts != "" {
		c.block = h2.AppendField(c.block, "strict-transport-security", hsts)
	}
	if alt != "" {
		c.block = h2.AppendField(c.block, "alt-svc", alt)
	}
	n.h2fields.Store(c)
	return c.block
}
