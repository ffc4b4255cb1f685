package server

import (
	"bytes"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The fast path also answers GET and HEAD of template pages when no
// cluster runs: the site's own chain (bookkeeping, sessions, compression,
// the page) writes into a pageResponse, which is then sent in one writev.
// A page is rendered whole in memory before it is sent anyway, so nothing
// streams that could here; what changes is only that no net/http
// connection machinery runs. The response follows net/http's rules for
// what it adds (Date, Content-Length, a sniffed Content-Type) and drops
// (bodies of HEAD, 1xx, 204 and 304).

// pageRequest builds the *http.Request net/http would have made of h. Its
// context is the background one: a page renders in memory and does not
// wait on the client.
func pageRequest(h *requestHead, remote string) *http.Request {
	// The fast path's targets are plain (no escapes, no dot segments), so
	// the URL is the target cut at '?', as url.ParseRequestURI would make it.
	_, query, hasQuery := strings.Cut(h.target, "?")
	u := &url.URL{Path: h.path, RawQuery: query, ForceQuery: hasQuery && query == ""}
	hdr := make(http.Header, 8)
	for rest := h.lines; len(rest) > 0; {
		nl := bytes.IndexByte(rest, '\n')
		line := rest[:nl-1] // parseHead checked every line ends in CRLF
		rest = rest[nl+1:]
		if len(line) == 0 {
			break
		}
		name, value, _ := splitHeader(line)
		key := commonHeaderKey(name)
		if key == "" {
			key = textproto.CanonicalMIMEHeaderKey(string(name))
		}
		hdr[key] = append(hdr[key], string(value))
	}
	delete(hdr, "Host") // net/http moves it to Request.Host
	if hdr.Get("Pragma") == "no-cache" && len(hdr["Cache-Control"]) == 0 {
		hdr.Set("Cache-Control", "no-cache") // as net/http does for HTTP/1.0 caches
	}
	method := http.MethodGet
	if h.head {
		method = http.MethodHead
	}
	return &http.Request{Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hdr, Body: http.NoBody, Host: h.host, RemoteAddr: remote, RequestURI: h.target, Close: h.close}
}

// commonHeaderKey returns the canonical form of a few request header
// names browsers send in that form already, without an allocation; ""
// for any other name.
func commonHeaderKey(name []byte) string {
	for _, k := range [...]string{"User-Agent", "Accept", "Accept-Encoding", "Accept-Language", "Cookie", "Referer", "Connection", "Cache-Control", "Upgrade-Insecure-Requests"} {
		if string(name) == k {
			return k
		}
	}
	return ""
}

// pageResponse is the ResponseWriter of a page answered on the fast path.
type pageResponse struct {
	header http.Header
	// sent is the header as of WriteHeader, as net/http keeps it. It is
	// taken only when the handler looks at the header again after
	// WriteHeader (until then header is that snapshot); nil means header.
	sent   http.Header
	status int
	body   bytes.Buffer
}

func (w *pageResponse) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	if w.status != 0 && w.sent == nil {
		// Whatever the handler changes from now on is not sent.
		w.sent = w.header
		w.header = w.header.Clone()
	}
	return w.header
}

func (w *pageResponse) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code)) // as net/http
	}
	if w.status != 0 || code < 200 {
		return // informational answers are not sent on this path; repeats are ignored as net/http does
	}
	if w.header == nil {
		w.header = make(http.Header)
	}
	w.status = code
	if n, err := strconv.Atoi(w.header.Get("Content-Length")); err == nil && n > 0 && n <= 1<<20 {
		w.body.Grow(n) // one allocation for the page that follows
	}
}

func (w *pageResponse) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	return w.body.Write(p)
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified && status >= 200
}

// wire lays out the response as net/http would send it for a request
// that ran to its end: status line and headers (Date, Content-Length and a
// sniffed Content-Type added where net/http adds them) in head, then the
// body. It also reports whether the connection must close after it.
func (w *pageResponse) wire(head bool, date []byte) (out, body []byte, closeAfter bool) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	h := w.sent
	if h == nil {
		h = w.header
	}
	body = w.body.Bytes()
	if bodyAllowed(w.status) {
		if _, ok := h["Content-Type"]; !ok && len(body) > 0 {
			h["Content-Type"] = []string{http.DetectContentType(body)}
		}
		if _, ok := h["Content-Length"]; !ok && (!head || len(body) > 0) {
			h["Content-Length"] = []string{strconv.Itoa(len(body))}
		}
	} else {
		delete(h, "Transfer-Encoding")
	}
	if head || !bodyAllowed(w.status) {
		body = nil
	}
	delete(h, "Date")
	closeAfter = hasToken(h["Connection"], "close")
	text := http.StatusText(w.status)
	if text == "" {
		text = "status code " + strconv.Itoa(w.status)
	}
	out = make([]byte, 0, 512)
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(w.status), 10)
	out = append(out, ' ')
	out = append(out, text...)
	out = append(out, "\r\n"...)
	if bytes.Contains(date, []byte("Connection:")) {
		delete(h, "Connection") // the connection closes anyway, and says so once
	}
	out = append(out, date...)
	out = appendHeaders(out, h)
	out = append(out, "\r\n"...)
	return out, body, closeAfter
}

// appendHeaders writes h sorted by name, one line per value, skipping
// names net/http would not send and keeping every value on its line.
func appendHeaders(b []byte, h http.Header) []byte {
	var buf [16]string
	keys := buf[:0]
	for k := range h {
		if validFieldName(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			if strings.ContainsAny(v, "\r\n") {
				v = strings.Map(newlineToSpace, v)
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, strings.TrimSpace(v)...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

func validFieldName(k string) bool {
	for i := 0; i < len(k); i++ {
		if !tokenChar(k[i]) {
			return false
		}
	}
	return k != ""
}

// newlineToSpace keeps a header value on its line, as net/http does.
func newlineToSpace(r rune) rune {
	if r == '\r' || r == '\n' {
		return ' '
	}
	return r
}

// hasToken reports whether a comma-separated header holds tok.
func hasToken(values []string, tok string) bool {
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(item), tok) {
				return true
			}
		}
	}
	return false
}

// getPageResponse takes a pageResponse from the pool: the body buffer of
// one page is the largest allocation of a page request, and reusing it
// keeps the garbage collector's work down.
func (f *fastFront) getPageResponse() *pageResponse {
	if w, ok := f.pagePool.Get().(*pageResponse); ok {
		return w
	}
	return &pageResponse{}
}

func (f *fastFront) putPageResponse(w *pageResponse) {
	if w.body.Cap() > 1<<20 {
		return // an outsized page does not pin its memory
	}
	w.body.Reset()
	*w = pageResponse{body: w.body}
	f.pagePool.Put(w)
}

// answerPage runs the site's chain for a page request and sends what it
// wrote. It reports whether the connection stays open. A panic in the
// chain closes the connection without an answer, as net/http does.
func (f *fastFront) answerPage(fc *fastConn, h *requestHead, a fastAnswer, closing bool) (keep bool) {
	r := pageRequest(h, fc.remote)
	w := f.getPageResponse()
	defer f.putPageResponse(w)
	defer func() {
		if p := recover(); p != nil {
			keep = false
			if p != http.ErrAbortHandler {
				f.log.Error("panic serving", "remote", fc.remote, "err", p, "stack", string(debug.Stack()))
			}
		}
	}()
	a.site.ServeHTTP(w, r)
	f.answered.Add(1)
	now := time.Now()
	head, body, closeAfter := w.wire(h.head, fc.dateLine(now, closing))
	if f.limits.send > 0 {
		fc.conn().SetWriteDeadline(now.Add(f.limits.send))
	}
	fc.bufs = [5][]byte{head, body}
	fc.wb = fc.bufs[:2]
	n, err := fc.send()
	return err == nil && n == int64(len(head)+len(body)) && !closeAfter && !closing
}
