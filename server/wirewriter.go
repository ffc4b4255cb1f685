package server

import (
	"net/http"
	"strconv"
	"time"

	"shoal/internal/http1"
)

// wireWriter is an http.ResponseWriter that writes HTTP/1.1 straight to
// a fast-path connection, for handlers the HTTP/1.1 fast path runs
// itself (the FastCGI relay, and what it leaves to the site's code: a
// local redirect's dispatch, an error page). Its answer is net/http's for
// the same calls: the header sorted, Date unless set, the type sniffed
// when the handler set none, Content-Length when the whole body came
// before a buffer filled (gather; net/http's is 2 KiB), else chunked,
// and a Flush sends what is there. Reused from one request to the next.
type wireWriter struct {
	c wireConn
	// extra are the header lines the listener adds (HSTS, Alt-Svc).
	extra []byte
	// isHEAD: no body goes out; close: Connection: close, and the
	// connection ends after this response.
	isHEAD, close bool

	header http.Header
	status int
	// out is what is not written yet: the body alone until the head is
	// composed (headOut), then the head and the body framed.
	out, spare []byte
	headOut    bool
	chunked    bool
	// declared is the handler's Content-Length (-1: none); sent counts
	// the body bytes composed, written counts the handler's (the books).
	declared, sent, written int64
	err                     error
}

// wireConn is what a wireWriter writes to: a fast-path connection
// (*http1.Conn), whose Date line it uses.
type wireConn interface {
	Write(p []byte) (int, error)
	// WriteLast writes a kept connection's last bytes of a response.
	WriteLast(p []byte) (int, error)
	DateLine(now time.Time) []byte
}

// gather is how much body is held before the head must go out without
// knowing the body's length.
const gather = 16 << 10

// reset readies the writer for a new response.
func (w *wireWriter) reset(c wireConn, extra []byte, isHEAD, close bool) {
	if w.header == nil {
		w.header = http.Header{}
	}
	clear(w.header)
	*w = wireWriter{c: c, extra: extra, isHEAD: isHEAD, close: close, header: w.header,
		out: w.out[:0], spare: w.spare[:0], declared: -1}
}

func (w *wireWriter) Header() http.Header { return w.header }

// WriteHeader records the status; the head goes out with the body, at a
// Flush or at the end. Informational statuses are not passed on.
func (w *wireWriter) WriteHeader(code int) {
	if w.status != 0 || code < 200 || code > 999 {
		return
	}
	w.status = code
	if cl, ok := w.header["Content-Length"]; ok && len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.declared = n
		}
	}
}

func (w *wireWriter) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

// Write adds p to the body, as net/http: refused after a status without
// a body, swallowed for HEAD, cut at the declared length.
func (w *wireWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.declared >= 0 && w.sent+int64(len(p)) > w.declared {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.isHEAD {
		return len(p), nil
	}
	if !w.headOut && len(w.out)+len(p) <= gather {
		w.out = append(w.out, p...)
		w.sent += int64(len(p))
		return len(p), nil
	}
	if !w.headOut {
		w.composeHead(false)
	}
	w.appendBody(p)
	if len(w.out) >= gather {
		w.writeOut()
	}
	return len(p), w.err
}

// Flush sends the head and what body is there (http.Flusher).
func (w *wireWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headOut {
		w.composeHead(false)
	}
	w.writeOut()
}

// end finishes the response: the head when still held (with the whole
// body's length), the chunked body's end. It reports whether the
// connection may carry another request.
func (w *wireWriter) end() (keep bool, err error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headOut {
		w.composeHead(true)
	}
	if w.chunked {
		w.out = append(w.out, "0\r\n\r\n"...)
	}
	if w.close || len(w.out) == 0 || w.err != nil {
		w.writeOut()
	} else {
		_, w.err = w.c.WriteLast(w.out)
		w.out = w.out[:0]
	}
	short := !w.isHEAD && w.bodyAllowed() && w.declared >= 0 && w.sent != w.declared
	return w.err == nil && !w.close && !short, w.err
}

// statusOrOK is the status sent, for the books.
func (w *wireWriter) statusOrOK() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// composeHead puts the head in front of the body held so far: whole,
// the body gets its length; else it goes chunked unless the handler
// declared a length.
func (w *wireWriter) composeHead(whole bool) {
	h := w.header
	body := w.out
	length := -1 // the whole body's, when known here
	switch {
	case w.status == http.StatusNotModified:
		delete(h, "Content-Type")
		fallthrough
	case !w.bodyAllowed():
		delete(h, "Content-Length")
		delete(h, "Transfer-Encoding")
		w.declared = -1
	case w.isHEAD:
	case w.declared >= 0:
	case whole:
		length = len(body)
	default:
		w.chunked = true
	}
	if _, ok := h["Content-Type"]; !ok && w.bodyAllowed() && len(body) > 0 {
		h["Content-Type"] = []string{http.DetectContentType(body)}
	}
	b := append(w.spare[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(w.status), 10)
	b = append(b, ' ')
	if text := http.StatusText(w.status); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(w.status), 10)
	}
	b = append(b, "\r\n"...)
	b = http1.AppendFields(b, h)
	if _, ok := h["Date"]; !ok {
		b = append(b, w.c.DateLine(time.Now())...)
	}
	b = append(b, w.extra...)
	if length >= 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(length), 10)
		b = append(b, "\r\n"...)
	}
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.close {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	w.headOut = true
	w.out, w.spare = b, body[:0]
	if len(body) > 0 {
		w.sent -= int64(len(body)) // counted again as they are framed
		w.appendBody(body)
	}
}

// appendBody adds p to out after the head, chunk-framed when chunked.
func (w *wireWriter) appendBody(p []byte) {
	w.sent += int64(len(p))
	if !w.chunked {
		w.out = append(w.out, p...)
		return
	}
	w.out = strconv.AppendInt(w.out, int64(len(p)), 16)
	w.out = append(w.out, "\r\n"...)
	w.out = append(w.out, p...)
	w.out = append(w.out, "\r\n"...)
}

// writeOut writes what is held.
func (w *wireWriter) writeOut() {
	if len(w.out) == 0 || w.err != nil {
		return
	}
	_, w.err = w.c.Write(w.out)
	w.out = w.out[:0]
}
