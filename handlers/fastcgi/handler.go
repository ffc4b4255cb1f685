package fastcgi

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"shoal/handlers/books"
	"shoal/handlers/cgi"
	"shoal/handlers/session"
)

// Handler serves requests through a FastCGI responder, as net/http/cgi's
// Handler runs a CGI script: the struct literal is the whole API, and the
// zero value of each field has the meaning its comment gives. A Handler
// works out what its requests share at the first one: it must not be
// changed or copied after that.
type Handler struct {
	// Client is the target's connection pool. Required.
	Client *Client
	// Root, Index, Split and Env map a request to a script (ParamsOptions).
	Root, Index, Split string
	Env                map[string]string
	// NodeName is passed as SHOAL_NODE.
	NodeName string
	// Timeout bounds the wait for the response header (a connect and a
	// queue for a worker included): then 504. Zero: 60s.
	Timeout time.Duration
	// MaxBodyBytes caps a body without a length (chunked, HTTP/2), which
	// is read whole first so CONTENT_LENGTH is exact. Zero: 32 MiB. Bodies
	// with a length are streamed; the server's own cap applies to them.
	MaxBodyBytes int64
	// Sessions gives the application HTTP_SESSION and applies its
	// X-Replace-Session. Nil: neither.
	Sessions session.Codec
	// User returns REMOTE_USER and AUTH_TYPE for r ("" for none). Nil: none.
	User func(r *http.Request) (user, authType string)
	// Errors writes 404/413/502/504 pages. Nil: generic pages.
	Errors *books.ErrorPages
	// Dispatch serves a local redirect ("Location: /path") as a GET inside
	// the server. Nil: the client gets a 302 to the path.
	Dispatch http.Handler
	// Logger gets stderr lines and failures. Nil: slog.Default().
	Logger *slog.Logger

	once   sync.Once
	shared *siteParams // what every request shares (site)
	pool   sync.Pool   // of *exchange
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *Handler) timeout() time.Duration { return cmp.Or(h.Timeout, 60*time.Second) }

// site returns what every request shares, worked out at the first one.
func (h *Handler) site() *siteParams {
	h.once.Do(func() { h.shared = newSiteParams(h.Root, h.Index, h.Split, h.Env) })
	return h.shared
}

// ServeHTTP reads top to bottom: take the body, map the path to a script,
// then respond (send the request, read the header block, stream the body).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := h.exchange(r)
	defer h.done(x)
	body, length, status, err := h.requestBody(r, x)
	if err != nil {
		h.refuse(w, r, status, err)
		return
	}
	defer body.Close()
	if err := x.params(r, length); err != nil {
		h.refuse(w, r, http.StatusNotFound, err)
		return
	}
	var stdin io.Reader
	if length > 0 && x.body == nil {
		stdin = body
	}
	if _, err := h.respond(r.Context(), w, x, stdin); err != nil {
		x.log.Warn("fastcgi: response cut short", "error", err)
		// The client must not take a truncated body for a whole one.
		panic(http.ErrAbortHandler)
	}
}

// respond sends the request x holds (its params encoded, a small body in
// x.body or stdin to stream), reads the header block and answers on w:
// the script's response, its local redirect, or the 502 or 504 page. For
// the relay (x.relay), a request that never reached the application,
// timeouts apart, is not answered (sent false): the caller serves it the
// full way. A non-nil error means the body was cut after the head went
// out.
func (h *Handler) respond(ctx context.Context, w http.ResponseWriter, x *exchange, stdin io.Reader) (sent bool, err error) {
	deadline := time.Now().Add(h.timeout())
	x.ctx = ctx
	x.req = Request{Stderr: x.stderrFunc, encoded: x.pairs.enc, body: x.body, deadline: deadline, Stdin: stdin}
	resp := &x.resp
	if err := h.Client.do(ctx, &x.req, resp); err != nil {
		if x.relay != nil && !timedOut(deadline, err) {
			return false, err
		}
		h.failed(w, x, deadline, err)
		return true, nil
	}
	defer resp.Close()
	x.br.Reset(resp)
	hdr, err := cgi.ReadHeader(x.br, x.droppedFunc)
	if err != nil {
		h.failed(w, x, deadline, err)
		return true, nil
	}
	resp.headerRead()
	var r *http.Request
	if _, ok := hdr["X-Replace-Session"]; ok || x.relay == nil {
		r = x.request() // the relay makes one only when it must
	}
	status, redirect, err := cgi.ApplyHeader(w, r, hdr, h.Sessions, &x.log)
	if err != nil {
		h.failed(w, x, time.Time{}, err)
		return true, nil
	}
	if redirect != "" {
		io.Copy(io.Discard, x.br) // RFC 3875 6.2.2: the body is not sent
		resp.Close()
		cgi.LocalRedirect(w, x.request(), redirect, h.Dispatch, h.Errors, &x.log)
		return true, nil
	}
	w.WriteHeader(status)
	return true, x.stream(w, x.meta.Method, status)
}

// stream copies the body as it comes, the records' content as they are
// (no copy on the way), flushing whenever nothing more is at hand, so a
// slow script's output reaches the client as it is written while a quick
// one's leaves in one write.
func (x *exchange) stream(w http.ResponseWriter, method string, status int) error {
	resp := &x.resp
	if method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified {
		_, err := io.Copy(io.Discard, x.br)
		return err
	}
	var rc *http.ResponseController
	write := func(p []byte) error {
		if _, err := w.Write(p); err != nil {
			return err
		}
		if resp.Buffered() == 0 {
			if rc == nil {
				rc = http.NewResponseController(w)
			}
			rc.Flush()
		}
		return nil
	}
	// What the header block's reader holds first, then straight from the
	// records.
	if n := x.br.Buffered(); n > 0 {
		p, _ := x.br.Peek(n)
		err := write(p)
		x.br.Discard(n)
		if err != nil {
			return err
		}
	}
	for {
		p, err := resp.chunk()
		if len(p) > 0 {
			if werr := write(p); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// failed answers a request that got no usable header: 504 when the
// deadline passed, else 502; a client that left gets nothing.
func (h *Handler) failed(w http.ResponseWriter, x *exchange, deadline time.Time, err error) {
	log := &x.log
	switch {
	case timedOut(deadline, err):
		log.Warn("fastcgi: no response header within timeout", "timeout", h.timeout(), "error", err)
		h.Errors.Serve(w, x.request(), http.StatusGatewayTimeout)
	case x.ctx.Err() != nil:
		log.Debug("fastcgi: client went away; request aborted")
	default:
		log.Warn("fastcgi: bad gateway", "error", err)
		h.Errors.Serve(w, x.request(), http.StatusBadGateway)
	}
}

// timedOut reports whether err is the request's deadline (zero: none)
// passing.
func timedOut(deadline time.Time, err error) bool {
	return !deadline.IsZero() && !time.Now().Before(deadline) &&
		(errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded))
}

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, err error) {
	lvl := slog.LevelWarn
	if status == http.StatusNotFound || status == http.StatusBadRequest {
		lvl = slog.LevelDebug
	}
	h.logger().Log(r.Context(), lvl, "fastcgi refused", "status", status, "reason", err.Error(),
		"method", r.Method, "uri", r.RequestURI, "remote", books.ClientIP(r))
	h.Errors.Serve(w, r, status)
}

// requestBody returns what goes to FCGI_STDIN and CONTENT_LENGTH (-1: no
// body). A small body with a length is read whole into x.body, to go out
// with the params in one write before a connection is taken (a slow
// client holds no php-fpm worker); a larger one streams; one without a
// length is read first, in memory and then in an unlinked temp file, up
// to MaxBodyBytes.
func (h *Handler) requestBody(r *http.Request, x *exchange) (io.ReadCloser, int64, int, error) {
	switch {
	case r.ContentLength > 0 && r.ContentLength <= smallBody:
		x.body = slices.Grow(x.bodyBuf[:0], int(r.ContentLength))[:r.ContentLength]
		if _, err := io.ReadFull(r.Body, x.body); err != nil {
			x.body = nil
			return nil, 0, bodyErrStatus(err), fmt.Errorf("fastcgi: reading body: %w", err)
		}
		x.bodyBuf = x.body
		return http.NoBody, r.ContentLength, 0, nil
	case r.ContentLength > 0:
		return io.NopCloser(r.Body), r.ContentLength, 0, nil
	case r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody:
		if r.Header.Get("Content-Length") != "" {
			return http.NoBody, 0, 0, nil
		}
		return http.NoBody, -1, 0, nil
	}
	return bufferBody(r.Body, cmp.Or(h.MaxBodyBytes, 32<<20))
}

// smallBody is the largest body read whole before it is sent.
const smallBody = 16 << 10

const memBody = 256 << 10

func bufferBody(body io.Reader, max int64) (io.ReadCloser, int64, int, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(body, min(memBody, max)+1))
	if err != nil {
		return nil, 0, bodyErrStatus(err), fmt.Errorf("fastcgi: reading body: %w", err)
	}
	if n <= min(memBody, max) {
		return io.NopCloser(&buf), n, 0, nil
	}
	if n > max {
		return nil, 0, http.StatusRequestEntityTooLarge, fmt.Errorf("fastcgi: body over the %d limit", max)
	}
	f, err := os.CreateTemp("", "shoal-fcgi-body-")
	if err != nil {
		return nil, 0, http.StatusInternalServerError, fmt.Errorf("fastcgi: temp file for body: %w", err)
	}
	os.Remove(f.Name()) // nothing to clean up later, whatever happens
	m, err := io.Copy(f, io.MultiReader(&buf, io.LimitReader(body, max-n+1)))
	switch {
	case err != nil:
		f.Close()
		return nil, 0, bodyErrStatus(err), fmt.Errorf("fastcgi: reading body: %w", err)
	case m > max:
		f.Close()
		return nil, 0, http.StatusRequestEntityTooLarge, fmt.Errorf("fastcgi: body over the %d limit", max)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, http.StatusInternalServerError, fmt.Errorf("fastcgi: rewinding body: %w", err)
	}
	return f, m, 0, nil
}

func bodyErrStatus(err error) int {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// exchange is one request's state, kept in a pool with its buffers: the
// encoded params, a small body, the header block's reader, the Response,
// and a logger that adds the request's attributes only to lines logged.
type exchange struct {
	h *Handler
	// r is the request ServeHTTP serves; for a relayed one (relay set),
	// made only when something needs it (request).
	r     *http.Request
	relay *Inbound
	// meta is the request's parts its params and log lines are made of.
	meta    cgi.Meta
	ctx     context.Context
	pairs   paramSink
	body    []byte // a small body read whole, or nil
	bodyBuf []byte
	br      *bufio.Reader
	req     Request
	resp    Response
	logh    requestLog
	log     slog.Logger
	// stderrFunc and droppedFunc are x's methods as funcs, made once.
	stderrFunc, droppedFunc func([]byte)
}

func (h *Handler) exchange(r *http.Request) *exchange {
	x, _ := h.pool.Get().(*exchange)
	if x == nil {
		x = &exchange{h: h, br: bufio.NewReaderSize(nil, 8<<10)}
		x.pairs.enc = make([]byte, 0, 2048)
		x.logh.x = x
		x.log = *slog.New(&x.logh)
		x.stderrFunc, x.droppedFunc = x.logStderr, x.logDropped
	}
	x.r = r
	if r != nil {
		x.meta = cgi.MetaOf(r)
	}
	x.logh.base = h.logger().Handler()
	return x
}

// request is the *http.Request of the exchange, made for a relayed one
// at the first call.
func (x *exchange) request() *http.Request {
	if x.r == nil {
		x.r = x.relay.Request()
	}
	return x.r
}

// done puts x back in the pool, without what belongs to the request.
func (h *Handler) done(x *exchange) {
	if w := x.resp.wire; cap(w) > cap(x.pairs.enc) && cap(w) <= 64<<10 {
		x.pairs.enc = w[:0] // framing grew it
	}
	x.r, x.relay, x.meta, x.ctx, x.body, x.req, x.resp = nil, nil, cgi.Meta{}, nil, nil, Request{}, Response{}
	x.pairs.list = nil
	x.logh.name, x.logh.base = "", nil
	x.br.Reset(nil)
	if cap(x.pairs.enc) > 64<<10 {
		x.pairs.enc = make([]byte, 0, 2048)
	}
	h.pool.Put(x)
}

// params encodes r's parameters into x.pairs.enc, after the room the
// request's first records take.
func (x *exchange) params(r *http.Request, length int64) error {
	h := x.h
	o := ParamsOptions{NodeName: h.NodeName, ContentLength: length}
	if h.Sessions != nil {
		o.Session = h.Sessions.Encoded(r)
	}
	if h.User != nil {
		o.User, o.AuthType = h.User(r)
	}
	return x.build(r.URL.Path, &o)
}

// build encodes the params of a request for path, whose other parts are
// in x.meta, after the room the request's first records take.
func (x *exchange) build(path string, o *ParamsOptions) error {
	x.pairs.site = x.h.site()
	x.pairs.enc = append(x.pairs.enc[:0], make([]byte, requestRoom)...)
	name, _, err := x.pairs.build(path, &x.meta, o)
	x.logh.root, x.logh.name = x.pairs.site.root, name
	return err
}

// logStderr logs each line of the application's stderr records with the
// script's name; a line split across records logs as two.
func (x *exchange) logStderr(p []byte) {
	for line := range bytes.SplitSeq(bytes.TrimRight(p, "\r\n"), []byte("\n")) {
		if line = bytes.TrimRight(line, "\r"); len(line) > 0 {
			x.log.Warn("fastcgi stderr", "line", string(line))
		}
	}
}

func (x *exchange) logDropped(line []byte) {
	x.log.Warn("fastcgi: header with an invalid name dropped", "line", string(line))
}

// requestLog is a slog.Handler that puts the request's attributes (script,
// method, uri, remote) in front of a line's own, as Logger.With would,
// but works them out only for a line that is logged.
type requestLog struct {
	x          *exchange
	base       slog.Handler
	root, name string
}

func (l *requestLog) Enabled(ctx context.Context, level slog.Level) bool {
	return l.base.Enabled(ctx, level)
}

func (l *requestLog) attrs() []slog.Attr {
	m := &l.x.meta
	return []slog.Attr{slog.String("script", l.root+l.name), slog.String("method", m.Method),
		slog.String("uri", m.URI), slog.String("remote", m.ClientIP)}
}

func (l *requestLog) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	out.AddAttrs(l.attrs()...)
	rec.Attrs(func(a slog.Attr) bool { out.AddAttrs(a); return true })
	return l.base.Handle(ctx, out)
}

// WithAttrs and WithGroup make a handler that outlives the request, so
// they fix the attributes now.
func (l *requestLog) WithAttrs(as []slog.Attr) slog.Handler {
	return l.base.WithAttrs(l.attrs()).WithAttrs(as)
}

func (l *requestLog) WithGroup(name string) slog.Handler {
	return l.base.WithAttrs(l.attrs()).WithGroup(name)
}
