package cgi

import (
	"bytes"
	"net/http"
	"strings"
)

// LineFields reads a request's header block as net/http hands its fields
// to a handler, for a server's fast path that never made an
// *http.Request: a name in any case is one field, the values of one name
// joined in order, Host apart (it is Meta.Host), and Pragma: no-cache
// implies Cache-Control: no-cache (net/http's fixPragmaCacheControl). A
// script sees the same HTTP_* variables from either entry.
type LineFields struct {
	// Lines are "Name: value\r\n" lines as a fast path checked them
	// (token names, no control characters in values).
	Lines []byte
	// RequestID, when set, replaces the client's X-Request-Id, as the
	// full chain sets it on the request.
	RequestID string
}

// vars adds CONTENT_TYPE, HTTP_HOST and the HTTP_* variables, as Meta.Vars
// does from an http.Header.
func (lf *LineFields) vars(host string, add func(name, value string)) {
	if ct := lf.first("content-type"); ct != "" {
		add("CONTENT_TYPE", ct)
	}
	if host != "" {
		add("HTTP_HOST", host)
	}
	seenID := false
	for off := 0; off < len(lf.Lines); {
		name, _, next := cutField(lf.Lines, off)
		at := off
		off = next
		if name == nil || equalFold(name, "host") || lf.earlier(name, at) {
			continue
		}
		k := http.CanonicalHeaderKey(string(name))
		if k == "X-Request-Id" && lf.RequestID != "" {
			seenID = true
			add("HTTP_X_REQUEST_ID", lf.RequestID)
			continue
		}
		if cgiSkippedHeaders[k] || !cgiHeaderName(k) {
			continue
		}
		add(cgiVarName(k), lf.joined(k, name, at))
	}
	if lf.RequestID != "" && !seenID {
		add("HTTP_X_REQUEST_ID", lf.RequestID)
	}
	if lf.first("pragma") == "no-cache" && !lf.has("cache-control") {
		add("HTTP_CACHE_CONTROL", "no-cache")
	}
}

// cutField splits the line at off into its name and value; next is the
// offset of the following line. name is nil at the blank line or a line
// without a colon.
func cutField(b []byte, off int) (name, value []byte, next int) {
	end := bytes.IndexByte(b[off:], '\n')
	if end < 0 {
		end = len(b) - off
	}
	next = off + end + 1
	line := bytes.TrimRight(b[off:off+end], "\r")
	colon := bytes.IndexByte(line, ':')
	if colon < 1 {
		return nil, nil, next
	}
	return line[:colon], bytes.Trim(line[colon+1:], " \t"), next
}

// earlier reports whether a line before off has the field name.
func (lf *LineFields) earlier(name []byte, before int) bool {
	for off := 0; off < before; {
		n, _, next := cutField(lf.Lines, off)
		if n != nil && bytes.EqualFold(n, name) {
			return true
		}
		off = next
	}
	return false
}

// joined is the values of the field name from the line at off on, as
// joinValues joins an http.Header's.
func (lf *LineFields) joined(k string, name []byte, from int) string {
	var first []byte
	var vs []string
	count := 0
	for off := from; off < len(lf.Lines); {
		n, v, next := cutField(lf.Lines, off)
		off = next
		if n == nil || !bytes.EqualFold(n, name) {
			continue
		}
		switch count++; count {
		case 1:
			first = v
		case 2:
			vs = []string{string(first), string(v)}
		default:
			vs = append(vs, string(v))
		}
	}
	if count == 1 {
		return string(first)
	}
	return joinValues(k, vs)
}

// first is the first value of the field (lower-case name), "" when absent.
func (lf *LineFields) first(lower string) string {
	for off := 0; off < len(lf.Lines); {
		n, v, next := cutField(lf.Lines, off)
		if n != nil && equalFold(n, lower) {
			return string(v)
		}
		off = next
	}
	return ""
}

func (lf *LineFields) has(lower string) bool {
	for off := 0; off < len(lf.Lines); {
		n, _, next := cutField(lf.Lines, off)
		if n != nil && equalFold(n, lower) {
			return true
		}
		off = next
	}
	return false
}

// equalFold compares b with lower, a lower-case ASCII name.
func equalFold(b []byte, lower string) bool {
	return len(b) == len(lower) && strings.EqualFold(string(b), lower)
}
