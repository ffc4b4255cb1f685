package server

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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"shoal/cluster"
	"shoal/handlers/books"
	"shoal/handlers/static"
)

// fastFront owns the HTTP/1.1 connections of a listener: plain ones it
// accepts itself, TLS ones the tlsFront gives it after their handshake
// (limits_tls.go). It answers the requests whose whole response is a
// cached static file itself: the header block parsed in place, the
// response written with one writev (one Write over TLS), no http.Request
// and no goroutine beyond the connection's own. At the first request that
// needs anything more it hands the connection, with the bytes it has
// read, to net/http for the rest of its life. The two paths give the same
// answers; the fast one only skips work (bench/run.sh static measures it
// against nginx).
type fastFront struct {
	// ln: connections from the acceptor; over TLS the tlsFront's, which
	// gives them after their handshake (acceptLoop does not run).
	ln      net.Listener
	handoff *handoffListener
	route   func(requestHead) fastAnswer
	limits  serverLimits
	log     *slog.Logger
	// rules check every head the fast path hands to net/http, and those
	// net/http reads after it (nil: none).
	rules *headRules
	// scratch holds the buffers a TLS answer is gathered in (tlsGather),
	// so that an idle connection keeps none.
	scratch sync.Pool

	// peer, when set, turns a connection that opens with a TLS handshake
	// into the cluster's peer TLS one (nil: leave it as it is).
	peer func(c net.Conn, pending []byte) *tls.Conn

	closing  atomic.Bool
	answered atomic.Int64 // responses sent by the fast path
	// mu guards conns.
	mu    sync.Mutex
	conns map[*fastConn]struct{}
}

// fastAnswer is what the fast path needs to answer a request.
type fastAnswer struct {
	site *site
	file *static.FastFile
	// cluster, when running, counts the request in this node's load.
	cluster *cluster.Cluster
	// hop: a peer proxied the request here; the response carries this
	// node's load and the access log the client the peer vouched for.
	hop    bool
	client string
	// routes is the set of header routes whose rules the file carries
	// (0: none; see fastRoutes).
	routes uint64
	// listener: header lines the listener adds to every answer, as the
	// full chain's serveHTTPS does (HSTS and Alt-Svc over TLS).
	listener []byte
	// rt is the runtime the answer came from, held (acquire) until the
	// answer is out: a reload closes it only after its last request.
	rt *runtime
}

// done lets go of the runtime an answer held.
func (a *fastAnswer) done() {
	if a.rt != nil {
		a.rt.release()
		a.rt = nil
	}
}

func (a fastAnswer) ok() bool { return a.file != nil }

// fastRoute is the HTTP/1.1 fast path's way into the sites: the answer for
// h, or one without a file when the request takes the full chain:
// redirect_http is on, the cluster may route it elsewhere (balance =
// "all", or a redirect marker), it carries a hop header that does not
// check out or forwarding headers the cluster would strip, or no cached
// file answers it.
func (n *Node) fastRoute(h requestHead) fastAnswer {
	if n.state.Load().redirect.Load() != nil {
		return fastAnswer{}
	}
	return n.routeFast(h, "http")
}

// fastRouteTLS is fastRoute for HTTPS/1.1: routes see the scheme
// "https", and every answer carries the header lines serveHTTPS adds.
func (n *Node) fastRouteTLS(h requestHead) fastAnswer {
	a := n.routeFast(h, "https")
	if a.ok() {
		a.listener = n.httpsLines()
	}
	return a
}

// httpsFields caches the HSTS and Alt-Svc header lines for the values in
// force.
type httpsFields struct {
	hsts, alt string
	lines     []byte
}

// httpsLines are the Strict-Transport-Security and Alt-Svc lines of an
// HTTPS/1.1 answer, built again only when a reload or HTTP/3 changes
// their values.
func (n *Node) httpsLines() []byte {
	hsts := n.state.Load().cfg.TLS.HSTS
	alt := ""
	if p := n.altSvc.Load(); p != nil {
		alt = *p
	}
	if c := n.h1fields.Load(); c != nil && c.hsts == hsts && c.alt == alt {
		return c.lines
	}
	c := &httpsFields{hsts: hsts, alt: alt}
	if hsts != "" {
		c.lines = append(c.lines, "Strict-Transport-Security: "+hsts+"\r\n"...)
	}
	if alt != "" {
		c.lines = append(c.lines, "Alt-Svc: "+alt+"\r\n"...)
	}
	n.h1fields.Store(c)
	return c.lines
}

// routeFast is fastRoute for any listener: what redirect_http leaves alone.
// An answer with a file holds its runtime: the caller calls done once it
// is out (or dropped).
func (n *Node) routeFast(h requestHead, scheme string) (a fastAnswer) {
	rt := n.acquire()
	defer func() {
		if a.ok() {
			a.rt = rt
		} else {
			rt.release()
		}
	}()
	st := rt.vhosts.match(h.host)
	a = fastAnswer{site: st, cluster: n.cl.get()}
	switch c := a.cluster; {
	case c == nil: // no cluster: its headers mean nothing
	case strings.Contains(h.target, "_shoal"):
		return fastAnswer{}
	case h.hop != "":
		a.hop = true // checked once the fast path knows it answers: the check spends the nonce
	case h.forwarded || balanced(st.balance, false):
		return fastAnswer{}
	}
	method := http.MethodGet
	if h.head {
		method = http.MethodHead
	}
	var ok bool
	if a.routes, ok = st.fastRoutes(method, scheme, h.path); !ok || a.hop && st.routes != nil {
		// A hop's scheme is the client's, which only the full chain reads.
		return fastAnswer{}
	}
	a.file = st.fastVariant(st.fast(h.path, h.cond), a.routes)
	if a.hop && a.ok() {
		method := http.MethodGet
		if h.head {
			method = http.MethodHead
		}
		if a.client, a.hop = a.cluster.CheckHop(h.hop, method, h.host, h.target, h.peer); !a.hop {
			return fastAnswer{}
		}
	}
	return a
}

// fastAnswered counts the responses the fast path of the listeners open
// now has sent.
func (n *Node) fastAnswered() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var sum int64
	for _, l := range n.listeners {
		if l.srv.front != nil {
			sum += l.srv.front.answered.Load()
		}
	}
	return sum
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

type fastConn struct {
	// conn is the counted connection (limits.go). rw is what the fast
	// path reads, writes and sets deadlines on: conn's socket itself
	// (tcp, written with writev), or a TLS connection over conn (tls: a
	// client's HTTPS/1.1, or a peer's peer_tls, which peer also names),
	// whose writes pass conn's min_send_rate.
	conn     *limitConn
	tcp      *net.TCPConn
	tls      *tls.Conn
	peer     *tls.Conn
	rw       net.Conn
	br       *bufio.Reader
	state    atomic.Int32
	accepted time.Time
	remote   string

	dateSec int64
	date    []byte // "Date: ...\r\n"
	bufs    [6][]byte
	wb      net.Buffers
	req     request // the books of the request being answered
}

func newFastFront(ln net.Listener, handoff *handoffListener, lim serverLimits, log *slog.Logger,
	route func(requestHead) fastAnswer) *fastFront {
	return &fastFront{ln: ln, handoff: handoff, route: route, limits: lim, log: log,
		conns: map[*fastConn]struct{}{}}
}

// acceptLoop takes connections until the listener closes.
func (f *fastFront) acceptLoop() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // the acceptor retries its own errors; this one means closed
		}
		lc, ok := c.(*limitConn)
		if !ok {
			tcp, isTCP := c.(*net.TCPConn)
			if !isTCP {
				f.handoff.give(c)
				continue
			}
			lc = &limitConn{TCPConn: tcp} // not counted: no limiter in front
		}
		tcp := lc.TCPConn
		fc := &fastConn{conn: lc, tcp: tcp, rw: tcp, br: bufio.NewReaderSize(tcp, fastBufferSize), accepted: time.Now(),
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
func (f *fastFront) serveTLS(tc *tls.Conn, lc *limitConn) {
	fc := &fastConn{conn: lc, tls: tc, rw: tc, br: bufio.NewReaderSize(tc, fastBufferSize), accepted: time.Now(),
		remote: lc.RemoteAddr().String()}
	if !f.track(fc) {
		f.handOff(fc) // shutting down: net/http serves it until it stops too
		return
	}
	f.serveConn(fc)
}

// close closes the connection: over TLS with a close_notify first, as
// net/http does.
func (fc *fastConn) close() {
	if fc.tls != nil {
		fc.tls.Close()
		return
	}
	fc.conn.Close()
}

func (f *fastFront) track(fc *fastConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing.Load() {
		return false
	}
	f.conns[fc] = struct{}{}
	return true
}

func (f *fastFront) forget(fc *fastConn) {
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
}

// serveConn answers requests on fc until it closes or goes to net/http.
func (f *fastFront) serveConn(fc *fastConn) {
	for first := true; ; first = false {
		n, err := f.readHead(fc, first)
		if err == nil && int64(n) > f.limits.maxHeader {
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
		h, ok := parseHead(head)
		h.peer = fc.peer != nil
		var a fastAnswer
		if ok {
			a = f.route(h)
		}
		if !a.ok() {
			f.forget(fc)
			f.handOff(fc)
			return
		}
		fc.br.Discard(n)
		closing := h.close || f.closing.Load()
		sent := f.answer(fc, &h, a, closing)
		a.done()
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
func (f *fastFront) readHead(fc *fastConn, first bool) (int, error) {
	if fc.br.Buffered() == 0 {
		switch {
		case first && f.limits.readHeader > 0:
			fc.rw.SetReadDeadline(fc.accepted.Add(f.limits.readHeader))
		case !first && f.limits.idle > 0:
			fc.rw.SetReadDeadline(time.Now().Add(f.limits.idle))
		case !first:
			fc.rw.SetReadDeadline(time.Time{}) // no idle limit: drop the header deadline
		}
		if _, err := fc.br.Peek(1); err != nil {
			return 0, err
		}
		if first && fc.tls == nil && fc.peek()[0] == tlsHandshakeRecord {
			return 0, errHandOff // a peer's TLS (or a mistake): not for the fast path
		}
	}
	if !fc.state.CompareAndSwap(connNew, connActive) && !fc.state.CompareAndSwap(connIdle, connActive) {
		return 0, net.ErrClosed // a shutdown closed it
	}
	n := headEnd(fc.peek())
	if n >= 0 {
		return n, nil
	}
	if !first && f.limits.readHeader > 0 {
		// From the request's first byte; a new connection's deadline runs
		// from its accept already.
		fc.rw.SetReadDeadline(time.Now().Add(f.limits.readHeader))
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
		n = headEnd(fc.peek())
	}
	return n, nil
}

func (fc *fastConn) peek() []byte {
	b, _ := fc.br.Peek(fc.br.Buffered())
	return b
}

// answer writes ff as the response to h, with the request's books
// (server/request.go) kept in the connection's state. The books are
// written before the response, as on the full path, where net/http sends
// a small response only once the handler has returned: a client that
// reads its response and then the metrics finds its request counted. It
// reports whether the whole response went out.
func (f *fastFront) answer(fc *fastConn, h *requestHead, a fastAnswer, closing bool) bool {
	st, ff := a.site, a.file
	remote := fc.remote
	if a.hop && a.client != "" {
		remote = a.client // the client the peer vouched for
	}
	body := ff.Body
	if h.head {
		body = nil
	}
	rq := &fc.req
	*rq = request{hop: a.hop}
	rq.Started = time.Now()
	readFast(rq, st, h, remote, "HTTP/1.1", headBlock(h.lines))
	rq.Handler = books.KindStatic
	rq.begin(st, a.cluster)
	var load string
	if a.hop {
		load = a.cluster.LoadHeader() // counts this request: between begin and finish
	}
	rq.Status, rq.Bytes = ff.Status, int64(len(body))
	now := rq.Started
	rq.finish()
	f.answered.Add(1)

	if f.limits.send > 0 {
		fc.rw.SetWriteDeadline(now.Add(f.limits.send))
	}
	fc.bufs = [6][]byte{ff.StatusLine, fc.dateLine(now, closing), []byte(load), a.listener, ff.Header, body}
	if fc.tls != nil {
		return f.writeTLS(fc)
	}
	var want int64
	for _, b := range fc.bufs {
		want += int64(len(b))
	}
	fc.wb = fc.bufs[:] // WriteTo consumes wb and the slices in bufs
	sent, err := fc.wb.WriteTo(fc.tcp)
	return err == nil && sent == want
}

// tlsGather is how much of a response goes out in one Write over TLS:
// one full record. writev is not available under TLS, and a Write per
// part would seal (and send) a record per part.
const tlsGather = 16 << 10

// writeTLS writes the response in fc.bufs over TLS: the header lines and
// as much of the body as fills tlsGather in one Write, the rest of a
// larger body straight from the cache.
func (f *fastFront) writeTLS(fc *fastConn) bool {
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
func (fc *fastConn) dateLine(now time.Time, closing bool) []byte {
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
func (f *fastFront) closeGracefully(fc *fastConn) {
	fc.state.Store(connClosed)
	if fc.tls != nil {
		fc.tls.CloseWrite() // close_notify: the TLS way to end the write side
	} else {
		fc.tcp.CloseWrite()
	}
	fc.rw.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.Copy(io.Discard, io.LimitReader(fc.rw, 256<<10))
	fc.close()
}

// handOff gives the connection and what was read of it to net/http.
func (f *fastFront) handOff(fc *fastConn) {
	pending := fc.peek()
	// net/http sets the deadlines it wants; none of ours may linger.
	fc.rw.SetDeadline(time.Time{})
	if fc.peer != nil {
		f.handoff.give(&peerReplayConn{Conn: fc.peer, pending: pending})
		return
	}
	if fc.tls != nil {
		f.handoff.give(&tlsHTTP1Conn{Conn: fc.tls, guard: f.rules.guard(pending, fc.tls, fc.remote)})
		return
	}
	if f.peer != nil {
		if tc := f.peer(&peerReplayConn{Conn: fc.conn, pending: pending}, pending); tc != nil {
			f.servePeer(fc, tc)
			return
		}
	}
	rc := &replayConn{limitConn: fc.conn}
	if f.rules != nil {
		rc.guard = f.rules.guard(pending, fc.conn, fc.remote)
	} else {
		rc.guard = &headGuard{src: fc.conn, state: guardBlind, buf: pending}
	}
	f.handoff.give(rc)
}

// servePeer serves a cluster peer's TLS connection (peer_tls) on the fast
// path, as a plain one: the proxied requests for cached files are the
// hop's bulk. The handshake runs at the first read, within the header
// deadline; a stranger's fails there.
func (f *fastFront) servePeer(fc *fastConn, tc *tls.Conn) {
	pc := &fastConn{conn: fc.conn, tcp: fc.tcp, tls: tc, peer: tc, rw: tc,
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

// shutdown stops taking connections, closes the idle ones and waits for
// the others to finish their request, until ctx ends.
func (f *fastFront) shutdown(ctx context.Context) error {
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
func (f *fastFront) closeIdle() int {
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

// close closes every connection at once.
func (f *fastFront) close() {
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

// handoffListener is the net.Listener the http.Server behind a fastFront
// accepts from.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// give passes c to the http.Server, or closes it when that has stopped.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// replayConn is a connection handed to net/http: the bytes the fast path
// already read come first, and every request head passes the rules
// (limits_head.go). Embedding the *limitConn keeps sendfile (ReadFrom)
// and CloseWrite, which net/http looks for.
type replayConn struct {
	*limitConn
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
