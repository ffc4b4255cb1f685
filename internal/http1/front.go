package http1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Front owns the HTTP/1.1 connections of a listener: plain ones it
// accepts itself, TLS ones the tlsFront gives it after their handshake
// (tls.go). It answers the requests whose whole response is a
// cached static file itself: the header block parsed in place, the
// response written with one writev (one Write over TLS), no http.Request
// and no goroutine beyond the connection's own. At the first request that
// needs anything more it hands the connection, with the bytes it has
// read, to net/http for the rest of its life. The two paths give the same
// answers; the fast one only skips work (bench/run.sh static measures it
// against nginx).
type Front struct {
	// ln: connections from the acceptor; over TLS the tlsFront's, which
	// gives them after their handshake (acceptLoop does not run).
	ln      net.Listener
	handoff *Handoff
	route   Route
	limits  Limits
	log     *slog.Logger
	// Rules check every head the fast path hands to net/http, and those
	// net/http reads after it (nil: none).
	Rules *Rules
	// scratch holds the buffers a TLS answer is gathered in (tlsGather),
	// so that an idle connection keeps none.
	scratch sync.Pool

	// Peer, when set, turns a connection that opens with a TLS handshake
	// into the cluster's peer TLS one (nil: leave it as it is).
	Peer func(c net.Conn, pending []byte) *tls.Conn

	closing  atomic.Bool
	answered atomic.Int64 // responses sent by the fast path
	// mu guards conns.
	mu    sync.Mutex
	conns map[*Conn]struct{}
}

// Answer is a whole response the Route hook gives the fast path for a
// request: the status line and header lines of a cached file, its body
// (nil for HEAD), and header lines the node adds (a hop's load, HSTS and
// Alt-Svc over TLS). Hold, when set, is released once the answer is out
// or dropped: what the answer's bytes belong to stays alive until then.
type Answer struct {
	StatusLine, Header, Body []byte
	Load, Listener           []byte
	// Now is when the books opened; the Date line shows it.
	Now  time.Time
	Hold interface{ Release() }
	// Relay, when set, answers the request itself in place of the bytes
	// above: a response that comes from elsewhere (an upstream, a peer).
	Relay Relay
}

// Relay answers one request on the fast path by writing its whole
// response to c, as a reverse proxy: head is the request's header block
// as the client sent it, closing says the response must end the
// connection (Connection: close). It reports whether it wrote anything:
// when not, the request, still unread, goes to net/http with its
// connection, which serves it as if the fast path had declined it (a
// relay that cannot reach its origin lets the full chain retry it and
// answer the error page). keep reports whether the connection is fit for
// another request. The relay keeps the request's books itself.
type Relay interface {
	Relay(c *Conn, h *Head, head []byte, closing bool) (wrote, keep bool)
}

// Route is the hook through which the fast path asks the node for the
// answer to h, a request read on c. It reports false when the request is
// one for net/http; when it answers, it has written the request's books
// (the access log and metrics see a request before its response, as on
// the full path).
type Route func(c *Conn, h *Head) (Answer, bool)

// Limits are the http.Server settings a listener runs with; a reload that
// changes them needs a new front.
type Limits struct {
	ReadHeader, Idle, Send time.Duration
	MaxHeader              int64
	MinSendRate            int64
	MaxConnsPerIP          int
}

// TLSHandshakeRecord is the first byte of every TLS connection; no HTTP
// request starts with it.
const TLSHandshakeRecord = 0x16

func (a *Answer) release() {
	if a.Hold != nil {
		a.Hold.Release()
		a.Hold = nil
	}
}

// Connection states, as net/http's: a connection waiting for its first
// request is new, one between requests idle; only those two may be closed
// by a graceful shutdown.
const (
	connNew int32 = iota
	connIdle
	connActive
	connClosed
)

// fastBufferSize is the read buffer of a connection: a header block that
// does not fit goes to net/http, which applies max_header_bytes.
const fastBufferSize = 4096

type Conn struct {
	// conn is the counted connection (conns.go). rw is what the fast
	// path reads, writes and sets deadlines on: conn's socket itself
	// (tcp, written with writev), or a TLS connection over conn (tls: a
	// client's HTTPS/1.1, or a peer's peer_tls, which peer also names),
	// whose writes pass conn's min_send_rate.
	conn     *LimitConn
	tcp      *net.TCPConn
	tls      *tls.Conn
	peer     *tls.Conn
	rw       net.Conn
	br       *bufio.Reader
	state    atomic.Int32
	accepted time.Time
	remote   string
	local    string // made at the first Local

	dateSec int64
	date    []byte // "Date: ...\r\n"
	bufs    [6][]byte
	wb      net.Buffers
	head    Head // the request being answered
	send    time.Duration
	wrote   int64 // bytes a Relay wrote of its response

	// Books is the Route hook's own per-connection state (shoal keeps
	// the books of the request being answered there, so that a request
	// allocates none).
	Books any
}

// Remote is the client's address, host:port.
func (c *Conn) Remote() string { return c.remote }

// Local is the connection's own address, host:port (SERVER_PORT's, and
// net/http's LocalAddrContextKey).
func (c *Conn) Local() string {
	if c.local == "" {
		c.local = c.conn.LocalAddr().String()
	}
	return c.local
}

// TLS reports whether the client's connection is TLS (HTTPS/1.1 or a
// peer's).
func (c *Conn) TLS() bool { return c.tls != nil }

// DateLine is the Date header line ("Date: ...\r\n") for now, formatted
// once a second per connection; it is valid until the next call.
func (c *Conn) DateLine(now time.Time) []byte { return c.dateLine(now, false) }

// NewFront returns the fast path for the connections ln gives; those it
// does not answer go to handoff, where net/http takes them.
func NewFront(ln net.Listener, handoff *Handoff, lim Limits, log *slog.Logger, route Route) *Front {
	return &Front{ln: ln, handoff: handoff, route: route, limits: lim, log: log,
		conns: map[*Conn]struct{}{}}
}

// AcceptLoop takes connections until the listener closes.
func (f *Front) AcceptLoop() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // the acceptor retries its own errors; this one means closed
		}
		lc, ok := c.(*LimitConn)
		if !ok {
			tcp, isTCP := c.(*net.TCPConn)
			if !isTCP {
				f.handoff.give(c)
				continue
			}
			lc = newLimitConn(tcp) // not counted: no limiter in front
		}
		tcp := lc.TCPConn
		fc := &Conn{conn: lc, tcp: tcp, rw: lc, br: bufio.NewReaderSize(lc, fastBufferSize), accepted: time.Now(),
			remote: tcp.RemoteAddr().String()}
		if !f.track(fc) {
			lc.Close()
			continue
		}
		go f.serveConn(fc)
	}
}

// serveTLS serves an HTTP/1.1 connection whose handshake is done, on the
// caller's goroutine, as serveConn a plain one. Its read_header_timeout
// runs from now, as net/http's does after a handshake.
func (f *Front) serveTLS(tc *tls.Conn, lc *LimitConn) {
	fc := &Conn{conn: lc, tls: tc, rw: tc, br: bufio.NewReaderSize(tc, fastBufferSize), accepted: time.Now(),
		remote: lc.RemoteAddr().String()}
	if !f.track(fc) {
		f.handOff(fc) // shutting down: net/http serves it until it stops too
		return
	}
	f.serveConn(fc)
}

// close closes the connection: over TLS with a close_notify first, as
// net/http does.
func (fc *Conn) close() {
	if fc.tls != nil {
		fc.tls.Close()
		return
	}
	fc.conn.Close()
}

func (f *Front) track(fc *Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing.Load() {
		return false
	}
	f.conns[fc] = struct{}{}
	return true
}

func (f *Front) forget(fc *Conn) {
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
}

// serveConn answers requests on fc until it closes or goes to net/http.
func (f *Front) serveConn(fc *Conn) {
	for first := true; ; first = false {
		n, err := f.readHead(fc, first)
		if err == nil && int64(n) > f.limits.MaxHeader {
			err = errHandOff // the rules answer it: max_header_bytes is exact
		}
		if err != nil {
			f.forget(fc)
			if errors.Is(err, errHandOff) {
				f.handOff(fc)
				return
			}
			fc.close()
			return
		}
		head := fc.peek()[:n]
		h := &fc.head // in the connection: passed to the hook, a local would escape
		ok := h.parse(head)
		h.Peer = fc.peer != nil
		var a Answer
		if ok {
			a, ok = f.route(fc, h)
		}
		if !ok {
			f.forget(fc)
			f.handOff(fc)
			return
		}
		closing := h.Close || f.closing.Load()
		var sent bool
		if a.Relay != nil {
			var wrote bool
			wrote, sent = f.relay(fc, h, head, &a, closing)
			if !wrote {
				f.forget(fc)
				f.handOff(fc)
				return
			}
		} else {
			sent = f.answer(fc, &a, closing)
		}
		fc.br.Discard(n)
		a.release()
		if keep := sent && !closing; !keep {
			f.forget(fc)
			f.closeGracefully(fc)
			return
		}
		fc.state.Store(connIdle)
		if f.closing.Load() && fc.state.CompareAndSwap(connIdle, connClosed) {
			f.forget(fc)
			fc.close()
			return
		}
	}
}

// errHandOff: the request is one for net/http.
var errHandOff = errors.New("hand off to net/http")

// readHead waits for the next request and reads its header block into the
// buffer, returning its length. Deadlines follow net/http's: idle_timeout
// between requests, read_header_timeout from a request's first byte.
func (f *Front) readHead(fc *Conn, first bool) (int, error) {
	if fc.br.Buffered() == 0 {
		switch {
		case first && f.limits.ReadHeader > 0:
			fc.rw.SetReadDeadline(fc.accepted.Add(f.limits.ReadHeader))
		case !first && f.limits.Idle > 0:
			// rw's deadlines are conn's (a TLS connection sets its
			// conn's): within d/16 of it, the one set stays.
			fc.conn.ReadWithin(f.limits.Idle)
		case !first:
			fc.rw.SetReadDeadline(time.Time{}) // no idle limit: drop the header deadline
		}
		if _, err := fc.br.Peek(1); err != nil {
			return 0, err
		}
		if first && fc.tls == nil && fc.peek()[0] == TLSHandshakeRecord {
			return 0, errHandOff // a peer's TLS (or a mistake): not for the fast path
		}
	}
	if !fc.state.CompareAndSwap(connNew, connActive) && !fc.state.CompareAndSwap(connIdle, connActive) {
		return 0, net.ErrClosed // a shutdown closed it
	}
	n := HeadEnd(fc.peek())
	if n >= 0 {
		return n, nil
	}
	if !first && f.limits.ReadHeader > 0 {
		// From the request's first byte; a new connection's deadline runs
		// from its accept already.
		fc.rw.SetReadDeadline(time.Now().Add(f.limits.ReadHeader))
	}
	for n < 0 {
		have := fc.br.Buffered()
		if have == fastBufferSize {
			return 0, errHandOff // too long for the fast path: net/http applies the limit
		}
		if _, err := fc.br.Peek(have + 1); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, err // net/http closes a connection that sent too slowly, without a word
			}
			return 0, errHandOff // let net/http answer a cut-off request as it does
		}
		n = HeadEnd(fc.peek())
	}
	return n, nil
}

func (fc *Conn) peek() []byte {
	b, _ := fc.br.Peek(fc.br.Buffered())
	return b
}

// answer writes a as the response, with the connection's Date line. It
// reports whether the whole response went out.
func (f *Front) answer(fc *Conn, a *Answer, closing bool) bool {
	f.answered.Add(1)
	now := a.Now
	if now.IsZero() {
		now = time.Now()
	}
	if f.limits.Send > 0 {
		fc.conn.WriteWithin(f.limits.Send)
	}
	fc.bufs = [6][]byte{a.StatusLine, fc.dateLine(now, closing), a.Load, a.Listener, a.Header, a.Body}
	if fc.tls != nil {
		return f.writeTLS(fc)
	}
	var want int64
	for _, b := range fc.bufs {
		want += int64(len(b))
	}
	if !closing && want <= maxDeferred {
		fc.conn.deferWrite()
	}
	fc.wb = fc.bufs[:] // WriteTo consumes wb and the slices in bufs
	sent, err := fc.conn.writeBuffers(&fc.wb)
	return err == nil && sent == want
}

// relay lets a's Relay write the response, within send_timeout of each
// write as net/http's handlers are (Write moves the deadline on).
func (f *Front) relay(fc *Conn, h *Head, head []byte, a *Answer, closing bool) (wrote, keep bool) {
	fc.wrote, fc.send = 0, f.limits.Send
	wrote, keep = a.Relay.Relay(fc, h, head, closing)
	if fc.wrote > 0 {
		f.answered.Add(1)
	}
	return wrote || fc.wrote > 0, keep
}

// Write writes p to the client: a Relay's response. Every write has
// send_timeout to finish (none: no limit); over plain TCP it passes the
// connection's min_send_rate.
func (c *Conn) Write(p []byte) (int, error) {
	if c.send > 0 {
		c.conn.WriteWithin(c.send)
	}
	c.wrote += int64(len(p))
	if c.tls != nil {
		return c.tls.Write(p)
	}
	return c.conn.Write(p)
}

// maxDeferred is the largest response a kept plain connection sends with
// the read of the next request (rawio.Conn.DeferWrite): it is copied
// once, so a small one only.
const maxDeferred = 16 << 10

// WriteLast writes the last bytes of a Relay's response, which the
// connection keeps: over plain TCP a small one goes out with the read of
// the next request.
func (c *Conn) WriteLast(p []byte) (int, error) {
	if c.tls == nil && len(p) <= maxDeferred {
		c.conn.deferWrite()
	}
	return c.Write(p)
}

// tlsGather is how much of a response goes out in one Write over TLS:
// one full record. writev is not available under TLS, and a Write per
// part would seal (and send) a record per part.
const tlsGather = 16 << 10

// writeTLS writes the response in fc.bufs over TLS: the header lines and
// as much of the body as fills tlsGather in one Write, the rest of a
// larger body straight from the cache.
func (f *Front) writeTLS(fc *Conn) bool {
	bp, _ := f.scratch.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, tlsGather)
		bp = &b
	}
	b := (*bp)[:0]
	last := len(fc.bufs) - 1
	for _, part := range fc.bufs[:last] {
		b = append(b, part...)
	}
	body := fc.bufs[last]
	k := min(len(body), max(0, tlsGather-len(b)))
	b = append(b, body[:k]...)
	_, err := fc.tls.Write(b)
	*bp = b[:0]
	f.scratch.Put(bp)
	if err == nil && k < len(body) {
		_, err = fc.tls.Write(body[k:])
	}
	fc.bufs = [6][]byte{}
	return err == nil
}

// dateLine is the Date header (formatted once a second per connection)
// and, when the connection ends after this response, Connection: close.
func (fc *Conn) dateLine(now time.Time, closing bool) []byte {
	if sec := now.Unix(); sec != fc.dateSec || fc.date == nil {
		fc.dateSec = sec
		b := append(fc.date[:0], "Date: "...)
		b = now.UTC().AppendFormat(b, http.TimeFormat)
		fc.date = append(b, "\r\n"...)
	}
	if closing {
		return append(fc.date[:len(fc.date):len(fc.date)], "Connection: close\r\n"...)
	}
	return fc.date
}

// closeGracefully closes after a last response without cutting it short:
// the write side first, then whatever the client still sends is read for
// a moment, so the kernel never answers unread bytes with a reset that
// could destroy the response in flight (net/http does the same).
func (f *Front) closeGracefully(fc *Conn) {
	fc.state.Store(connClosed)
	if fc.tls != nil {
		fc.tls.CloseWrite() // close_notify: the TLS way to end the write side
	} else {
		fc.conn.CloseWrite()
	}
	fc.rw.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.Copy(io.Discard, io.LimitReader(fc.rw, 256<<10))
	fc.close()
}

// handOff gives the connection and what was read of it to net/http.
func (f *Front) handOff(fc *Conn) {
	pending := fc.peek()
	// net/http sets the deadlines it wants; none of ours may linger.
	fc.rw.SetDeadline(time.Time{})
	if fc.peer != nil {
		f.handoff.give(&peerReplayConn{Conn: fc.peer, pending: pending})
		return
	}
	if fc.tls != nil {
		f.handoff.give(&tlsHTTP1Conn{Conn: fc.tls, guard: f.Rules.guard(pending, fc.tls, fc.remote)})
		return
	}
	if f.Peer != nil {
		if tc := f.Peer(&peerReplayConn{Conn: fc.conn, pending: pending}, pending); tc != nil {
			f.servePeer(fc, tc)
			return
		}
	}
	rc := &replayConn{LimitConn: fc.conn}
	if f.Rules != nil {
		rc.guard = f.Rules.guard(pending, fc.conn, fc.remote)
	} else {
		rc.guard = &headGuard{src: fc.conn, state: guardBlind, buf: pending}
	}
	f.handoff.give(rc)
}

// servePeer serves a cluster peer's TLS connection (peer_tls) on the fast
// path, as a plain one: the proxied requests for cached files are the
// hop's bulk. The handshake runs at the first read, within the header
// deadline; a stranger's fails there.
func (f *Front) servePeer(fc *Conn, tc *tls.Conn) {
	pc := &Conn{conn: fc.conn, tcp: fc.tcp, tls: tc, peer: tc, rw: tc,
		br: bufio.NewReaderSize(tc, fastBufferSize), accepted: fc.accepted, remote: fc.remote}
	if !f.track(pc) {
		fc.tcp.Close()
		return
	}
	f.serveConn(pc)
}

// peerReplayConn is a peer's TLS connection handed to net/http with the
// bytes the fast path already read of it. net/http does not see a
// *tls.Conn, so the server's ConnContext marks its requests as a peer's
// (cluster.FromPeerContext).
type peerReplayConn struct {
	net.Conn
	pending []byte
}

func (c *peerReplayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Shutdown stops taking connections, closes the idle ones and waits for
// the others to finish their request, until ctx ends.
func (f *Front) Shutdown(ctx context.Context) error {
	f.closing.Store(true)
	f.ln.Close()
	wait := time.Millisecond
	for {
		if f.closeIdle() == 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// closeIdle closes the connections between requests (and those that
// brought none in five seconds, as net/http does) and returns how many are
// left.
func (f *Front) closeIdle() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := time.Now().Add(-5 * time.Second)
	for fc := range f.conns {
		if fc.state.CompareAndSwap(connIdle, connClosed) ||
			fc.accepted.Before(old) && fc.state.CompareAndSwap(connNew, connClosed) {
			fc.conn.Close() // the socket: a TLS close_notify could block under f.mu
			delete(f.conns, fc)
		}
	}
	return len(f.conns)
}

// Close closes every connection at once.
func (f *Front) Close() {
	f.closing.Store(true)
	f.ln.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for fc := range f.conns {
		fc.state.Store(connClosed)
		fc.conn.Close()
		delete(f.conns, fc)
	}
}

// Handoff is the net.Listener the http.Server behind a Front
// accepts from.
type Handoff struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func NewHandoff(addr net.Addr) *Handoff {
	return &Handoff{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// give passes c to the http.Server, or closes it when that has stopped.
func (l *Handoff) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *Handoff) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *Handoff) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *Handoff) Addr() net.Addr { return l.addr }

// replayConn is a connection handed to net/http: the bytes the fast path
// already read come first, and every request head passes the rules
// (guard.go). Embedding the *LimitConn keeps sendfile (ReadFrom)
// and CloseWrite, which net/http looks for.
type replayConn struct {
	*LimitConn
	guard *headGuard
}

func (c *replayConn) Read(p []byte) (int, error) { return c.guard.Read(p) }

// WriteTo keeps io.Copy from the connection (splice, for a tunnelled
// upgrade) from skipping the guard while it holds or watches bytes.
func (c *replayConn) WriteTo(w io.Writer) (int64, error) {
	if c.guard.passthrough() {
		return c.TCPConn.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.guard})
}

// Answered is how many responses the fast path has sent.
func (f *Front) Answered() int64 { return f.answered.Load() }

// NewPeerReplayConn is the connection the fast path hands to net/http
// for a peer's TLS connection c, with the bytes it already read.
func NewPeerReplayConn(c net.Conn, pending []byte) net.Conn {
	return &peerReplayConn{Conn: c, pending: pending}
}

// IsPeerConn reports whether c is a peer's TLS connection the fast path
// handed to net/http (which sees no *tls.Conn then), so that the node
// still knows its requests for a peer's.
func IsPeerConn(c net.Conn) bool {
	_, ok := c.(*peerReplayConn)
	return ok
}
