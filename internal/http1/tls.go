package http1

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// tlsFront does the TLS handshakes of an https listener itself, so that
// the HTTP/1.1 requests of a connection reach net/http through the head
// rules (guard.go) as on plain HTTP: net/http reads a *tls.Conn
// directly, with no place to look at the heads it parses. A connection
// that negotiated another protocol (h2) goes to net/http as the *tls.Conn
// it wants, for its TLSNextProto. An HTTP/1.1 one goes to the fast path
// (front.go), as a plain connection does, or, without one, to net/http
// as a tlsHTTP1Conn, which net/http serves as any connection, taking
// r.TLS from its ConnectionState method.
type tlsFront struct {
	ln        net.Listener
	cfg       *tls.Config
	handoff   *Handoff
	rules     *Rules
	fast      *Front        // nil: HTTP/1.1 goes to net/http at once
	handshake time.Duration // longest handshake; 0: none
	errLog    *log.Logger
}

// FrontTLS sets srv up to take ln's connections through a tlsFront and
// returns the listener srv must Serve; closing it (Shutdown) closes ln.
// With a route, HTTP/1.1 connections are served by the fast path it
// returns, which the caller shuts down before srv.
func FrontTLS(srv *http.Server, ln net.Listener, cfg *tls.Config, rules *Rules, lim Limits,
	route Route, log *slog.Logger) (net.Listener, *Front) {
	f := &tlsFront{ln: ln, cfg: cfg, handoff: NewHandoff(ln.Addr()), rules: rules,
		handshake: handshakeTimeout(lim), errLog: srv.ErrorLog}
	if route != nil {
		// The fast path's shutdown closes ln: the tlsFront stops taking
		// connections, and net/http keeps serving what it hands over
		// until its own Shutdown.
		f.fast = NewFront(ln, f.handoff, lim, log, route)
		f.fast.Rules = rules
	}
	go f.acceptLoop()
	return &tlsFrontListener{Handoff: f.handoff, ln: ln}, f.fast
}

// handshakeTimeout is net/http's: the smallest of the server's read and
// write limits.
func handshakeTimeout(lim Limits) time.Duration {
	var d time.Duration
	for _, t := range []time.Duration{lim.ReadHeader, lim.Send} {
		if t > 0 && (d == 0 || t < d) {
			d = t
		}
	}
	return d
}

type tlsFrontListener struct {
	*Handoff
	ln net.Listener
}

func (l *tlsFrontListener) Close() error {
	l.Handoff.Close()
	return l.ln.Close()
}

// acceptLoop takes connections until ln closes. Without a fast path it
// then closes the handoff too, which ends srv.Serve; with one, that waits
// for srv's Shutdown, so that connections the fast path hands over while
// it drains still reach net/http.
func (f *tlsFront) acceptLoop() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if f.fast == nil {
				f.handoff.Close()
			}
			return
		}
		go f.serveConn(c)
	}
}

// serveConn does the handshake and hands the connection to net/http.
func (f *tlsFront) serveConn(c net.Conn) {
	tc := tls.Server(c, f.cfg)
	if f.handshake > 0 {
		c.SetDeadline(time.Now().Add(f.handshake))
	}
	if err := tc.Handshake(); err != nil {
		reason := err.Error()
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			reason = "client sent an HTTP request to an HTTPS server"
		}
		if f.errLog != nil {
			f.errLog.Printf("http: TLS handshake error from %s: %s", c.RemoteAddr(), reason)
		}
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
		f.handoff.give(tc)
		return
	}
	if lc, ok := c.(*LimitConn); ok && f.fast != nil {
		f.fast.serveTLS(tc, lc)
		return
	}
	f.handoff.give(&tlsHTTP1Conn{Conn: tc, guard: f.rules.guard(nil, tc, c.RemoteAddr().String())})
}

// looksLikeHTTP is net/http's test of a TLS record header that is the
// start of a plain HTTP request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// tlsHTTP1Conn is an HTTP/1.1 connection over TLS whose request heads
// pass the rules.
type tlsHTTP1Conn struct {
	*tls.Conn
	guard *headGuard
}

func (c *tlsHTTP1Conn) Read(p []byte) (int, error) { return c.guard.Read(p) }
