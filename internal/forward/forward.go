package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"shoal/internal/rawio"
)

// Request is what Forward sends: a request head and its body.
type Request struct {
	// Method, Target (the request-target: "/path?query") and Host.
	Method, Target, Host string
	// Header is the client's header (canonical names), sent without its
	// hop-by-hop fields, the fields its Connection names, and those in
	// Drop. Fields is the same for a head kept as a list (names in any
	// case), Lines for a header block as the client sent it (lines
	// ending in CR LF or LF, up to an empty line or the end; names in
	// any case; a line without a colon is skipped). Any of the three may
	// be set.
	Header http.Header
	Fields []Field
	Lines  string
	// Drop names (canonical) fields of Header and Fields not sent.
	Drop map[string]bool
	// DropPrefix, when set, drops every field whose canonical name
	// starts with it (a server's own internal headers).
	DropPrefix string
	// Extra fields are sent after the client's.
	Extra []Field
	// Body is sent after the head: ContentLength bytes, or chunked when
	// ContentLength is -1. Nil or ContentLength 0: no body.
	Body          io.Reader
	ContentLength int64
	// HeaderTimeout bounds the wait for the response head once the
	// request is written. Zero: none (the context only).
	HeaderTimeout time.Duration
	// TimeoutFromDial: on a connection dialed for this request,
	// HeaderTimeout runs from the start of the dial, so that it bounds
	// the whole attempt (the cluster's peer_timeout) rather than come on
	// top of a slow connect or handshake.
	TimeoutFromDial bool
	// Abort, when set, ends the exchange as the context does once it is
	// done, its cause reported (a cluster peer found dead): a second
	// context, without the cost of deriving one from both.
	Abort context.Context
	// Now, when set, is the time the request arrived, which the pool's
	// idle check takes instead of reading the clock again (a server
	// read it for its books); a few microseconds old is close enough.
	Now time.Time
}

// Sink receives one response: the head once, then the body. A server's
// own HTTP/1.1 path can implement it to write to its connection; an
// http.ResponseWriter takes ResponseWriterSink.
type Sink interface {
	// WriteHead gets the response head; the body follows. Fields h.Hop
	// marks must not be passed on. h is the connection's and is reused
	// for its next response: keep its strings, not h. An error means the
	// Sink wrote nothing (it refuses the answer): Forward returns it
	// wrapped in ErrNoResponse.
	WriteHead(h *Head) error
	// Write gets the body, as it comes.
	Write(p []byte) (int, error)
	// Flush pushes what was written to the client; called after each
	// write of a body without a length or of server-sent events.
	Flush() error
	// End says the body is complete (a sink that frames or buffers the
	// body finishes it here); not called when it was cut.
	End() error
}

// ErrNoResponse wraps every error that came before anything reached the
// Sink: the caller may answer itself (502, 504) or try another target.
var ErrNoResponse = errors.New("forward: no response")

// ErrHeaderTimeout: no response head within Request.HeaderTimeout. It is
// wrapped with the connection's deadline error, a net.Error whose
// Timeout is true.
var ErrHeaderTimeout = errors.New("forward: no response head in time")

// errSinkWrite: the Sink (the client) failed, not the target.
var errSinkWrite = errors.New("forward: writing to the client")

// Lean reports whether Forward handles r: not an upgrade (WebSocket),
// not CONNECT, no Expect: 100-continue. Send the rest through
// httputil.ReverseProxy.
func Lean(r *http.Request) bool {
	return r.Method != http.MethodConnect && len(r.Header["Upgrade"]) == 0 && len(r.Header["Expect"]) == 0
}

// aLongTimeAgo makes every pending read and write fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// Forward sends req on a pooled connection (a new one when none is idle)
// and streams the response to dst. A connection found closed by the
// target before any answer is retried once on a new one when the body
// could not have been consumed. An error wrapping ErrNoResponse means
// nothing reached dst; any other means the response was cut after its
// head went out.
func (p *Pool) Forward(ctx context.Context, req *Request, dst Sink) error {
	if !isTokenString(req.Method) || !visible(req.Target) || req.Target == "" || !visible(req.Host) {
		return fmt.Errorf("%w: %w", ErrNoResponse, errRequestLine)
	}
	hasBody := req.Body != nil && req.ContentLength != 0
	// once: a request that cannot go again after a stale connection
	// failed it; a kept connection is checked before it carries one.
	once := hasBody || !idempotent(req.Method)
	for attempt := 0; ; attempt++ {
		c, reused, err := p.get(ctx, req.Abort, req.Now)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNoResponse, err)
		}
		if reused && once && c.readDeadline {
			c.nc.SetReadDeadline(time.Time{}) // else alive sees a timeout
			c.readDeadline = false
		}
		if reused && once && !alive(c.nc) {
			c.nc.Close()
			if c, reused, err = p.dialNew(ctx, req.Abort); err != nil {
				return fmt.Errorf("%w: %w", ErrNoResponse, err)
			}
		}
		err = p.exchange(ctx, c, req, hasBody, dst)
		if err == nil || !errors.Is(err, errStale) {
			return err
		}
		if !reused || hasBody || attempt > 0 || ctx.Err() != nil {
			// hasBody: the body reader is spent.
			return fmt.Errorf("%w: %w", ErrNoResponse, err)
		}
		// A kept connection the target had closed meanwhile: the request
		// never reached it, so it goes again on a fresh one.
	}
}

// errRequestLine: a method, target or Host that would not read back as
// one request line and one Host field.
var errRequestLine = errors.New("forward: method, target or host not sendable")

// visible: no space, no control byte.
func visible(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// idempotent: methods net/http's Transport sends again on a new
// connection when a kept one failed.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// errStale: the connection closed before any byte of a response.
var errStale = errors.New("forward: connection closed before a response")

// exchange makes one round trip on c; c is kept or closed.
func (p *Pool) exchange(ctx context.Context, c *conn, req *Request, hasBody bool, dst Sink) (err error) {
	var stop func() bool
	if ctx.Done() != nil { // a server's own path passes one that never ends
		stop = context.AfterFunc(ctx, c.abort)
	}
	var stopAbort func() bool
	if req.Abort != nil {
		stopAbort = context.AfterFunc(req.Abort, c.abort)
	}
	keep := false
	var bodyDone chan error
	defer func() {
		cancelled := stop != nil && !stop()
		if stopAbort != nil && !stopAbort() {
			cancelled = true
			if ctx.Err() == nil {
				ctx = req.Abort // the cause to report
			}
		}
		if bodyDone != nil {
			// A body still being sent when the answer is complete: the
			// target answered without reading it all; the connection
			// cannot carry another request.
			select {
			case berr := <-bodyDone:
				keep = keep && berr == nil
			default:
				keep = false
				c.nc.SetDeadline(aLongTimeAgo)
				<-bodyDone
			}
		}
		if keep && !cancelled && c.br.Buffered() == 0 {
			p.put(c)
			return
		}
		c.nc.Close()
		if cancelled && err != nil {
			if errors.Is(err, ErrNoResponse) || errors.Is(err, errStale) {
				err = fmt.Errorf("%w: %w", ErrNoResponse, context.Cause(ctx))
			} else {
				err = fmt.Errorf("forward: %w", context.Cause(ctx))
			}
		}
	}()
	writeHead(c.bw, req, hasBody)
	if rc, ok := c.nc.(*rawio.Conn); ok && !hasBody && idempotent(req.Method) {
		// Sent with the first read of the answer; a failed send shows
		// there, as a reset, which makes the request stale all the same.
		rc.DeferWrite()
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("%w: %w", errStale, err) // the target got no whole request
	}
	if hasBody {
		bodyDone = make(chan error, 1)
		// The goroutine gets copies: what it captures moves to the heap.
		body, n, done := req.Body, req.ContentLength, bodyDone
		go func() {
			err := writeBody(c.bw, body, n)
			if err != nil {
				c.nc.SetDeadline(aLongTimeAgo) // no answer can come now
			}
			done <- err
		}()
	}
	c.headerDeadline(req)
	h, err := readFinalHead(c.br, &c.heads)
	if err != nil {
		if (errors.Is(err, io.EOF) || isReset(err)) && idempotent(req.Method) {
			// The target may have run the request before it closed: only
			// one that may run twice is sent again, as net/http does.
			return fmt.Errorf("%w: %w", errStale, err)
		}
		if req.HeaderTimeout > 0 && isDeadline(err) && ctx.Err() == nil {
			return fmt.Errorf("%w: %w: %w", ErrNoResponse, ErrHeaderTimeout, err)
		}
		return fmt.Errorf("%w: %w", ErrNoResponse, err)
	}
	if c.readDeadline && !h.buffered(c.br, req.Method) {
		// The header timeout does not bound the body. A body already
		// read whole needs no more reads: the next request sets its own.
		c.nc.SetReadDeadline(time.Time{})
		c.readDeadline = false
	}
	if err := dst.WriteHead(h); err != nil {
		return fmt.Errorf("%w: %w", ErrNoResponse, err)
	}
	if err := copyBody(dst, c.br, h, req.Method); err != nil {
		return err
	}
	if err := dst.End(); err != nil {
		return fmt.Errorf("%w: %w", errSinkWrite, err)
	}
	keep = !h.Close
	return nil
}

// headerDeadline sets the time the response head must come by: the
// header timeout from now, or from the dial for the first request of a
// connection dialed for it when the request says so; none without one.
func (c *conn) headerDeadline(req *Request) {
	dialed := c.dialed
	c.dialed = time.Time{} // the dial counts for its first request only
	switch {
	case req.HeaderTimeout > 0 && req.TimeoutFromDial && !dialed.IsZero():
		c.nc.SetReadDeadline(dialed.Add(req.HeaderTimeout))
		c.readDeadline = true
	case req.HeaderTimeout > 0:
		if rc, ok := c.nc.(*rawio.Conn); ok {
			// Within 1/16 of the timeout the deadline the last request
			// set stays: a kept connection's timer moves now and then.
			rc.ReadWithin(req.HeaderTimeout)
		} else {
			c.nc.SetReadDeadline(time.Now().Add(req.HeaderTimeout))
		}
		c.readDeadline = true
	case c.readDeadline:
		c.nc.SetReadDeadline(time.Time{})
		c.readDeadline = false
	}
}

// readFinalHead skips informational (1xx) responses: 100 Continue is
// not asked for, 103 Early Hints are dropped.
func readFinalHead(br *bufio.Reader, hc *headCache) (*Head, error) {
	for {
		h, err := readHead(br, hc)
		if err != nil {
			return nil, err
		}
		if h.Status >= 200 {
			return h, nil
		}
		if h.Status == http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("%w: 101 to a request that asked no upgrade", errHead)
		}
	}
}

// writeHead writes the request head to bw; bufio keeps the error for the
// Flush that follows.
func writeHead(bw *bufio.Writer, req *Request, hasBody bool) {
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(req.Target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(req.Host)
	bw.WriteString("\r\n")
	conn := connectionNames(req)
	for name, values := range req.Header {
		if req.dropped(name, conn) {
			continue
		}
		for _, v := range values {
			writeField(bw, name, v)
		}
	}
	for _, f := range req.Fields {
		if !isTokenString(f.Name) || req.dropped(canonical(f.Name), conn) {
			continue
		}
		writeField(bw, f.Name, f.Value)
	}
	for rest := req.Lines; rest != ""; {
		var f Field
		if f, rest = nextLineField(rest); f.Name != "" && !req.dropped(canonical(f.Name), conn) {
			writeField(bw, f.Name, f.Value)
		}
	}
	for _, f := range req.Extra {
		writeField(bw, f.Name, f.Value)
	}
	switch {
	case hasBody && req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), req.ContentLength, 10))
		bw.WriteString("\r\n")
	case hasBody:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
}

// connectionNames are the values of the client's Connection fields: the
// names they list are hop-by-hop too.
func connectionNames(req *Request) []string {
	conn := req.Header["Connection"]
	for _, f := range req.Fields {
		if strings.EqualFold(f.Name, "Connection") {
			conn = append(conn[:len(conn):len(conn)], f.Value)
		}
	}
	for rest := req.Lines; rest != ""; {
		// Only a line nextLineField reads as a Connection field: the name,
		// then the colon (no space between, or it is no field).
		var line string
		line, rest = cutLine(rest)
		if len(line) > 10 && line[10] == ':' && strings.EqualFold(line[:10], "Connection") {
			conn = append(conn[:len(conn):len(conn)], strings.Trim(line[11:], " \t"))
		}
	}
	return conn
}

// isTokenString: name is a field name (RFC 9110 token).
func isTokenString(name string) bool {
	for i := 0; i < len(name); i++ {
		if !isToken(name[i]) {
			return false
		}
	}
	return name != ""
}

// nextLineField splits the first field off a header block: a line that
// is no field gives an empty Name; the empty line ends the block (rest
// is "" then).
func nextLineField(lines string) (f Field, rest string) {
	line, rest := cutLine(lines)
	if line == "" {
		return Field{}, ""
	}
	name, value, ok := strings.Cut(line, ":")
	if !ok || !isTokenString(name) {
		return Field{}, rest // no field, or one no parser downstream may read alike
	}
	return Field{Name: name, Value: strings.Trim(value, " \t")}, rest
}

// dropped reports whether the field name (canonical) stays behind.
func (req *Request) dropped(name string, conn []string) bool {
	if isHopByHop(name) || req.Drop[name] || req.DropPrefix != "" && strings.HasPrefix(name, req.DropPrefix) {
		return true
	}
	if name == "Content-Length" || name == "Host" {
		return true // framing and Host are this side's own
	}
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(tok, " \t"), name) {
				return true
			}
		}
	}
	return false
}

// writeField writes one field; one whose value holds a control byte
// (impossible from net/http, possible from a caller's raw head) is left
// out, as net/http's client refuses it, so nothing can smuggle a field
// or a request past the target's parser.
func writeField(bw *bufio.Writer, name, value string) {
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
			return
		}
	}
	bw.WriteString(name)
	bw.WriteString(": ")
	bw.WriteString(value)
	bw.WriteString("\r\n")
}

// writeBody sends the request body: exactly n bytes, or chunked for -1.
func writeBody(bw *bufio.Writer, body io.Reader, n int64) error {
	if n > 0 {
		m, err := io.CopyN(bw, body, n)
		if err == nil {
			err = bw.Flush()
		} else if m < n && errors.Is(err, io.EOF) {
			err = fmt.Errorf("forward: request body ended after %d of %d bytes: %w", m, n, io.ErrUnexpectedEOF)
		}
		return err
	}
	buf := make([]byte, 16<<10)
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			bw.WriteString(strconv.FormatInt(int64(k), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:k])
			bw.WriteString("\r\n")
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			bw.WriteString("0\r\n\r\n")
			return bw.Flush()
		}
		if rerr != nil {
			return rerr
		}
	}
}

// Body is what Forward should send of r's body, and its length (-1:
// chunked). A request of HTTP/2 or HTTP/3 carries no length, and most
// often no body either (a GET): one byte is read first, so that such a
// request goes on without a body, as net/http's Transport sends it, and
// not as an empty chunked one, which a target may take for an upload it
// must wait for before it notices anything (Go's server watches for a
// closed connection only once the body is read).
func Body(r *http.Request) (io.Reader, int64) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, 0
	}
	if r.ContentLength > 0 {
		return r.Body, r.ContentLength
	}
	var first [1]byte
	n, err := io.ReadFull(r.Body, first[:])
	if n == 0 && err == io.EOF {
		return nil, 0
	}
	return io.MultiReader(bytes.NewReader(first[:n]), r.Body), -1
}
