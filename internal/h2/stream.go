package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// stream is one request that went to the handler.
type stream struct {
	c      *conn
	id     uint32
	cancel context.CancelFunc
	body   *body // nil: the request had none

	// Under c.mu.
	sendWin     int64
	recvWin     int64
	recvUnacked int64
	declaredLen int64 // the request's Content-Length; -1: none
	gotLen      int64
	remoteDone  bool  // the client's END_STREAM came
	handlerDone bool  // the handler returned and the response is out
	lingering   bool  // half-closed (local): answered, the client's side still open
	resetErr    error // set once the stream is reset, by either side
	wdTimer     *time.Timer

	// Under c.wmu.
	endSent bool // END_STREAM or RST_STREAM went out: nothing more may
	closed  bool // RST_STREAM went out, or the stream ended without one
}

// onHeaders starts a stream, answers it at once when Fast can, or takes
// the trailers of a stream whose body is arriving.
func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if c.wasPeerReset(id) && !c.wasReset(id) {
		c.mu.Unlock()
		c.writeRST(id, http2.ErrCodeStreamClosed) // RFC 9113 5.1: the client reset it
		return nil
	}
	if st := c.streams[id]; st != nil {
		if st.lingering { // trailers after the response: the stream is done
			c.forgetLocked(st)
			c.mu.Unlock()
			if !f.StreamEnded() {
				c.writeRST(id, http2.ErrCodeProtocol)
			}
			return nil
		}
		c.mu.Unlock()
		return c.onTrailers(st, f)
	}
	if id <= c.maxID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol) // RFC 9113 5.1.1
	}
	c.maxID = id
	c.active = true
	refuse := c.goingAway && id > c.lastID || uint32(len(c.streams)) >= c.srv.maxStreams() // lingering ones count (RFC 9113 5.1.2)
	// A stream that would wait for a shut window holds its handler's
	// file: only so many may.
	max := c.srv.maxStalled()
	stalled := c.waiting >= max || (c.sendWin <= 0 || c.initWin <= 0) && c.openLocked() >= max
	c.mu.Unlock()
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.writeRST(id, http2.ErrCodeProtocol) // RFC 9113 5.3.1: no stream depends on itself
		return nil
	}
	if refuse {
		return c.refuse(id)
	}
	if f.Truncated {
		c.sendSimple(id, http.StatusRequestHeaderFieldsTooLarge, !f.StreamEnded())
		return nil
	}
	if c.srv.Fast != nil && f.StreamEnded() && c.tryFast(id, f) {
		return nil
	}
	if stalled {
		return c.refuse(id)
	}
	req, declared, err := c.newRequest(f)
	if err != nil {
		c.writeRST(id, http2.ErrCodeProtocol)
		return nil
	}
	c.start(id, req, declared, f.StreamEnded())
	return nil
}

// refuse answers a new stream with REFUSED_STREAM (the client may retry
// it); refusals count with resets, so a client that keeps opening what is
// refused is told to calm down.
func (c *conn) refuse(id uint32) error {
	if !c.resets.take(time.Now()) {
		return errCalm
	}
	c.writeRST(id, http2.ErrCodeRefusedStream)
	return nil
}

// tryFast asks Fast about a GET or HEAD and sends its answer whole when
// the windows allow; false sends the request down the handler path.
func (c *conn) tryFast(id uint32, f *http2.MetaHeadersFrame) bool {
	method := f.PseudoValue("method")
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	r := Request{Method: method, Scheme: f.PseudoValue("scheme"), Authority: f.PseudoValue("authority"),
		Path: f.PseudoValue("path"), Fields: f.RegularFields(), RemoteAddr: c.remote, TLS: c.tlsState}
	if r.Path == "" || r.Path[0] != '/' || r.Scheme == "" || !fastFieldsOK(r.Fields) {
		return false
	}
	a := c.srv.Fast(&r)
	if a == nil {
		return false
	}
	if a.Release != nil {
		defer a.Release()
	}
	body := a.Body
	if method == http.MethodHead {
		body = nil
	}
	n := int64(len(body))
	if !c.fastRoom(len(body)+len(a.Header)+len(a.Extra)+64) || !c.takeWindow(n) {
		return false
	}
	if a.Sent != nil {
		a.Sent()
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return true
	}
	blk := appendStatus(c.hbuf[:0], a.Status)
	blk = append(blk, c.dateField(time.Now())...)
	blk = append(blk, a.Header...)
	blk = append(blk, a.Extra...)
	c.hbuf = blk
	err := c.writeHeaderBlock(id, blk, n == 0)
	if err == nil && n > 0 {
		err = c.writeDataFrames(id, body, true)
	}
	if err != nil {
		c.failWrite(err)
	}
	return true
}

// fastFieldsOK refuses what newRequest would refuse, so the two paths
// agree on malformed requests.
func fastFieldsOK(fields []hpack.HeaderField) bool {
	for _, hf := range fields {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade", "te", "content-length":
			return false
		}
	}
	return true
}

// takeWindow takes n bytes of send window for a new stream's whole body
// (the connection's, and the stream's initial one); false when they do
// not allow it, and nothing is taken.
func (c *conn) takeWindow(n int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.sendWin || n > c.initWin {
		return false
	}
	c.sendWin -= n
	return true
}

// sendSimple answers with a short text status of its own.
func (c *conn) sendSimple(id uint32, status int, resetAfter bool) {
	body := strconv.Itoa(status) + " " + http.StatusText(status) + "\n"
	fits := c.takeWindow(int64(len(body)))
	c.writeLocked(func() error {
		blk := appendStatus(nil, status)
		if !fits { // no window for even this: the status alone
			return c.writeHeaderBlock(id, blk, true)
		}
		blk = AppendField(blk, "content-type", "text/plain; charset=utf-8")
		blk = AppendField(blk, "content-length", strconv.Itoa(len(body)))
		if err := c.writeHeaderBlock(id, blk, false); err != nil {
			return err
		}
		if err := c.writeDataFrames(id, []byte(body), true); err != nil {
			return err
		}
		if resetAfter {
			return c.wfr.WriteRSTStream(id, http2.ErrCodeNo)
		}
		return nil
	})
}

// newRequest builds the http.Request of a HEADERS frame, checked as RFC
// 9113 8.2 and 8.3 require.
func (c *conn) newRequest(f *http2.MetaHeadersFrame) (*http.Request, int64, error) {
	method, path := f.PseudoValue("method"), f.PseudoValue("path")
	scheme, authority := f.PseudoValue("scheme"), f.PseudoValue("authority")
	if f.PseudoValue("protocol") != "" || f.PseudoValue("status") != "" {
		return nil, 0, errors.New("h2: unexpected pseudo-header")
	}
	if method == http.MethodConnect {
		if path != "" || scheme != "" || authority == "" {
			return nil, 0, errors.New("h2: malformed CONNECT")
		}
	} else if method == "" || path == "" || scheme == "" {
		return nil, 0, errors.New("h2: missing pseudo-header")
	}
	if !validMethod(method) {
		return nil, 0, errors.New("h2: invalid method")
	}
	fields := f.RegularFields()
	header := make(http.Header, len(fields))
	var cookies []string
	host := ""
	for _, hf := range fields {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return nil, 0, errors.New("h2: connection-specific header field")
		case "te":
			if hf.Value != "trailers" {
				return nil, 0, errors.New("h2: TE other than trailers")
			}
		case "cookie":
			cookies = append(cookies, hf.Value) // RFC 9113 8.2.3: joined below
			continue
		case "host":
			if host == "" {
				host = hf.Value
			}
		}
		key := http.CanonicalHeaderKey(hf.Name)
		header[key] = append(header[key], hf.Value)
	}
	if len(cookies) > 0 {
		header["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	if authority == "" {
		authority = host
	}
	var u *url.URL
	var err error
	switch {
	case method == http.MethodConnect:
		u, path = &url.URL{Host: authority}, authority
	case path == "*" && method == http.MethodOptions:
		u = &url.URL{Path: "*"}
	case path[0] != '/':
		return nil, 0, errors.New("h2: :path neither origin nor asterisk form") // RFC 9113 8.3.1
	default:
		if u, err = url.ParseRequestURI(path); err != nil {
			return nil, 0, err
		}
	}
	declared := int64(-1)
	if vv := header["Content-Length"]; len(vv) > 0 {
		n, err := strconv.ParseUint(vv[0], 10, 63)
		if len(vv) > 1 || err != nil || vv[0] == "" || vv[0][0] == '+' {
			return nil, 0, errors.New("h2: invalid Content-Length")
		}
		declared = int64(n)
	}
	req := &http.Request{
		Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: header,
		Host: authority, RequestURI: path, RemoteAddr: c.remote, TLS: c.tlsState,
		ContentLength: declared,
	}
	if f.StreamEnded() {
		if declared > 0 {
			return nil, 0, errors.New("h2: Content-Length without a body")
		}
		req.ContentLength, req.Body = 0, http.NoBody
	}
	for _, v := range header["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if k != "" && httpguts.ValidTrailerHeader(k) {
				if req.Trailer == nil {
					req.Trailer = http.Header{}
				}
				req.Trailer[k] = nil
			}
		}
	}
	delete(header, "Trailer")
	return req, declared, nil
}

func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return m != ""
}

// start opens the stream and runs the handler on a goroutine of its own.
func (c *conn) start(id uint32, req *http.Request, declared int64, ended bool) {
	ctx, cancel := context.WithCancel(c.ctx)
	st := &stream{c: c, id: id, cancel: cancel, declaredLen: declared, remoteDone: ended, recvWin: streamRecvWindow}
	req = req.WithContext(ctx)
	if !ended {
		st.body = newBody(st, req)
		req.Body = st.body
	}
	c.mu.Lock()
	st.sendWin = c.initWin
	c.streams[id] = st
	c.disarmIdleLocked()
	c.mu.Unlock()
	rw := newResponseWriter(st, req)
	if c.srv.WriteTimeout > 0 {
		rw.SetWriteDeadline(time.Now().Add(c.srv.WriteTimeout))
	}
	go c.runHandler(st, rw, req)
}

func (c *conn) runHandler(st *stream, rw *responseWriter, req *http.Request) {
	defer st.handlerFinished()
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				c.srv.logger().Error("h2: handler panic", "panic", p, "method", req.Method, "uri", req.RequestURI,
					"remote", c.remote, "stack", string(debug.Stack()))
			}
			st.reset(http2.ErrCodeInternal, errStreamClosed)
		}
	}()
	c.handler.ServeHTTP(rw, req)
	rw.finish()
}

// onTrailers takes the trailing HEADERS of a request body.
func (c *conn) onTrailers(st *stream, f *http2.MetaHeadersFrame) error {
	c.mu.Lock()
	done := st.remoteDone
	st.remoteDone = true
	bad := st.declaredLen >= 0 && st.gotLen != st.declaredLen
	c.mu.Unlock()
	if done {
		// HEADERS after the client's END_STREAM: a stream error would
		// do while the stream is half-closed, a connection error once it
		// is closed; the handler may not have let go of it yet, so both
		// get the connection error (RFC 9113 5.4.1 allows it).
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 || bad || st.body == nil {
		st.reset(http2.ErrCodeProtocol, errStreamClosed)
		return nil
	}
	trailer := http.Header{}
	for _, hf := range f.RegularFields() {
		k := http.CanonicalHeaderKey(hf.Name)
		if !httpguts.ValidTrailerHeader(k) {
			st.reset(http2.ErrCodeProtocol, errStreamClosed)
			return nil
		}
		trailer[k] = append(trailer[k], hf.Value)
	}
	st.body.closeWithError(io.EOF, trailer)
	return nil
}

// reset ends the stream with RST_STREAM code; err is what the handler's
// writes and reads fail with from now on. It reports whether the frame
// went out: not on a stream already reset, nor on one both sides ended.
func (st *stream) reset(code http2.ErrCode, err error) bool {
	c := st.c
	c.mu.Lock()
	if st.resetErr == nil {
		st.resetErr = err // before the frame: DATA from now on is ignored
	}
	c.noteReset(st.id)
	clientOpen := !st.remoteDone
	c.mu.Unlock()
	c.wmu.Lock()
	// After our END_STREAM the stream is half-closed (local): while the
	// client's side is open, an error on it still gets RST_STREAM.
	sent := !st.closed && (!st.endSent || clientOpen)
	if sent {
		st.endSent, st.closed = true, true
		if c.werr == nil {
			if werr := c.wfr.WriteRSTStream(st.id, code); werr != nil {
				c.failWrite(werr)
			}
		}
	}
	c.wmu.Unlock()
	c.flush()
	st.abort(err)
	return sent
}

// closedFrame answers a frame on a stream both sides ended whose handler
// has not yet let go of it: a stream error STREAM_CLOSED (RFC 9113 5.1),
// as it gets once the stream is gone.
func (st *stream) closedFrame() {
	if !st.reset(http2.ErrCodeStreamClosed, errStreamClosed) {
		st.c.writeRST(st.id, http2.ErrCodeStreamClosed)
	}
}

// peerReset is the client's RST_STREAM.
func (st *stream) peerReset() { st.abort(errStreamReset) }

// abort ends the stream without a frame: the client reset it or the
// connection is gone.
func (st *stream) abort(err error) {
	c := st.c
	c.mu.Lock()
	if st.resetErr == nil {
		st.resetErr = err
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.wmu.Lock()
	st.endSent, st.closed = true, true
	c.wmu.Unlock()
	if st.body != nil {
		st.body.closeWithError(err, nil)
	}
	st.cancel()
}

// handlerFinished closes the stream once its handler has returned: a
// body the client is still sending is refused with RST_STREAM(NO_ERROR),
// unread body bytes go back to the connection's window.
func (st *stream) handlerFinished() {
	c := st.c
	c.mu.Lock()
	st.handlerDone = true
	stillSending := !st.remoteDone && st.resetErr == nil
	if st.wdTimer != nil {
		st.wdTimer.Stop()
	}
	c.mu.Unlock()
	if st.body != nil {
		st.body.Close()
	}
	st.cancel()
	c.mu.Lock()
	if stillSending && !st.remoteDone && st.resetErr == nil && !c.closed {
		// Half-closed (local): the stream stays, without its handler,
		// until the client ends or resets it; its next DATA gets
		// RST_STREAM(NO_ERROR) (RFC 9113 8.1). Resetting it here would
		// race frames the client sent before it saw the response: a
		// WINDOW_UPDATE overflow or a body longer than its
		// Content-Length would go unanswered. It counts against the
		// client's MaxConcurrentStreams, not against idleness.
		st.lingering = true
		c.lingering++
	} else {
		delete(c.streams, st.id)
	}
	last := c.openLocked() == 0
	goingAway := c.goingAway
	if last && !goingAway {
		c.active = true // idle from now on
		c.armIdleLocked()
	}
	c.mu.Unlock()
	if last && goingAway {
		c.drainAndClose()
		return
	}
	c.flush()
}

// forgetLocked drops a lingering stream. Under mu.
func (c *conn) forgetLocked(st *stream) {
	if st.lingering && c.streams[st.id] == st {
		delete(c.streams, st.id)
		c.lingering--
	}
}

// onLingeringData ends a half-closed (local) stream that got DATA: a
// body longer or shorter than its Content-Length is a PROTOCOL_ERROR as
// on an open stream, more of a body nobody reads gets NO_ERROR. Under
// mu, which it releases.
func (c *conn) onLingeringData(st *stream, f *http2.DataFrame, n int64) {
	st.gotLen += int64(len(f.Data()))
	bad := st.declaredLen >= 0 && (st.gotLen > st.declaredLen || f.StreamEnded() && st.gotLen != st.declaredLen)
	c.forgetLocked(st)
	c.mu.Unlock()
	c.returnConnWindow(n)
	switch {
	case bad:
		c.writeRST(st.id, http2.ErrCodeProtocol)
	case !f.StreamEnded():
		c.writeRST(st.id, http2.ErrCodeNo)
	}
	c.flush()
}

// consumed returns window for n body bytes the handler read (or that were
// dropped), announcing it once enough has gathered.
func (st *stream) consumed(n int64) {
	c := st.c
	c.mu.Lock()
	c.recvWin += n
	c.recvUnacked += n
	connUpd := c.takeConnUpdate()
	var stUpd int64
	if !st.remoteDone && st.resetErr == nil {
		st.recvWin += n
		st.recvUnacked += n
		if st.recvUnacked >= streamRecvWindow/4 {
			stUpd, st.recvUnacked = st.recvUnacked, 0
		}
	}
	c.mu.Unlock()
	if connUpd == 0 && stUpd == 0 {
		return
	}
	c.writeLocked(func() error {
		if connUpd > 0 {
			if err := c.wfr.WriteWindowUpdate(0, uint32(connUpd)); err != nil {
				return err
			}
		}
		if stUpd > 0 {
			return c.wfr.WriteWindowUpdate(st.id, uint32(stUpd))
		}
		return nil
	})
	c.flush()
}

// reserve waits for send window for up to want bytes of DATA and takes
// what there is (at most one frame).
func (st *stream) reserve(want int) (int, error) {
	c := st.c
	flushed, waited := false, false
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() { // under mu: runs before the Unlock
		if waited {
			c.waiting--
		}
	}()
	for {
		switch {
		case st.resetErr != nil:
			return 0, st.resetErr
		case c.closed:
			return 0, errConnClosed
		}
		if n := min(int64(want), c.sendWin, st.sendWin, int64(c.peerFrame)); n > 0 {
			c.sendWin -= n
			st.sendWin -= n
			return int(n), nil
		}
		if !flushed {
			// What is buffered must reach the client, or its window
			// updates never come.
			c.mu.Unlock()
			c.flush()
			c.mu.Lock()
			flushed = true
			continue
		}
		if !waited {
			waited = true
			c.waiting++
		}
		c.noteStallLocked()
		c.cond.Wait()
	}
}

// body is a request body on its way from the connection's goroutine to
// the handler.
type body struct {
	st  *stream
	req *http.Request

	mu       sync.Mutex
	cond     sync.Cond
	buf      bytes.Buffer
	err      error // what Read returns once buf is empty
	closed   bool  // the handler closed it: data is dropped
	timedOut bool
	timer    *time.Timer
	trailer  http.Header
	// continueOwed: the client waits for 100 Continue before the body.
	continueOwed bool
}

func newBody(st *stream, req *http.Request) *body {
	b := &body{st: st, req: req}
	b.cond.L = &b.mu
	b.continueOwed = strings.EqualFold(req.Header.Get("Expect"), "100-continue")
	return b
}

var errBodyClosed = errors.New("h2: body closed by handler")

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.continueOwed {
		b.continueOwed = false
		if b.buf.Len() == 0 && b.err == nil {
			b.mu.Unlock()
			b.st.sendContinue()
			b.mu.Lock()
		}
	}
	for b.buf.Len() == 0 && b.err == nil && !b.timedOut && !b.closed {
		b.cond.Wait()
	}
	switch {
	case b.closed:
		b.mu.Unlock()
		return 0, errBodyClosed
	case b.buf.Len() > 0:
		n, _ := b.buf.Read(p)
		b.mu.Unlock()
		b.st.consumed(int64(n))
		return n, nil
	case b.timedOut:
		b.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	err := b.err
	if err == io.EOF && b.trailer != nil {
		for k, v := range b.trailer {
			if b.req.Trailer == nil {
				b.req.Trailer = http.Header{}
			}
			b.req.Trailer[k] = v
		}
		b.trailer = nil
	}
	b.mu.Unlock()
	return 0, err
}

// Close drops what is buffered and all that comes later.
func (b *body) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	n := b.buf.Len()
	b.buf = bytes.Buffer{}
	if b.timer != nil {
		b.timer.Stop()
	}
	b.cond.Broadcast()
	b.mu.Unlock()
	if n > 0 {
		b.st.consumed(int64(n))
	}
	return nil
}

// write adds data; false when the handler closed the body.
func (b *body) write(data []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.buf.Write(data)
	b.cond.Broadcast()
	return true
}

func (b *body) closeWithError(err error, trailer http.Header) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err, b.trailer = err, trailer
	}
	b.cond.Broadcast()
}

func (b *body) setReadDeadline(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.timedOut = false
	switch {
	case t.IsZero():
	case !t.After(time.Now()):
		b.timedOut = true
		b.cond.Broadcast()
	default:
		b.timer = time.AfterFunc(time.Until(t), func() {
			b.mu.Lock()
			b.timedOut = true
			b.cond.Broadcast()
			b.mu.Unlock()
		})
	}
}

// sendContinue answers Expect: 100-continue when the handler first reads.
func (st *stream) sendContinue() {
	st.c.writeStreamHeaders(st, appendStatus(nil, http.StatusContinue), false)
	st.c.flush()
}

// writeStreamHeaders writes a header block on st unless the stream has
// ended; end ends it.
func (c *conn) writeStreamHeaders(st *stream, blk []byte, end bool) error {
	return c.writeOnStream(st, end, func() error { return c.writeHeaderBlock(st.id, blk, end) })
}

// writeStreamData writes DATA on st, whose window the caller reserved,
// unless the stream has ended; end ends it.
func (c *conn) writeStreamData(st *stream, data []byte, end bool) error {
	return c.writeOnStream(st, end, func() error { return c.writeDataFrames(st.id, data, end) })
}

// writeOnStream runs write with the writer unless the connection failed
// or the stream has ended, and records the end of the stream.
func (c *conn) writeOnStream(st *stream, end bool, write func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.waitRoomLocked()
	if c.werr != nil {
		return c.werr
	}
	if st.endSent {
		return errStreamClosed
	}
	if err := write(); err != nil {
		c.failWrite(err)
		return err
	}
	if end {
		st.endSent = true
	}
	return nil
}
