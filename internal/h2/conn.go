package h2

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// What a client may send before it must wait for WINDOW_UPDATE: per
	// stream, and over the whole connection (what a connection may hold of
	// bodies nobody read yet).
	streamRecvWindow = 256 << 10
	connRecvWindow   = 1 << 20
	// defaultWindow is RFC 9113's initial window, both ways.
	defaultWindow = 65535
	// maxFrame is the largest frame a client may send (its default); the
	// frames we send are at most the client's SETTINGS_MAX_FRAME_SIZE.
	maxFrame = 16384
	// prefaceTimeout bounds the wait for the client's preface.
	prefaceTimeout = 10 * time.Second
)

var (
	errConnClosed   = errors.New("h2: connection closed")
	errStreamClosed = errors.New("h2: stream closed")
	errStreamReset  = errors.New("h2: stream reset by the client")
)

// conn is one HTTP/2 connection. Its goroutine (serve) reads frames and
// answers what Fast can; handlers encode their frames from their own
// goroutines; one writer goroutine (out.go) writes them to the socket.
//
// Locks: mu guards stream state and both directions' flow control; wmu
// guards the frames gathering for the socket, never held across a socket
// write. mu may be taken while wmu is held (encoding reads the client's
// frame size), never wmu while mu is: waits for window release mu before
// they flush.
type conn struct {
	srv      *Server
	nc       net.Conn
	ctx      context.Context
	cancel   context.CancelFunc
	tlsState *tls.ConnectionState
	remote   string
	handler  http.Handler
	br       *bufio.Reader
	fr       *http2.Framer

	// The rates of what the client sends that costs us work; only the
	// read loop uses them.
	resets, pings, settings bucket

	wmu     sync.Mutex
	wcond   *sync.Cond // on wmu: the writer made progress or failed
	bw      *connWriter
	wfr     *http2.Framer // writes into bw
	hbuf    []byte        // header block scratch, under wmu
	date    []byte        // encoded date field, under wmu
	dateSec int64
	werr    error // the first write error: nothing more goes out
	writing bool  // the writer goroutine runs
	wqueued int64 // bytes ever encoded
	wsent   int64 // bytes ever written to the socket

	mu          sync.Mutex
	cond        *sync.Cond // flow-control waiters; signalled on any change
	streams     map[uint32]*stream
	maxID       uint32 // highest stream id the client has used
	sendWin     int64  // what the connection may still send
	initWin     int64  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame   int    // the client's SETTINGS_MAX_FRAME_SIZE
	recvWin     int64  // what the client may still send on the connection
	recvUnacked int64  // consumed, not yet returned by WINDOW_UPDATE
	closed      bool
	goingAway   bool
	lastID      uint32 // after GOAWAY: streams above it are refused
	idleArmed   bool
	idleSince   time.Time // since when no request came
	active      bool      // a request came since idleSince was set
	lingering   int       // streams answered whose client side is open
	waiting     int       // streams waiting for send window
	stalledAt   time.Time // when a stream first waited with no window update since; zero: not stalled
	stallTimer  *time.Timer
	resetIDs    [32]uint32 // the streams we reset last, whose late DATA is ignored
	resetNext   int
	peerResets  [32]uint32 // the streams the client reset last: any frame on them is STREAM_CLOSED
	peerNext    int
}

// openLocked is the number of streams with a handler. Under mu.
func (c *conn) openLocked() int { return len(c.streams) - c.lingering }

// errCalm ends a connection whose client sends too much of what costs us
// work and it nothing.
var errCalm = http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)

// notePeerReset remembers that the client reset stream id. Under mu.
func (c *conn) notePeerReset(id uint32) {
	c.peerResets[c.peerNext] = id
	c.peerNext = (c.peerNext + 1) % len(c.peerResets)
}

// wasPeerReset reports whether the client reset stream id lately. Under mu.
func (c *conn) wasPeerReset(id uint32) bool {
	for _, r := range c.peerResets {
		if r == id && id != 0 {
			return true
		}
	}
	return false
}

// noteReset remembers that we reset stream id. Under mu.
func (c *conn) noteReset(id uint32) {
	c.resetIDs[c.resetNext] = id
	c.resetNext = (c.resetNext + 1) % len(c.resetIDs)
}

// wasReset reports whether we reset stream id lately. Under mu.
func (c *conn) wasReset(id uint32) bool {
	for _, r := range c.resetIDs {
		if r == id && id != 0 {
			return true
		}
	}
	return false
}

func newConn(s *Server, ctx context.Context, nc net.Conn, cs *tls.ConnectionState, h http.Handler) *conn {
	c := &conn{
		srv:      s,
		nc:       nc,
		tlsState: cs,
		remote:   nc.RemoteAddr().String(),
		handler:  h,
		br:       bufio.NewReaderSize(nc, 16<<10),

		streams:   map[uint32]*stream{},
		sendWin:   defaultWindow,
		initWin:   defaultWindow,
		peerFrame: maxFrame,
		recvWin:   connRecvWindow,
		idleSince: time.Now(),
		resets:    newBucket(resetBurst, resetRate),
		pings:     newBucket(pingBurst, pingRate),
		settings:  newBucket(settingsBurst, settingsRate),
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.cond = sync.NewCond(&c.mu)
	c.wcond = sync.NewCond(&c.wmu)
	c.bw = &connWriter{c: c}
	c.fr = http2.NewFramer(nil, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = s.maxHeaderBytes()
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(maxFrame) // what SETTINGS_MAX_FRAME_SIZE left at its default says
	c.wfr = http2.NewFramer(c.bw, nil)
	return c
}

// serve is the connection's life: settings both ways, then frames until
// the client leaves, a protocol error or the end of a GOAWAY.
func (c *conn) serve() {
	defer c.close()
	c.writeLocked(func() error {
		if err := c.wfr.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.srv.maxStreams()},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamRecvWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.srv.maxHeaderBytes()},
		); err != nil {
			return err
		}
		return c.wfr.WriteWindowUpdate(0, connRecvWindow-defaultWindow)
	})
	c.flush()
	if !c.readPreface() {
		return
	}
	for {
		if !c.frameBuffered() {
			c.flush() // a batch of requests is answered: send it
			c.armIdle()
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			if !c.readFailed(err) {
				return
			}
			continue
		}
		if err := c.process(f); err != nil {
			c.connError(err)
			return
		}
		if c.overQueued() {
			c.srv.logger().Warn("h2: closing a connection that reads nothing", "remote", c.remote)
			c.goAwayNow(http2.ErrCodeEnhanceYourCalm)
			return
		}
	}
}

// frameBuffered reports whether a whole frame is read already, so the
// next ReadFrame will not wait for the client: what was answered so far
// may wait for the next answers and leave with them. A frame cut across
// two reads must not hold back the answers before it.
func (c *conn) frameBuffered() bool {
	n := c.br.Buffered()
	if n < 9 {
		return false
	}
	hdr, _ := c.br.Peek(9)
	return n >= 9+(int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
}

func (c *conn) readPreface() bool {
	c.nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	buf := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c.br, buf); err != nil || string(buf) != http2.ClientPreface {
		return false
	}
	f, err := c.fr.ReadFrame() // still within the preface's deadline
	if err != nil {
		return false
	}
	c.nc.SetReadDeadline(time.Time{})
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		c.connError(http2.ConnectionError(http2.ErrCodeProtocol))
		return false
	}
	if err := c.onSettings(sf); err != nil {
		c.connError(err)
		return false
	}
	return true
}

// readFailed handles an error from ReadFrame: a stream error resets that
// stream and reading goes on (true); anything else ends the connection.
func (c *conn) readFailed(err error) bool {
	var se http2.StreamError
	if errors.As(err, &se) {
		c.mu.Lock()
		if se.StreamID > c.maxID && se.StreamID%2 == 1 {
			c.maxID = se.StreamID // a malformed request still opened its stream
		}
		c.mu.Unlock()
		c.resetStream(se.StreamID, se.Code)
		return true
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.connError(ce)
		return false
	}
	if errors.Is(err, http2.ErrFrameTooLarge) {
		c.goAwayNow(http2.ErrCodeFrameSize)
		return false
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.goAwayNow(http2.ErrCodeNo) // idle
	}
	return false
}

func (c *conn) process(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if !c.settings.take(time.Now()) {
			return errCalm
		}
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			if !c.pings.take(time.Now()) {
				return errCalm
			}
			data := f.Data
			c.writeLocked(func() error { return c.wfr.WritePing(true, data) })
		}
		return nil
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.goingAway = true
		if c.lastID == 0 || c.lastID > c.maxID {
			c.lastID = c.maxID
		}
		idle := c.openLocked() == 0
		c.mu.Unlock()
		if idle {
			return io.EOF
		}
		return nil
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // PRIORITY, unknown types: ignored
}

// onSettings applies the client's settings and acknowledges them.
func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			delta := int64(s.Val) - c.initWin
			c.initWin = int64(s.Val)
			if delta > 0 {
				c.stalledAt = time.Time{} // the window moved
			}
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > 1<<31-1 {
					c.mu.Unlock()
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.cond.Broadcast()
			c.mu.Unlock()
		case http2.SettingMaxFrameSize:
			c.mu.Lock()
			c.peerFrame = int(s.Val)
			c.mu.Unlock()
		}
		return nil
	}); err != nil {
		return err
	}
	c.writeLocked(c.wfr.WriteSettingsAck)
	return nil
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	incr := int64(f.Increment)
	if incr > 0 {
		c.stalledAt = time.Time{} // the window moved
	}
	if f.StreamID == 0 {
		if c.sendWin+incr > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.sendWin += incr
		c.cond.Broadcast()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
		}
		return nil // a closed stream: ignored
	}
	if st.sendWin+incr > 1<<31-1 {
		lingering := st.lingering
		c.forgetLocked(st)
		c.mu.Unlock()
		if lingering { // its response ended: reset cannot send
			c.writeRST(st.id, http2.ErrCodeFlowControl)
		} else {
			st.reset(http2.ErrCodeFlowControl, errStreamClosed)
		}
		c.mu.Lock()
		return nil
	}
	st.sendWin += incr
	c.cond.Broadcast()
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	if !c.resets.take(time.Now()) {
		return errCalm // rapid reset (CVE-2023-44487)
	}
	c.mu.Lock()
	st := c.streams[f.StreamID]
	idle := st == nil && f.StreamID > c.maxID
	if !idle {
		c.notePeerReset(f.StreamID)
	}
	if st != nil && st.lingering {
		c.forgetLocked(st)
		st = nil
	}
	c.mu.Unlock()
	if idle {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if st != nil {
		st.peerReset()
	}
	return nil
}

// onData gives a DATA frame's payload to its stream's body. Flow control
// counts the whole frame, padding included, even on a closed stream.
func (c *conn) onData(f *http2.DataFrame) error {
	id, n := f.StreamID, int64(f.Length)
	c.mu.Lock()
	if n > c.recvWin {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWin -= n
	st := c.streams[id]
	if c.wasPeerReset(id) && !c.wasReset(id) {
		// RFC 9113 5.1: a frame on a stream the client reset is a stream
		// error STREAM_CLOSED (the RST_STREAM we send makes the next
		// ones ignored).
		c.mu.Unlock()
		c.returnConnWindow(n)
		c.writeRST(id, http2.ErrCodeStreamClosed)
		return nil
	}
	if st != nil && st.lingering {
		c.onLingeringData(st, f, n)
		return nil
	}
	if st != nil && st.resetErr != nil || st == nil && c.wasReset(id) {
		// Frames in flight after our RST_STREAM are ignored (RFC 9113
		// 5.4.2); their bytes go back to the connection's window.
		c.mu.Unlock()
		c.returnConnWindow(n)
		return nil
	}
	if st == nil || st.body == nil || st.remoteDone {
		idle := id > c.maxID
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		c.returnConnWindow(n)
		if st != nil {
			st.closedFrame()
		} else {
			c.writeRST(id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	if n > st.recvWin {
		c.mu.Unlock()
		c.returnConnWindow(n)
		st.reset(http2.ErrCodeFlowControl, errStreamClosed)
		return nil
	}
	st.recvWin -= n
	data := f.Data()
	pad := n - int64(len(data))
	st.gotLen += int64(len(data))
	bad := st.declaredLen >= 0 && (st.gotLen > st.declaredLen || f.StreamEnded() && st.gotLen != st.declaredLen)
	if f.StreamEnded() {
		st.remoteDone = true
	}
	c.mu.Unlock()
	if pad > 0 {
		st.consumed(pad) // padding is nobody's to read
	}
	if bad {
		st.reset(http2.ErrCodeProtocol, errors.New("h2: body length differs from Content-Length"))
		return nil
	}
	if len(data) > 0 && !st.body.write(data) {
		st.consumed(int64(len(data))) // the handler closed the body
	}
	if f.StreamEnded() {
		st.body.closeWithError(io.EOF, nil)
	}
	return nil
}

// returnConnWindow gives back connection window for data nobody will read.
func (c *conn) returnConnWindow(n int64) {
	c.mu.Lock()
	c.recvWin += n
	c.recvUnacked += n
	send := c.takeConnUpdate()
	c.mu.Unlock()
	if send > 0 {
		c.writeLocked(func() error { return c.wfr.WriteWindowUpdate(0, uint32(send)) })
		c.flush()
	}
}

// takeConnUpdate returns how much connection window to announce now, if
// enough has accumulated to be worth a frame. Under mu.
func (c *conn) takeConnUpdate() int64 {
	if c.recvUnacked < connRecvWindow/4 {
		return 0
	}
	n := c.recvUnacked
	c.recvUnacked = 0
	return n
}

// connError ends the connection with GOAWAY carrying err's code.
func (c *conn) connError(err error) {
	code := http2.ErrCodeProtocol
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		code = http2.ErrCode(ce)
	} else if err == io.EOF {
		code = http2.ErrCodeNo
	}
	if code == http2.ErrCodeEnhanceYourCalm {
		c.srv.logger().Warn("h2: closing a connection flooding resets, PINGs or SETTINGS", "remote", c.remote)
	}
	c.goAwayNow(code)
}

// goAwayNow sends GOAWAY and closes the connection.
func (c *conn) goAwayNow(code http2.ErrCode) {
	c.mu.Lock()
	last := c.maxID
	c.mu.Unlock()
	c.writeLocked(func() error { return c.wfr.WriteGoAway(last, code, nil) })
	c.drainAndClose()
}

// goAway starts a graceful end: no new streams, the open ones finish, then
// the connection closes.
func (c *conn) goAway() {
	c.mu.Lock()
	if c.goingAway {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	c.lastID = c.maxID
	last, idle := c.lastID, c.openLocked() == 0
	c.mu.Unlock()
	c.writeLocked(func() error { return c.wfr.WriteGoAway(last, http2.ErrCodeNo, nil) })
	if idle {
		c.drainAndClose()
		return
	}
	c.flush()
}

// close ends everything still running on the connection.
func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	if c.stallTimer != nil {
		c.stallTimer.Stop()
	}
	streams := make([]*stream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	for _, st := range streams {
		st.abort(errConnClosed)
	}
	c.cancel()
	c.nc.Close()
}

// armIdleLocked sets the idle deadline when no stream is open: the
// reader calls it before each wait for frames, a handler when the last
// stream ends. The deadline counts from the last request, so PINGs and
// other frames that are not requests do not keep a connection open.
// Under mu.
func (c *conn) armIdleLocked() {
	if c.srv.IdleTimeout <= 0 || c.openLocked() > 0 || c.closed {
		return
	}
	if c.active {
		c.active, c.idleArmed = false, false
		c.idleSince = time.Now()
	}
	if c.idleArmed {
		return
	}
	c.idleArmed = true
	c.nc.SetReadDeadline(c.idleSince.Add(c.srv.IdleTimeout))
}

func (c *conn) armIdle() {
	if c.srv.IdleTimeout <= 0 {
		return
	}
	c.mu.Lock()
	c.armIdleLocked()
	c.mu.Unlock()
}

func (c *conn) disarmIdleLocked() {
	if c.idleArmed {
		c.idleArmed = false
		c.nc.SetReadDeadline(time.Time{})
	}
}

// resetStream resets stream id, open or not: an open one's handler sees
// its body and writes fail.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	st := c.streams[id]
	if st != nil && st.lingering { // its response ended: st.reset cannot send
		c.forgetLocked(st)
		st = nil
	}
	c.mu.Unlock()
	if st != nil {
		st.reset(code, errStreamClosed)
		return
	}
	c.writeRST(id, code)
}

func (c *conn) writeRST(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	c.noteReset(id)
	c.mu.Unlock()
	c.writeLocked(func() error { return c.wfr.WriteRSTStream(id, code) })
}

// writeHeaderBlock writes block as HEADERS and CONTINUATION frames no
// larger than the client accepts. Under wmu.
func (c *conn) writeHeaderBlock(id uint32, block []byte, endStream bool) error {
	max := c.frameSize()
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), max)]
		block = block[len(frag):]
		var err error
		if first {
			err = c.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: endStream, EndHeaders: len(block) == 0})
		} else {
			err = c.wfr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
		first = false
	}
	return nil
}

// writeDataFrames writes data as DATA frames within the client's frame
// size; the window was reserved by the caller. Under wmu.
func (c *conn) writeDataFrames(id uint32, data []byte, endStream bool) error {
	max := c.frameSize()
	for first := true; first || len(data) > 0; first = false {
		chunk := data[:min(len(data), max)]
		data = data[len(chunk):]
		var hdr [9]byte
		n := len(chunk)
		hdr[0], hdr[1], hdr[2] = byte(n>>16), byte(n>>8), byte(n)
		hdr[3] = byte(http2.FrameData)
		if endStream && len(data) == 0 {
			hdr[4] = byte(http2.FlagDataEndStream)
		}
		hdr[5], hdr[6], hdr[7], hdr[8] = byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id)
		c.bw.Write(hdr[:])
		if _, err := c.bw.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

func (c *conn) frameSize() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerFrame
}

// dateField is the encoded date field, made once a second. Under wmu.
func (c *conn) dateField(now time.Time) []byte {
	if sec := now.Unix(); sec != c.dateSec || c.date == nil {
		c.dateSec = sec
		c.date = AppendField(c.date[:0], "date", now.UTC().Format(http.TimeFormat))
	}
	return c.date
}

// noteStallLocked records that a stream waits for window the client has
// not opened, and starts the watch that closes the connection when the
// window stays shut past WriteTimeout. Under mu.
func (c *conn) noteStallLocked() {
	d := c.srv.WriteTimeout
	if d <= 0 || !c.stalledAt.IsZero() {
		return
	}
	c.stalledAt = time.Now()
	if c.stallTimer == nil {
		c.stallTimer = time.AfterFunc(d, c.checkStall)
	} else {
		c.stallTimer.Reset(d)
	}
}

// checkStall closes the connection with GOAWAY when its window has stayed
// shut since a stream began to wait, WriteTimeout ago: resetting only the
// streams would let the client open new ones, each holding a file.
func (c *conn) checkStall() {
	c.mu.Lock()
	if c.closed || c.stalledAt.IsZero() {
		c.mu.Unlock()
		return
	}
	if left := c.srv.WriteTimeout - time.Since(c.stalledAt); left > 0 {
		c.stallTimer.Reset(left)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.srv.logger().Warn("h2: closing a connection whose window stayed shut", "remote", c.remote, "timeout", c.srv.WriteTimeout)
	c.goAwayNow(http2.ErrCodeNo)
}
