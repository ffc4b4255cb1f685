package static

import (
	"bytes"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"shoal/internal/http1"
)

// FastFile is the whole response to a plain GET or HEAD of a file, ready
// to write: what the server's HTTP/1.1 fast path sends without building an
// http.Request. It is shared by every request for the file and must not be
// modified.
type FastFile struct {
	// Status is 200, or 304 for a conditional request that matched;
	// StatusLine is its "HTTP/1.1 ..." line with CRLF.
	Status     int
	StatusLine []byte
	// Header is every header line but Date, each ending in CRLF, followed
	// by the blank line that ends the header block.
	Header []byte
	// Body is the file's content (in the chosen coding); nil for a 304.
	Body []byte

	// h2 is the header in the form HTTP/2 sends it, made on first use.
	h2 atomic.Pointer[[]byte]
	// variants are this response with route header rules applied, by key.
	variants atomic.Pointer[[]fastVariant]
}

type fastVariant struct {
	key uint64
	f   *FastFile
}

// maxVariants bounds the variants of one file: a site whose header routes
// combine in more ways than this serves the rest through the full chain.
const maxVariants = 8

// Variant returns this response with edit applied to its header, made once
// per key (the set of routes whose fixed header rules edit makes) and
// kept with the file, so it goes when the file changes; nil when the file
// already has maxVariants others.
func (f *FastFile) Variant(key uint64, edit func(http.Header)) *FastFile {
	for {
		cur := f.variants.Load()
		var list []fastVariant
		if cur != nil {
			list = *cur
		}
		for _, v := range list {
			if v.key == key {
				return v.f
			}
		}
		if len(list) >= maxVariants {
			return nil
		}
		v := fastVariant{key: key, f: f.withHeader(edit)}
		next := append(slices.Clip(list), v)
		if f.variants.CompareAndSwap(cur, &next) {
			return v.f
		}
	}
}

// withHeader is a copy of f whose header lines went through edit.
func (f *FastFile) withHeader(edit func(http.Header)) *FastFile {
	h := http.Header{}
	var order []string
	for rest := f.Header; ; {
		line, more, ok := bytes.Cut(rest, []byte("\r\n"))
		if !ok || len(line) == 0 {
			break
		}
		rest = more
		name, value, _ := bytes.Cut(line, []byte(":"))
		k := http.CanonicalHeaderKey(string(name))
		if _, seen := h[k]; !seen {
			order = append(order, k)
		}
		h[k] = append(h[k], string(bytes.TrimSpace(value)))
	}
	edit(h)
	var added []string
	for k := range h {
		if !slices.Contains(order, k) {
			added = append(added, k)
		}
	}
	sort.Strings(added)
	var b []byte
	for _, k := range append(order, added...) {
		for _, v := range h[k] {
			b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	return &FastFile{Status: f.Status, StatusLine: f.StatusLine, Header: b, Body: f.Body}
}

// H2Header returns the header as HTTP/2 sends it: build(Header) the first
// time, the same bytes after that.
func (f *FastFile) H2Header(build func(http1 []byte) []byte) []byte {
	if p := f.h2.Load(); p != nil {
		return *p
	}
	b := build(f.Header)
	f.h2.Store(&b)
	return b
}

// fast variants of an entry, by coding.
const (
	fastIdentity = iota
	fastBrotli
	fastZstd
	fastGzip
	fastVariants
)

func fastSlot(enc string) int {
	switch enc {
	case encBrotli:
		return fastBrotli
	case encZstd:
		return fastZstd
	case encGzip:
		return fastGzip
	}
	return fastIdentity
}

// FastRequest is what of a GET or HEAD decides a static response, besides
// its path; "" stands for an absent header.
type FastRequest struct {
	AcceptEncoding  string
	IfNoneMatch     string
	IfModifiedSince string
}

// Fast returns the response ServeHTTP would give a GET or HEAD of urlPath
// (an unescaped path with no dot segments) carrying no Range, If-Range,
// If-Match or If-Unmodified-Since header, when that response is a 304 or
// a 200 with a body from memory; otherwise nil, and the caller serves the
// request through ServeHTTP. The file is checked against the disk as on
// every request.
func (s *Handler) Fast(urlPath string, req FastRequest) *FastFile {
	rel, err := cleanURLPath(urlPath)
	if err != nil {
		return nil
	}
	e, err := s.lookup(rel)
	if err != nil {
		return nil
	}
	if e.isDir {
		if e = s.fastIndex(urlPath, rel); e == nil {
			return nil
		}
	} else if strings.HasSuffix(urlPath, "/") && rel != "" {
		return nil
	}
	if notModifiedFor(req, e) {
		return s.fastNotModified(e)
	}
	if e.data == nil {
		return nil
	}
	enc := encIdentity
	if s.opts.Compress && e.compressible {
		enc = chooseEncoding(req.AcceptEncoding, e.encodings)
	}
	slot := &e.fast[fastSlot(enc)]
	if f := slot.Load(); f != nil {
		return f
	}
	f := s.buildFast(e, enc)
	if f != nil {
		slot.Store(f)
	}
	return f
}

// notModifiedFor is checkPreconditions for a request without If-Match and
// If-Unmodified-Since: If-None-Match decides when present, else
// If-Modified-Since.
func notModifiedFor(req FastRequest, e *fileEntry) bool {
	if req.IfNoneMatch != "" {
		return etagListMatch(req.IfNoneMatch, e.etag, false)
	}
	if req.IfModifiedSince != "" {
		t, err := http.ParseTime(req.IfModifiedSince)
		return err == nil && !e.mod.Truncate(time.Second).After(t)
	}
	return false
}

// fastNotModified is notModified's 304 for e, with the site's headers.
func (s *Handler) fastNotModified(e *fileEntry) *FastFile {
	if f := e.fast304.Load(); f != nil {
		return f
	}
	h := http.Header{"Etag": e.etagH, "Last-Modified": e.lastMod}
	if !s.addSiteHeaders(h) {
		return nil
	}
	f := &FastFile{Status: http.StatusNotModified, StatusLine: []byte("HTTP/1.1 304 Not Modified\r\n"),
		Header: append(http1.AppendFields(nil, h), "\r\n"...)}
	e.fast304.Store(f)
	return f
}

// addSiteHeaders adds the site's headers the Recorder would add to h;
// false when one of them is a header only the full path may send.
func (s *Handler) addSiteHeaders(h http.Header) bool {
	for k, v := range s.opts.Headers {
		if serverOwned(k) {
			return false
		}
		if _, set := h[k]; !set {
			h[k] = v
		}
	}
	return true
}

// fastIndex is serveDir's choice of index file, or nil when the directory
// needs a redirect, a listing or an error.
func (s *Handler) fastIndex(urlPath, rel string) *fileEntry {
	if !strings.HasSuffix(urlPath, "/") {
		return nil
	}
	for _, idx := range s.opts.Index {
		if strings.HasSuffix(idx, ".tmpl") {
			continue
		}
		e, err := s.lookup(joinRel(rel, idx))
		if err == nil && !e.isDir {
			return e
		}
	}
	return nil
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// buildFast lays out the headers serveFile and serveEncoded set for e in
// coding enc, plus the site's headers the Recorder would add.
func (s *Handler) buildFast(e *fileEntry, enc string) *FastFile {
	h := http.Header{
		"Content-Type":  e.ctype,
		"Last-Modified": e.lastMod,
	}
	var body []byte
	switch sc := e.sidecar(enc); {
	case enc == encIdentity:
		body = e.data
		h["Etag"] = e.etagH
		h["Accept-Ranges"] = bytesUnit
		h["Content-Length"] = e.clen
	case sc != nil:
		if sc.data == nil {
			return nil // streamed from disk: the full path sends it
		}
		body = sc.data
		h["Etag"] = sc.etag
		h["Content-Length"] = sc.clen
	default:
		body = e.compressed(enc)
		h["Etag"] = []string{e.etag[:len(e.etag)-1] + "-" + enc + `"`}
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	if enc != encIdentity {
		h["Content-Encoding"] = []string{enc}
	}
	if s.opts.Compress && e.compressible {
		h["Vary"] = varyAE
	}
	if !s.addSiteHeaders(h) {
		return nil // net/http would treat one of them specially
	}
	return &FastFile{Status: http.StatusOK, StatusLine: []byte("HTTP/1.1 200 OK\r\n"),
		Header: append(http1.AppendFields(nil, h), "\r\n"...), Body: body}
}

// serverOwned reports headers net/http writes itself or acts on when a
// handler sets them.
func serverOwned(key string) bool {
	switch key {
	case "Date", "Connection", "Transfer-Encoding", "Trailer", "Content-Length":
		return true
	}
	return false
}

// sidecar returns the precompressed file for enc, or nil.
func (e *fileEntry) sidecar(enc string) *sidecar {
	for i := range e.sidecars {
		if e.sidecars[i].enc == enc {
			return &e.sidecars[i]
		}
	}
	return nil
}
