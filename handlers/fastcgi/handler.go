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
	"sync/atomic"
	"time"

	"shoal/handlers/books"
	"shoal/handlers/cgi"
	"shoal/handlers/session"
)

// Handler serves requests through a FastCGI responder, as net/http/cgi's
// Handler runs a CGI script: the struct literal is the whole API, and the
// zero value of each field has the meaning its comment gives.
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
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// ServeHTTP reads top to bottom: map the path to a script, take the body,
// send the request, read the header block, then stream the body.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, length, status, err := h.requestBody(r)
	if err != nil {
		h.refuse(w, r, status, err)
		return
	}
	defer body.Close()
	opts := ParamsOptions{Root: h.Root, Index: h.Index, Split: h.Split, Env: h.Env, NodeName: h.NodeName, ContentLength: length}
	if h.Sessions != nil {
		opts.Session = h.Sessions.Encoded(r)
	}
	if h.User != nil {
		opts.User, opts.AuthType = h.User(r)
	}
	params, err := Params(r, opts)
	if err != nil {
		h.refuse(w, r, http.StatusNotFound, err)
		return
	}
	script := scriptOf(params)
	log := h.logger().With("script", script, "method", r.Method, "uri", r.RequestURI, "remote", books.ClientIP(r))

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var timedOut atomic.Bool
	timer := time.AfterFunc(cmp.Or(h.Timeout, 60*time.Second), func() { timedOut.Store(true); cancel() })
	defer timer.Stop()

	req := &Request{Params: params, Stderr: stderrLogger(log)}
	if length > 0 {
		req.Stdin = body
	}
	resp, err := h.Client.Do(ctx, req)
	if err != nil {
		h.failed(w, r, log, timedOut.Load(), err)
		return
	}
	defer resp.Close()
	br := bufio.NewReaderSize(resp, 8<<10)
	hdr, err := cgi.ReadHeader(br, func(line []byte) {
		log.Warn("fastcgi: header with an invalid name dropped", "line", string(line))
	})
	if err != nil {
		h.failed(w, r, log, timedOut.Load(), err)
		return
	}
	if !timer.Stop() {
		h.failed(w, r, log, true, context.DeadlineExceeded)
		return
	}
	status, redirect, err := cgi.ApplyHeader(w, r, hdr, h.Sessions, log)
	if err != nil {
		h.failed(w, r, log, false, err)
		return
	}
	if redirect != "" {
		io.Copy(io.Discard, br) // RFC 3875 6.2.2: the body is not sent
		resp.Close()
		cgi.LocalRedirect(w, r, redirect, h.Dispatch, h.Errors, log)
		return
	}
	w.WriteHeader(status)
	if err := h.stream(w, r, br, resp, status); err != nil {
		log.Warn("fastcgi: response cut short", "error", err)
		// The client must not take a truncated body for a whole one.
		panic(http.ErrAbortHandler)
	}
}

// stream copies the body as it comes, flushing whenever nothing more is at
// hand, so a slow script's output reaches the client as it is written
// while a quick one's leaves in one write.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, br *bufio.Reader, resp *Response, status int) error {
	if r.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified {
		_, err := io.Copy(io.Discard, br)
		return err
	}
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if br.Buffered() == 0 && resp.Buffered() == 0 {
				rc.Flush()
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
// timeout fired, else 502; a client that left gets nothing.
func (h *Handler) failed(w http.ResponseWriter, r *http.Request, log *slog.Logger, timedOut bool, err error) {
	switch {
	case timedOut:
		log.Warn("fastcgi: no response header within timeout", "timeout", cmp.Or(h.Timeout, 60*time.Second), "error", err)
		h.Errors.Serve(w, r, http.StatusGatewayTimeout)
	case r.Context().Err() != nil:
		log.Debug("fastcgi: client went away; request aborted")
	default:
		log.Warn("fastcgi: bad gateway", "error", err)
		h.Errors.Serve(w, r, http.StatusBadGateway)
	}
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
// body). A body with a length streams; one without is read first, in
// memory and then in an unlinked temp file, up to MaxBodyBytes.
func (h *Handler) requestBody(r *http.Request) (io.ReadCloser, int64, int, error) {
	switch {
	case r.ContentLength > 0:
		return io.NopCloser(r.Body), r.ContentLength, 0, nil
	case r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody:
		if r.Header.Get("Content-Length") != "" {
			return io.NopCloser(http.NoBody), 0, 0, nil
		}
		return io.NopCloser(http.NoBody), -1, 0, nil
	}
	return bufferBody(r.Body, cmp.Or(h.MaxBodyBytes, 32<<20))
}

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

func scriptOf(params []Param) string {
	for _, p := range params {
		if p.Name == "SCRIPT_FILENAME" {
			return p.Value
		}
	}
	return ""
}

// stderrLogger logs each line of the application's stderr records with
// the script's name; a line split across records logs as two.
func stderrLogger(log *slog.Logger) func([]byte) {
	return func(p []byte) {
		for line := range bytes.SplitSeq(bytes.TrimRight(p, "\r\n"), []byte("\n")) {
			if line = bytes.TrimRight(line, "\r"); len(line) > 0 {
				log.Warn("fastcgi stderr", "line", string(line))
			}
		}
	}
}
