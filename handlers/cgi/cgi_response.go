package cgi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"shoal/handlers/books"
	"shoal/handlers/session"
)

// Header block limits: a script that exceeds them gets 502, as one that
// never finishes its header block.
const (
	cgiHeaderLines = 200
	cgiReadBuf     = 8 << 10
	cgiCopyBuf     = 32 << 10
	cgiMaxHops     = 10
	// cgiFlushDelay is how long output may wait for more before it is flushed.
	cgiFlushDelay = 2 * time.Millisecond
)

// cgiBuffers are one response's buffers, reused across requests.
type cgiBuffers struct {
	r    *bufio.Reader
	copy []byte
}

func (st *cgiState) buffers(stdout io.Reader) *cgiBuffers {
	bb, ok := st.bufs.Get().(*cgiBuffers)
	if !ok {
		bb = &cgiBuffers{r: bufio.NewReaderSize(nil, cgiReadBuf), copy: make([]byte, cgiCopyBuf)}
	}
	bb.r.Reset(stdout)
	return bb
}

func (st *cgiState) release(bb *cgiBuffers) {
	bb.r.Reset(nil)
	st.bufs.Put(bb)
}

var (
	// errNoOutput: the script closed stdout without writing anything,
	// usually because it failed to start or crashed.
	errCGINoOutput = errors.New("cgi: script wrote no output")
	// errHeaderEnd: stdout ended inside the header block.
	errCGIHeaderEnd = errors.New("cgi: output ended before the end of the header block")
	// errBadHeader: the header block breaks RFC 3875 section 6.
	errCGIBadHeader = errors.New("cgi: malformed header")
)

// run starts the script and relays its response. It returns the path of
// a local redirect for the caller to dispatch once the slot is released.
func (h *Handler) run(w http.ResponseWriter, r *http.Request, sc *cgiScript, in *cgiInput) string {
	st := h.state()
	session := ""
	if h.Sessions != nil {
		session = h.Sessions.Encoded(r)
	}
	env := h.environ(r, sc, in.length, session)
	h.running.Add(1) // before the start, so the script never runs uncounted
	defer h.running.Add(-1)
	p, err := h.start(r, sc, env, in)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, fs.ErrPermission) {
			status = http.StatusForbidden
		}
		h.refuse(w, r, status, err.Error(), sc)
		return ""
	}
	if h.Events != nil {
		h.Events.CGIStarted()
	}
	rc := http.NewResponseController(w)
	defer p.finish(rc) // also when a panic unwinds
	p.watch(r.Context(), st.timeout, st.maxTime)

	bb := st.buffers(cgiTouchReader{p.stdout, p})
	defer st.release(bb)
	if cgiIsNPH(sc.file) {
		return h.relayNPH(w, r, rc, sc, p, bb)
	}
	hdr, err := readCGIHeader(bb.r, h.droppedHeader(r, sc))
	if err == nil {
		return h.respond(w, r, rc, sc, p, bb, hdr)
	}
	if errors.Is(err, errCGIBadHeader) {
		p.terminate(cgiStopAbandoned)
	}
	p.finish(rc)
	h.failed(w, r, sc, p, err)
	return ""
}

// respond answers with the script's parsed header block, then its body;
// or returns the path of a local redirect.
func (h *Handler) respond(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, sc *cgiScript, p *cgiProc, bb *cgiBuffers, hdr http.Header) string {
	status, redirect, err := ApplyHeader(w, r, hdr, h.Sessions, h.logger())
	switch {
	case err != nil:
		p.terminate(cgiStopAbandoned)
		p.finish(rc)
		h.failed(w, r, sc, p, err)
	case redirect != "":
		io.Copy(io.Discard, bb.r) // RFC 3875 6.2.2: the body is not sent
		if p.finish(rc); p.reason.Load() == cgiRunning {
			return redirect
		}
		h.failed(w, r, sc, p, nil)
	default:
		h.relay(w, r, rc, sc, p, bb, status)
	}
	return ""
}

// droppedHeader logs a header line of sc's whose name is not a token: the
// line is left out and the response goes on, as Apache does.
func (h *Handler) droppedHeader(r *http.Request, sc *cgiScript) func(line []byte) {
	return func(line []byte) {
		h.logger().Warn("cgi: header with an invalid name dropped", "line", string(cgiTruncate(line, 80)),
			"script", sc.file, "method", r.Method, "uri", cgiRequestURI(r), "remote", books.ClientIP(r))
	}
}

// failed answers a script that produced no usable header block.
func (h *Handler) failed(w http.ResponseWriter, r *http.Request, sc *cgiScript, p *cgiProc, err error) {
	log := h.logger().With("script", sc.file, "method", r.Method, "uri", cgiRequestURI(r), "remote", books.ClientIP(r))
	switch p.reason.Load() {
	case cgiStopTimeout, cgiStopMaxTime:
		h.logLimit(log, p, "before its header; 504")
		h.timedOut()
		h.Errors.Serve(w, r, http.StatusGatewayTimeout)
	case cgiStopClient:
		log.Debug("cgi: client went away; process group killed")
	default:
		if err == nil {
			err = errCGIHeaderEnd
		}
		log.Warn("cgi: bad gateway", "error", err, "exit", p.exitString())
		h.Errors.Serve(w, r, http.StatusBadGateway)
	}
}

// logLimit says which limit stopped the script: timeout (no I/O for that
// long) or max_time (the whole run).
func (h *Handler) logLimit(log *slog.Logger, p *cgiProc, when string) {
	st := h.state()
	if p.reason.Load() == cgiStopMaxTime {
		log.Warn("cgi: script ran past max_time; process group killed "+when, "limit", "max_time", "max_time", st.maxTime)
		return
	}
	log.Warn("cgi: script timed out: no I/O for timeout; process group killed "+when, "limit", "timeout", "timeout", st.timeout)
}

// relay writes the status and header, then streams the body.
func (h *Handler) relay(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, sc *cgiScript, p *cgiProc, bb *cgiBuffers, status int) {
	w.WriteHeader(status)
	var err error
	if r.Method == http.MethodHead || !cgiBodyAllowed(status) {
		_, err = io.Copy(io.Discard, bb.r)
	} else {
		err = cgiStream(w, rc, bb, p)
	}
	p.finish(rc)
	if reason := p.reason.Load(); reason != cgiRunning || err != nil {
		if reason == cgiStopTimeout || reason == cgiStopMaxTime {
			h.timedOut()
			h.logLimit(h.logger().With("script", sc.file, "method", r.Method, "uri", cgiRequestURI(r), "remote", books.ClientIP(r)),
				p, "after its header; response cut short")
		}
		// Close the connection rather than end the response cleanly: the
		// client must not take a truncated body for a complete one.
		panic(http.ErrAbortHandler)
	}
}

func (h *Handler) timedOut() {
	if h.Events != nil {
		h.Events.CGITimedOut()
	}
}

// cgiStream copies the script's output to the client as it comes. It flushes
// when the script pauses (writes nothing for cgiFlushDelay): a quick script's
// whole response leaves in one write, with a Content-Length, while a slow
// one's output reaches the client as it is written.
func cgiStream(w http.ResponseWriter, rc *http.ResponseController, bb *cgiBuffers, p *cgiProc) error {
	pending := true // written but not flushed; the header counts
	for {
		var n int
		var err error
		if pending && bb.r.Buffered() == 0 {
			p.setReadDeadline(time.Now().Add(cgiFlushDelay))
			n, err = bb.r.Read(bb.copy)
			p.setReadDeadline(time.Time{})
			if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && p.reason.Load() == cgiRunning {
				rc.Flush()
				pending = false
				continue
			}
		} else {
			n, err = bb.r.Read(bb.copy)
		}
		if n > 0 {
			if _, werr := w.Write(bb.copy[:n]); werr != nil {
				p.terminate(cgiStopClient)
				return werr
			}
			p.touch() // the client took it: a slow download is not idle
			pending = true
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func cgiBodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// ReadHeader reads a CGI-style header block (a CGI script's, a FastCGI
// responder's): "Name: value" lines ended by LF or CRLF, up to an empty
// line. A line whose name is not a token is left out and handed to
// dropped (nil: such a line is an error); a line without a colon, an
// overlong line or too many lines are errors (errCGIBadHeader).
func ReadHeader(br *bufio.Reader, dropped func(line []byte)) (http.Header, error) {
	return readCGIHeader(br, dropped)
}

func readCGIHeader(br *bufio.Reader, dropped func(line []byte)) (http.Header, error) {
	hdr := make(http.Header, 4)
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				return nil, fmt.Errorf("%w: line longer than %d bytes", errCGIBadHeader, cgiReadBuf)
			case n == 0 && len(line) == 0 && err == io.EOF:
				return nil, errCGINoOutput
			case err == io.EOF:
				return nil, errCGIHeaderEnd
			}
			return nil, fmt.Errorf("cgi: reading header: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if n == 0 {
				return nil, fmt.Errorf("%w: empty header block", errCGIBadHeader)
			}
			return hdr, nil
		}
		if n >= cgiHeaderLines {
			return nil, fmt.Errorf("%w: more than %d lines", errCGIBadHeader, cgiHeaderLines)
		}
		colon := bytes.IndexByte(line, ':')
		if colon > 0 && !cgiToken(line[:colon]) && dropped != nil {
			dropped(line)
			continue
		}
		if colon <= 0 || !cgiToken(line[:colon]) {
			return nil, fmt.Errorf("%w: %q", errCGIBadHeader, cgiTruncate(line, 80))
		}
		hdr.Add(string(line[:colon]), string(bytes.TrimSpace(line[colon+1:])))
	}
}

func cgiTruncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// cgiToken reports whether b is an RFC 9110 token.
func cgiToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// cgiHopHeaders belong to one connection and are the server's to set.
var cgiHopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Te", "Trailer", "Upgrade"}

// ApplyHeader turns a script's header block into the response header
// on w (RFC 3875 6.2, 6.3) and returns the status, or the path of a local
// redirect to dispatch instead; X-Replace-Session is applied through
// sessions (nil: dropped with a log line) and never reaches the client.
// r is read only for that: a caller without a request at hand (a fast
// path's relay) may pass nil when hdr has no X-Replace-Session.
// It writes nothing: the caller calls WriteHeader.
func ApplyHeader(w http.ResponseWriter, r *http.Request, hdr http.Header, sessions session.Codec, log *slog.Logger) (status int, localRedirect string, err error) {
	status, hadStatus := http.StatusOK, false
	if s, ok := hdr["Status"]; ok {
		code, err := parseCGIStatus(s[0])
		if err != nil {
			return 0, "", err
		}
		status, hadStatus = code, true
		delete(hdr, "Status")
	}
	// Before a local redirect too: its target may be the page that shows
	// what the script just stored.
	if vs, ok := hdr["X-Replace-Session"]; ok {
		delete(hdr, "X-Replace-Session")
		cgiReplaceSession(w, r, vs[len(vs)-1], sessions, log)
	}
	if loc := hdr.Get("Location"); loc != "" {
		if cgiLocalPath(loc) && status == http.StatusOK {
			return 0, loc, nil
		}
		if !hadStatus {
			status = http.StatusFound
		}
	}
	for _, k := range cgiHopHeaders {
		delete(hdr, k)
	}
	if cl, ok := hdr["Content-Length"]; ok {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err != nil || n < 0 || len(cl) > 1 {
			delete(hdr, "Content-Length")
		}
	}
	dst := w.Header()
	for k, vs := range hdr {
		if k == "Set-Cookie" {
			dst[k] = append(dst[k], vs...) // the session's cookie may be there already
		} else {
			dst[k] = vs
		}
	}
	if _, ok := hdr["Content-Type"]; !ok {
		dst["Content-Type"] = nil // no sniffing: the script did not say
	}
	return status, "", nil
}

func cgiReplaceSession(w http.ResponseWriter, r *http.Request, encoded string, sessions session.Codec, log *slog.Logger) {
	if sessions == nil {
		log.Warn("cgi: X-Replace-Session from a script, but sessions are off", "uri", cgiRequestURI(r))
		return
	}
	if err := sessions.Replace(w, r, encoded); err != nil {
		log.Error("cgi: replacing session", "error", err, "uri", cgiRequestURI(r), "remote", books.ClientIP(r))
	}
}

// parseCGIStatus reads "Status: 418 I'm a teapot": a three-digit code a
// response can carry, then an optional reason.
func parseCGIStatus(s string) (int, error) {
	code, _, _ := strings.Cut(s, " ")
	n, err := strconv.Atoi(code)
	if err != nil || len(code) != 3 || n < 200 || n > 599 {
		return 0, fmt.Errorf("%w: status %q", errCGIBadHeader, cgiTruncate([]byte(s), 40))
	}
	return n, nil
}

// cgiLocalPath reports a Location that is a path on this server (RFC 3875
// local-Location), not "//host/..." which is a URL without a scheme.
func cgiLocalPath(loc string) bool {
	return strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") && !strings.HasPrefix(loc, "/\\")
}

type cgiHopsKey struct{}

// localRedirect serves a local redirect as a fresh GET of the new path
// through Dispatch (the site's chain), as Apache's mod_cgi does.
func (h *Handler) localRedirect(w http.ResponseWriter, r *http.Request, loc string) {
	LocalRedirect(w, r, loc, h.Dispatch, h.Errors, h.logger())
}

// LocalRedirect serves a script's local redirect (RFC 3875 6.2.2, a bare
// "Location: /path") as a fresh GET of that path through dispatch, at most
// a few hops deep; nil dispatch: the client gets a 302 to the path.
func LocalRedirect(w http.ResponseWriter, r *http.Request, loc string, dispatch http.Handler, errs *books.ErrorPages, log *slog.Logger) {
	hops, _ := r.Context().Value(cgiHopsKey{}).(int)
	u, err := url.ParseRequestURI(loc)
	if err != nil || hops >= cgiMaxHops {
		log.Warn("cgi: local redirect refused", "location", loc, "hops", hops, "uri", cgiRequestURI(r))
		errs.Serve(w, r, http.StatusBadGateway)
		return
	}
	if dispatch == nil {
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusFound)
		return
	}
	r2 := r.Clone(context.WithValue(r.Context(), cgiHopsKey{}, hops+1))
	r2.Method = http.MethodGet
	r2.URL.Path, r2.URL.RawPath, r2.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
	r2.RequestURI = loc
	r2.Body, r2.ContentLength, r2.TransferEncoding = http.NoBody, 0, nil
	r2.Header.Del("Content-Length")
	r2.Header.Del("Content-Type")
	dispatch.ServeHTTP(w, r2)
}
