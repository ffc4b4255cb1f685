package http1

import (
	"bytes"
	"strings"
)

// Head is what the HTTP/1.1 fast path learns from a request's
// header block. ParseHead fills it only for the requests the fast path
// may answer itself: GET or HEAD of a plain path, no body, no header that
// changes a static response. Everything else goes to net/http untouched.
type Head struct {
	IsHEAD bool   // HEAD, else GET
	Target string // the request-target as sent: path and query
	Path   string // target up to the '?'
	Host   string
	Cond   Conditions // Accept-Encoding and the conditionals
	Close  bool       // Connection: close
	// forwarded: the request carries a forwarding header, which the
	// cluster strips from clients it does not trust.
	Forwarded bool
	// hop is the X-Shoal-Hop header: a peer proxied the request here.
	Hop string
	// peer: the request came over a cluster peer's TLS connection.
	Peer bool
	// lines is the header block without the request line, for the access
	// log (which wants the Referer, User-Agent and friends).
	Lines []byte
}

// Conditions are the fields that change a cached file's answer without
// taking it off the fast path. Its layout is the static handler's
// FastRequest, so the node converts one into the other for free.
type Conditions struct {
	AcceptEncoding  string
	IfNoneMatch     string
	IfModifiedSince string
}

// HeadEnd returns the length of the header block at the start of b (up to
// and including the blank line), or -1 when b does not hold all of it yet.
func HeadEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		end := i + j + 1
		line := b[i:end]
		if i > 0 && (len(line) == 1 || len(line) == 2 && line[0] == '\r') {
			return end
		}
		i = end
	}
}

// ParseHead parses a complete header block (as measured by HeadEnd) and
// reports whether the fast path may answer it. Any doubt means no: a
// request the fast path declines is served by net/http exactly as if the
// fast path did not exist.
func ParseHead(b []byte) (h Head, ok bool) {
	ok = h.parse(b)
	return h, ok
}

// parse is ParseHead into h, the connection's last request: a target or
// Host the same as that one's keeps its string (a kept connection mostly
// asks the same host, often for the same thing) instead of making one.
func (h *Head) parse(b []byte) bool {
	lastTarget, lastHost := h.Target, h.Host
	*h = Head{}
	nl := bytes.IndexByte(b, '\n')
	if nl < 1 || b[nl-1] != '\r' {
		return false
	}
	if !h.requestLine(b[:nl-1], lastTarget) {
		return false
	}
	h.Lines = b[nl+1:]
	hosts := 0
	for rest := h.Lines; ; {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 1 || rest[nl-1] != '\r' {
			return false
		}
		line := rest[:nl-1]
		rest = rest[nl+1:]
		if len(line) == 0 {
			break
		}
		name, value, good := SplitHeader(line)
		if !good {
			return false
		}
		switch field := FieldOf(name); field {
		case FieldHost:
			hosts++
			h.Host = sameOrString(value, lastHost)
		case FieldConnection:
			switch {
			case EqualFold(value, "keep-alive"):
			case EqualFold(value, "close"):
				h.Close = true
			default:
				return false
			}
		case FieldHop:
			if h.Hop != "" {
				return false
			}
			h.Hop = string(value)
		default:
			if !SharedField(h, field, value) {
				return false
			}
		}
	}
	return hosts == 1 && ValidHost(h.Host)
}

// sameOrString is b as a string: last when it holds the same bytes (no
// allocation), else a new one.
func sameOrString(b []byte, last string) string {
	if string(b) == last {
		return last
	}
	return string(b)
}

// SharedField takes a field both fast paths (HTTP/1.1 and HTTP/2) read
// alike: what the cached response depends on, forwarding headers, and
// fields that send the request to the full chain. False declines.
func SharedField[T string | []byte](h *Head, field int, value T) bool {
	switch field {
	case fieldAcceptEncoding, fieldIfNoneMatch, fieldIfModifiedSince:
		return h.setOnce(field, string(value)) // several: let the full chain join them
	case fieldForwarded:
		h.Forwarded = true
	case fieldDecline:
		return false
	}
	return true
}

// setOnce records the value of a field the static response depends on;
// false when the field came before (or is empty, which net/http and the
// full path read as absent).
func (h *Head) setOnce(field int, value string) bool {
	slot := &h.Cond.AcceptEncoding
	switch field {
	case fieldIfNoneMatch:
		slot = &h.Cond.IfNoneMatch
	case fieldIfModifiedSince:
		slot = &h.Cond.IfModifiedSince
	}
	if *slot != "" || value == "" {
		return false
	}
	*slot = value
	return true
}

// requestLine accepts "GET /path HTTP/1.1" and "HEAD /path HTTP/1.1"
// with a target of plain path characters (no escapes, no dot segments, no
// empty segments) and an optional query.
func (h *Head) requestLine(line []byte, lastTarget string) bool {
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		h.IsHEAD = true
		line = line[5:]
	default:
		return false
	}
	const proto = " HTTP/1.1"
	if !bytes.HasSuffix(line, []byte(proto)) {
		return false
	}
	target := line[:len(line)-len(proto)]
	path, query, hasQuery := bytes.Cut(target, []byte("?"))
	if !PlainPath(path) || hasQuery && !PlainQuery(query) {
		return false
	}
	h.Target = sameOrString(target, lastTarget)
	h.Path = h.Target[:len(path)]
	return true
}

// PlainPath: starts with '/', only unreserved and sub-delim characters
// (no '%', so the path is its own decoding), no "//" and no segment
// starting with '.' (dotfiles and dot segments take the full path).
func PlainPath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/' || c == '.':
			if p[i-1] == '/' {
				return false
			}
		case !pathChar(c):
			return false
		}
	}
	return true
}

func pathChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("-_~!$&'()*+,;=:@", c) >= 0
}

func PlainQuery(q []byte) bool {
	for _, c := range q {
		if !pathChar(c) && c != '/' && c != '?' && c != '.' && c != '%' {
			return false
		}
	}
	return true
}

// SplitHeader splits "Name: value" with a token name (no space before the
// colon: net/http refuses that) and a value without control characters.
func SplitHeader(line []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon < 1 {
		return nil, nil, false
	}
	name = line[:colon]
	for _, c := range name {
		if !tokenChar(c) {
			return nil, nil, false
		}
	}
	value = bytes.Trim(line[colon+1:], " \t")
	for _, c := range value {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return nil, nil, false
		}
	}
	return name, value, true
}

func tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// ValidHost accepts a name or address with an optional port: what
// net/http accepts too, and nothing that needs its judgement.
func ValidHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// header fields the fast path looks at.
const (
	fieldOther = iota
	FieldHost
	fieldAcceptEncoding
	fieldIfNoneMatch
	fieldIfModifiedSince
	FieldConnection
	fieldForwarded
	FieldHop
	fieldDecline // changes the response or brings a body: full path
)

// FieldOf classifies a header name. Declined are the fields that make a
// static response anything but a plain 200 or 304 (ranges, preconditions
// that can fail), announce a body, or ask for a protocol change.
func FieldOf(name []byte) int {
	var buf [24]byte
	if len(name) > len(buf) {
		return fieldOther
	}
	lower := buf[:len(name)]
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	switch string(lower) {
	case "host":
		return FieldHost
	case "accept-encoding":
		return fieldAcceptEncoding
	case "if-none-match":
		return fieldIfNoneMatch
	case "if-modified-since":
		return fieldIfModifiedSince
	case "connection":
		return FieldConnection
	case "content-length", "transfer-encoding", "expect", "upgrade", "range", "if-range",
		"if-match", "if-unmodified-since",
		"http2-settings", "te", "trailer", "x-shoal-load":
		return fieldDecline
	case "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip":
		return fieldForwarded
	case "x-shoal-hop":
		return FieldHop
	}
	return fieldOther
}

// EqualFold compares ASCII case-insensitively; want is lower case.
func EqualFold(b []byte, want string) bool {
	if len(b) != len(want) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}
