// Package h2 serves HTTP/2 connections (RFC 9113) for an http.Handler.
//
// It owns the connections net/http hands over after a TLS handshake that
// chose "h2" (http.Server.TLSNextProto): framing, HPACK, flow control in
// both directions, stream states, settings, pings, resets and graceful
// GOAWAY. Requests run the handler on a goroutine of their own, with a
// ResponseWriter that behaves as net/http's HTTP/2 one does (Flusher,
// ResponseController deadlines, trailers, informational responses, a
// sniffed Content-Type, Date). Unlike net/http, a request the Fast hook can
// answer from memory is answered on the connection's own goroutine, with no
// goroutine, channel or allocation per stream, and responses to a batch of
// requests leave in one write: that is what makes small cached files cheap.
//
// Frames are parsed by golang.org/x/net/http2's Framer (which also merges
// CONTINUATION frames and decodes HPACK); response header blocks are
// encoded here, from the static table only, so a cached block is valid on
// every connection.
//
// What one client may cost is bounded per connection: streams open at
// once (MaxConcurrentStreams), streams stalled on a window the client
// keeps shut (MaxStalledStreams; the whole connection is closed when its
// window stays shut past WriteTimeout), frames queued for a client that
// reads nothing, and the rate of resets, PINGs and SETTINGS (past it,
// GOAWAY(ENHANCE_YOUR_CALM), as net/http and nginx answer rapid reset).
// A PING or any other frame that is not a request does not keep an idle
// connection open.
//
// Rule: every security release of golang.org/x/net/http2 (and of
// net/http's bundled copy) is reviewed against this package, which shares
// its Framer but not its server: each fixed attack gets a test here
// (harden_test.go) before the release is called done for shoal.
package h2

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
)

// Server holds the settings shared by the connections it serves.
type Server struct {
	// MaxConcurrentStreams bounds the streams a client may have open on a
	// connection. Zero: 100.
	MaxConcurrentStreams uint32
	// MaxStalledStreams bounds the streams of a connection whose
	// responses wait for a window the client keeps shut, each holding
	// what its handler holds (an open file): while that many wait, or a
	// shut window would make a new stream wait too, new streams are
	// refused. Zero: 32.
	MaxStalledStreams int
	// MaxHeaderBytes bounds a request's header list, as
	// SETTINGS_MAX_HEADER_LIST_SIZE; a larger one gets 431. Zero: 1 MiB.
	MaxHeaderBytes int
	// IdleTimeout closes a connection that has had no open stream for this
	// long. Zero: never.
	IdleTimeout time.Duration
	// WriteTimeout bounds each response from the moment its request
	// arrived, as http.Server.WriteTimeout does for HTTP/2; a handler may
	// move it with http.ResponseController. Past it the stream is reset.
	// It also bounds each write to the connection. Zero: none.
	WriteTimeout time.Duration
	// Fast, when set, is asked first about each GET or HEAD without a
	// body. An answer it returns is sent at once from the connection's
	// goroutine; nil sends the request to the handler.
	Fast func(*Request) *Answer
	// Logger receives handler panics and protocol errors worth knowing.
	// Nil: slog.Default().
	Logger *slog.Logger

	respBufs bufPool // response bodies being gathered (respBufSize)
	connBufs bufPool // frames on their way to a socket (connWriteBuf)
	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
}

// bufPool hands out byte slices of one capacity and takes them back.
type bufPool struct{ p sync.Pool }

func (bp *bufPool) get(size int) []byte {
	if p, ok := bp.p.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, size)
}

func (bp *bufPool) put(b []byte) {
	b = b[:0]
	bp.p.Put(&b)
}

// Request is what Fast sees of a request: its pseudo-header fields and the
// regular fields as sent (lower-case names, in order).
type Request struct {
	Method, Scheme, Authority, Path string
	Fields                          []hpack.HeaderField
	RemoteAddr                      string
	TLS                             *tls.ConnectionState
}

// Answer is a complete response Fast has ready.
type Answer struct {
	Status int
	// Header and Extra are HPACK blocks (as AppendField writes them) of
	// every field but :status and date.
	Header, Extra []byte
	// Body is sent unless the request is HEAD.
	Body []byte
	// Sent, when set, is called once the answer is certain to go out (the
	// client's windows take its body), before it is written: the place
	// for bookkeeping. An answer that does not fit is dropped uncalled and
	// the request goes to the handler.
	Sent func()
	// Release, when set, is called once the answer was written or
	// dropped: the place to let go of what it borrowed.
	Release func()
}

// ServeTLS serves one connection; it fits http.Server.TLSNextProto["h2"].
// It returns when the connection is done.
func (s *Server) ServeTLS(hs *http.Server, c *tls.Conn, h http.Handler) {
	ctx := context.Background()
	if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
		ctx = bc.BaseContext()
	}
	cs := c.ConnectionState()
	s.serveConn(ctx, c, &cs, h)
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn, cs *tls.ConnectionState, h http.Handler) {
	c := newConn(s, ctx, nc, cs, h)
	if !s.track(c) {
		nc.Close()
		return
	}
	defer s.forget(c)
	c.serve()
}

// Shutdown asks every connection to finish: each gets a GOAWAY, serves
// the streams it has and closes. It fits http.Server.RegisterOnShutdown;
// connections that come later are closed at once.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway()
	}
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return false
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) maxStreams() uint32 {
	if s.MaxConcurrentStreams == 0 {
		return 100
	}
	return s.MaxConcurrentStreams
}

func (s *Server) maxStalled() int {
	if s.MaxStalledStreams <= 0 {
		return 32
	}
	return s.MaxStalledStreams
}

func (s *Server) maxHeaderBytes() uint32 {
	if s.MaxHeaderBytes <= 0 {
		return 1 << 20
	}
	return uint32(min(s.MaxHeaderBytes, 1<<30))
}
