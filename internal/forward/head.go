package forward

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
)

// Field is one header field.
type Field struct {
	Name, Value string
}

// Head is a parsed response head. Its strings share one allocation (the
// head as received) and stay valid after the body is read.
type Head struct {
	// Status is the status code, 100 to 999.
	Status int
	// Minor is the HTTP/1 minor version: 0 or 1.
	Minor int
	// Fields are the header fields in the order received, names as sent.
	Fields []Field
	// hop[i] marks Fields[i] hop-by-hop: Connection, Keep-Alive,
	// Transfer-Encoding... and those Connection names.
	hop []bool
	// ContentLength is the body's length; -1 when it is chunked or runs
	// until the connection closes.
	ContentLength int64
	// Chunked: the body comes in chunks (Transfer-Encoding: chunked).
	Chunked bool
	// Close: the server closes the connection after this response, or
	// must be made to (no keep-alive, body until close, CL and TE both).
	Close bool
	// EventStream: Content-Type text/event-stream (flush every write).
	EventStream bool

	// raw is the head as received, which the strings above share.
	raw string
	// Room for a usual head's fields, so that one allocation holds it.
	fieldBuf [16]Field
	hopBuf   [16]bool
}

// Hop reports whether Fields[i] is hop-by-hop and so never passed on.
func (h *Head) Hop(i int) bool { return h.hop[i] }

// Drop marks Fields[i] as not passed on (a field for this side only).
func (h *Head) Drop(i int) { h.hop[i] = true }

// maxHead is the largest response head accepted, as the read buffer: a
// larger one is answered 502, as nginx does ("upstream sent too big
// header") past 4 or 8 KiB. 32 KiB leaves room for big cookies and
// policies; the buffer is also the body's copy buffer.
const maxHead = 32 << 10

// errHead: the response head is not one this parser accepts.
var errHead = errors.New("forward: malformed response head")

// errHeadSize: the response head does not fit maxHead.
var errHeadSize = errors.New("forward: response head too large")

// headCache holds a connection's response heads: the one being relayed
// (cur, which sinks may edit) and an untouched copy of the last one
// parsed, so that a head repeated byte for byte (a static file's, within
// the second its Date names) is copied instead of parsed again.
type headCache struct {
	cur, last Head
}

// readHead reads a response head from br (sized at least maxHead) into
// hc.cur: it blocks until the blank line that ends it, and consumes it.
func readHead(br *bufio.Reader, hc *headCache) (*Head, error) {
	end, scanned := 0, 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if e := headEnd(buf, scanned); e > 0 {
			end = e
			break
		}
		scanned = max(len(buf)-3, 0)
		if len(buf) >= maxHead || len(buf) >= br.Size() {
			return nil, errHeadSize
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: truncated", errHead)
			}
			return nil, err
		}
	}
	buf, _ := br.Peek(end)
	defer br.Discard(end)
	h, last := &hc.cur, &hc.last
	if last.raw != "" && string(buf) == last.raw {
		last.copyTo(h)
		return h, nil
	}
	if err := h.parse(string(buf)); err != nil {
		return nil, err
	}
	h.copyTo(last)
	return h, nil
}

// copyTo makes dst a copy of h whose field lists are dst's own (the
// strings are shared: they do not change).
func (h *Head) copyTo(dst *Head) {
	*dst = *h
	if len(h.Fields) <= len(dst.fieldBuf) {
		dst.Fields = dst.fieldBuf[:len(h.Fields)]
		dst.hop = dst.hopBuf[:len(h.hop)]
		return
	}
	dst.Fields = append([]Field(nil), h.Fields...)
	dst.hop = append([]bool(nil), h.hop...)
}

// headEnd returns the length of the head in b up to and including the
// blank line (LF LF or LF CR LF), searching from off; 0: not yet.
func headEnd(b []byte, off int) int {
	for i := off; i < len(b); i++ {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return 0
}

// parse makes h the head s, a whole head ending in its blank line. The
// strings are s's: a Head a connection reuses leaves the ones a sink
// kept (net/http's header) as they were.
func (h *Head) parse(s string) error {
	line, rest := cutLine(s)
	*h = Head{ContentLength: -1, raw: s}
	if err := h.parseStatus(line); err != nil {
		return err
	}
	h.Fields = h.fieldBuf[:0] // more fields: append allocates
	for {
		line, rest = cutLine(rest)
		if line == "" {
			break
		}
		f, err := parseField(line)
		if err != nil {
			return err
		}
		h.Fields = append(h.Fields, f)
	}
	h.hop = h.hopBuf[:]
	if len(h.Fields) > len(h.hopBuf) {
		h.hop = make([]bool, len(h.Fields))
	}
	h.hop = h.hop[:len(h.Fields)]
	return h.frame()
}

// cutLine splits off the first line, its CR LF (or LF) removed.
func cutLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		line, rest = s, ""
	} else {
		line, rest = s[:i], s[i+1:]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

func (h *Head) parseStatus(line string) error {
	switch {
	case strings.HasPrefix(line, "HTTP/1.1 "):
		h.Minor = 1
	case strings.HasPrefix(line, "HTTP/1.0 "):
	default:
		return fmt.Errorf("%w: status line %q", errHead, trim(line))
	}
	code := line[len("HTTP/1.1 "):]
	if len(code) < 3 || len(code) > 3 && code[3] != ' ' {
		return fmt.Errorf("%w: status line %q", errHead, trim(line))
	}
	n := 0
	for _, c := range []byte(code[:3]) {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: status line %q", errHead, trim(line))
		}
		n = n*10 + int(c-'0')
	}
	if n < 100 {
		return fmt.Errorf("%w: status %d", errHead, n)
	}
	h.Status = n
	for _, c := range []byte(code) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("%w: control byte in status line", errHead)
		}
	}
	return nil
}

func trim(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// parseField parses "Name: value"; no obs-fold, no space before the
// colon, no control bytes in the value.
func parseField(line string) (Field, error) {
	colon := 0
	for colon < len(line) && isToken(line[colon]) {
		colon++
	}
	if colon == 0 || colon == len(line) || line[colon] != ':' {
		name, _, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return Field{}, fmt.Errorf("%w: field %q", errHead, trim(line))
		}
		return Field{}, fmt.Errorf("%w: field name %q", errHead, trim(name))
	}
	name, value := line[:colon], line[colon+1:]
	for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
		value = value[1:]
	}
	for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
		value = value[:len(value)-1]
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
			return Field{}, fmt.Errorf("%w: control byte in %s", errHead, trim(name))
		}
	}
	return Field{Name: name, Value: value}, nil
}

// isToken: RFC 9110 tchar ("!#$%&'*+-.^_`|~", digits, letters), as a
// bit per byte below 128.
func isToken(c byte) bool {
	const lo, hi = 0x3ff6cfa00000000, 0x57ffffffc7fffffe
	switch {
	case c < 64:
		return lo>>c&1 != 0
	case c < 128:
		return hi>>(c-64)&1 != 0
	}
	return false
}

// isHopByHop: the fields RFC 9110 7.6.1 names as one connection's, as
// net/http/httputil removes them: Connection, Proxy-Connection,
// Keep-Alive, Proxy-Authenticate, Proxy-Authorization, Te, Trailer,
// Transfer-Encoding, Upgrade.
func isHopByHop(name string) bool {
	// By length first: this runs for every field both ways.
	switch len(name) {
	case 2:
		return strings.EqualFold(name, "Te")
	case 7:
		return strings.EqualFold(name, "Trailer") || strings.EqualFold(name, "Upgrade")
	case 10:
		return strings.EqualFold(name, "Connection") || strings.EqualFold(name, "Keep-Alive")
	case 16:
		return strings.EqualFold(name, "Proxy-Connection")
	case 17:
		return strings.EqualFold(name, "Transfer-Encoding")
	case 18:
		return strings.EqualFold(name, "Proxy-Authenticate")
	case 19:
		return strings.EqualFold(name, "Proxy-Authorization")
	}
	return false
}

// frame works out the body's framing and marks the hop-by-hop fields.
func (h *Head) frame() error {
	var te, cl string
	var nTE int
	keepAlive := false
	for i, f := range h.Fields {
		if isHopByHop(f.Name) {
			h.hop[i] = true
		}
		// By length first: one comparison at most per field.
		switch n := len(f.Name); {
		case n == 14 && strings.EqualFold(f.Name, "Content-Length"):
			if cl != "" && cl != f.Value {
				return fmt.Errorf("%w: Content-Length %q and %q", errHead, trim(cl), trim(f.Value))
			}
			cl = f.Value
			if cl == "" {
				return fmt.Errorf("%w: empty Content-Length", errHead)
			}
		case n == 17 && strings.EqualFold(f.Name, "Transfer-Encoding"):
			te, nTE = f.Value, nTE+1
		case n == 10 && strings.EqualFold(f.Name, "Connection"):
			for tok := range strings.SplitSeq(f.Value, ",") {
				tok = strings.Trim(tok, " \t")
				switch {
				case strings.EqualFold(tok, "close"):
					h.Close = true
				case strings.EqualFold(tok, "keep-alive"):
					keepAlive = true
				}
				h.markHop(tok)
			}
		case n == 12 && strings.EqualFold(f.Name, "Content-Type"):
			mt, _, _ := strings.Cut(f.Value, ";")
			h.EventStream = strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
		}
	}
	if h.Minor == 0 && !keepAlive {
		h.Close = true
	}
	var n int64
	if cl != "" {
		var ok bool
		if n, ok = parseLength(cl); !ok {
			return fmt.Errorf("%w: Content-Length %q", errHead, trim(cl))
		}
	}
	if nTE > 0 {
		if nTE > 1 || h.Minor == 0 || !strings.EqualFold(te, "chunked") {
			return fmt.Errorf("%w: Transfer-Encoding %q", errHead, trim(te))
		}
		h.Chunked = true
		if cl != "" {
			// RFC 9112 6.3: chunked wins, and the connection may not be
			// trusted for another response.
			h.Close = true
			h.markHop("Content-Length")
		}
		return nil
	}
	if cl != "" {
		h.ContentLength = n
	}
	return nil
}

// markHop marks the fields named name as hop-by-hop.
func (h *Head) markHop(name string) {
	if name == "" {
		return
	}
	for i, f := range h.Fields {
		if len(f.Name) == len(name) && strings.EqualFold(f.Name, name) {
			h.hop[i] = true
		}
	}
}

// parseLength parses decimal digits only, up to 1<<62.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// bodyless reports whether a response to method with this status has no
// body whatever its head says (RFC 9110 6.4.1).
func (h *Head) bodyless(method string) bool {
	return method == "HEAD" || h.Status < 200 || h.Status == 204 || h.Status == 304
}

// buffered reports whether the whole body is already in br.
func (h *Head) buffered(br *bufio.Reader, method string) bool {
	return h.bodyless(method) || !h.Chunked && h.ContentLength >= 0 && int64(br.Buffered()) >= h.ContentLength
}

// canonical is name in net/http's canonical form, allocating only when
// it is not already in it.
func canonical(name string) string {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return textproto.CanonicalMIMEHeaderKey(name)
		}
		upper = c == '-'
	}
	return name
}
