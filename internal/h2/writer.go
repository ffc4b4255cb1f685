package h2

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

// respBufSize is how much of a body is held before it goes out as DATA: a
// response that fits is sent with its Content-Length and END_STREAM.
const respBufSize = 8 << 10

// responseWriter is the http.ResponseWriter of one stream.
type responseWriter struct {
	st     *stream
	req    *http.Request
	header http.Header
	snap   http.Header // the header as it was at WriteHeader
	status int
	isHead bool

	wroteHeader bool // a final status is chosen
	sentHeader  bool // its HEADERS went out
	buf         []byte
	written     int64 // body bytes the handler wrote
	declared    int64 // its Content-Length; -1: none
	trailers    []string
}

func newResponseWriter(st *stream, req *http.Request) *responseWriter {
	return &responseWriter{st: st, req: req, header: http.Header{}, declared: -1, isHead: req.Method == http.MethodHead}
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.wroteHeader {
		return
	}
	if code < 200 {
		if code != http.StatusSwitchingProtocols {
			w.writeInformational(code)
		}
		return
	}
	w.wroteHeader, w.status = true, code
	w.snap = w.header.Clone()
	if v := w.snap.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.declared = n
		} else {
			delete(w.snap, "Content-Length")
		}
	}
	for _, v := range w.snap["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
				w.trailers = append(w.trailers, k)
			}
		}
	}
}

func (w *responseWriter) Write(p []byte) (int, error) { return w.write(len(p), p, "") }

func (w *responseWriter) WriteString(s string) (int, error) { return w.write(len(s), nil, s) }

func (w *responseWriter) write(n int, p []byte, s string) (int, error) {
	total := n
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.declared >= 0 && w.written+int64(n) > w.declared {
		return 0, http.ErrContentLength
	}
	w.written += int64(n)
	if n == 0 {
		return n, nil
	}
	if w.buf == nil {
		w.buf = w.st.c.srv.respBufs.get(respBufSize)
	}
	for n > 0 {
		room := cap(w.buf) - len(w.buf)
		if room == 0 {
			if err := w.flushBody(false); err != nil {
				return 0, err
			}
			continue
		}
		k := min(room, n)
		if p != nil {
			w.buf = append(w.buf, p[:k]...)
			p = p[k:]
		} else {
			w.buf = append(w.buf, s[:k]...)
			s = s[k:]
		}
		n -= k
	}
	return total, nil
}

// Flush sends what is buffered, as http.Flusher.
func (w *responseWriter) Flush() { w.FlushError() }

// FlushError is Flush that reports failure (http.ResponseController).
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if err := w.flushBody(false); err != nil {
		return err
	}
	return w.st.c.flush()
}

// SetReadDeadline bounds the reading of the request body.
func (w *responseWriter) SetReadDeadline(t time.Time) error {
	if w.st.body != nil {
		w.st.body.setReadDeadline(t)
	}
	return nil
}

// SetWriteDeadline moves the response's deadline; past it the stream is
// reset.
func (w *responseWriter) SetWriteDeadline(t time.Time) error {
	st := w.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.wdTimer != nil {
		st.wdTimer.Stop()
		st.wdTimer = nil
	}
	if t.IsZero() || st.handlerDone {
		return nil
	}
	st.wdTimer = time.AfterFunc(time.Until(t), func() {
		st.reset(http2.ErrCodeCancel, errWriteTimeout)
	})
	return nil
}

// EnableFullDuplex: HTTP/2 always is.
func (w *responseWriter) EnableFullDuplex() error { return nil }

var errWriteTimeout = fmt.Errorf("h2: response: %w", os.ErrDeadlineExceeded)

// finish sends the rest of the response once the handler has returned.
func (w *responseWriter) finish() {
	defer w.release()
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	trailers := w.trailerBlock()
	if !w.sentHeader && w.declared < 0 && bodyAllowed(w.status) && (len(w.buf) > 0 || !w.isHead) {
		w.declared = int64(len(w.buf))
		w.snap.Set("Content-Length", strconv.Itoa(len(w.buf)))
	}
	if w.declared >= 0 && w.written < w.declared && !w.isHead && bodyAllowed(w.status) {
		w.st.reset(http2.ErrCodeInternal, errStreamClosed) // a short body must not look whole
		return
	}
	if w.flushBody(trailers == nil) != nil || trailers == nil {
		return
	}
	w.sendTrailers(trailers)
}

func (w *responseWriter) release() {
	if w.buf != nil {
		w.st.c.srv.respBufs.put(w.buf)
		w.buf = nil
	}
}

// flushBody sends the header if it has not gone yet and then what is
// buffered; end marks the last of the stream.
func (w *responseWriter) flushBody(end bool) error {
	st, c := w.st, w.st.c
	if w.isHead {
		return w.flushHead(end)
	}
	if !w.sentHeader {
		endHeaders := end && len(w.buf) == 0
		if err := w.sendHeader(endHeaders); err != nil {
			return err
		}
		if endHeaders {
			return nil
		}
	}
	data := w.buf
	for len(data) > 0 || end {
		n := 0
		if len(data) > 0 {
			var err error
			if n, err = st.reserve(len(data)); err != nil {
				return err
			}
		}
		last := end && n == len(data)
		if err := c.writeStreamData(st, data[:n], last); err != nil {
			return err
		}
		data = data[n:]
		if last {
			break
		}
	}
	w.buf = w.buf[:0]
	return nil
}

// flushHead is flushBody for HEAD: the body is gathered as for GET, so
// that the header says what GET's would (the sniffed Content-Type, the
// Content-Length of a body that fits), and then dropped.
func (w *responseWriter) flushHead(end bool) error {
	sent := w.sentHeader
	if !sent {
		if err := w.sendHeader(end); err != nil {
			return err
		}
	}
	w.buf = w.buf[:0]
	if sent && end {
		return w.st.c.writeStreamData(w.st, nil, true)
	}
	return nil
}

// sendHeader sends the response's HEADERS.
func (w *responseWriter) sendHeader(endStream bool) error {
	st, c := w.st, w.st.c
	w.sentHeader = true
	h := w.snap
	if _, ok := h["Content-Type"]; !ok && bodyAllowed(w.status) && len(w.buf) > 0 {
		h.Set("Content-Type", http.DetectContentType(w.buf))
	}
	blk := appendStatus(make([]byte, 0, 256), w.status)
	if _, ok := h["Date"]; !ok {
		blk = AppendField(blk, "date", time.Now().UTC().Format(http.TimeFormat))
	}
	blk = appendHeader(blk, h)
	return c.writeStreamHeaders(st, blk, endStream)
}

// writeInformational sends a 1xx response with the header as it is now.
func (w *responseWriter) writeInformational(code int) {
	c := w.st.c
	c.writeStreamHeaders(w.st, appendHeader(appendStatus(nil, code), w.header), false)
	c.flush()
}

// trailerBlock encodes the trailers: the declared ones that have a value
// and any http.TrailerPrefix key. Nil when there are none.
func (w *responseWriter) trailerBlock() []byte {
	var blk []byte
	for _, k := range w.trailers {
		for _, v := range w.header[k] {
			blk = appendValid(blk, k, v)
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vv {
				blk = appendValid(blk, name, v)
			}
		}
	}
	return blk
}

// sendTrailers ends the stream with the trailers' HEADERS.
func (w *responseWriter) sendTrailers(blk []byte) {
	w.st.c.writeStreamHeaders(w.st, blk, true)
}

// appendHeader encodes h, leaving out what HTTP/2 forbids (RFC 9113
// 8.2.2) and values that could not be sent safely.
func appendHeader(blk []byte, h http.Header) []byte {
	for k, vv := range h {
		switch strings.ToLower(k) {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			continue
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vv {
			blk = appendValid(blk, k, v)
		}
	}
	return blk
}

func appendValid(blk []byte, k, v string) []byte {
	if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
		return blk
	}
	return AppendField(blk, strings.ToLower(k), v)
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
