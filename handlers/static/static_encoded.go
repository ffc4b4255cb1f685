package static

import (
	"bytes"
	"io"
	"net/http"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// serveEncoded sends a compressed variant when the client accepts one:
// a sidecar file first, else the file compressed on the fly (from memory
// for cached files, streamed for large ones). It reports false when the
// identity body should be sent instead.
func (s *Handler) serveEncoded(w http.ResponseWriter, r *http.Request, e *fileEntry) bool {
	enc := chooseEncoding(headerValue(r.Header, "Accept-Encoding"), e.encodings)
	if enc == encIdentity {
		return false
	}
	h := w.Header()
	h["Content-Type"] = e.ctype
	h["Last-Modified"] = e.lastMod
	h["Vary"] = varyAE
	h.Set("Content-Encoding", enc)
	for i := range e.sidecars {
		if sc := &e.sidecars[i]; sc.enc == enc {
			s.serveSidecar(w, r, sc)
			return true
		}
	}
	h.Set("Etag", e.etag[:len(e.etag)-1]+"-"+enc+`"`)
	if e.data != nil {
		body := e.compressed(enc)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(body)
		}
		return true
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return true
	}
	s.streamCompressed(w, r, e, enc)
	return true
}

func (s *Handler) serveSidecar(w http.ResponseWriter, r *http.Request, sc *sidecar) {
	h := w.Header()
	h["Etag"] = sc.etag
	h["Content-Length"] = sc.clen
	s.sendWhole(w, r, sc.rel, sc.data, sc.size)
}

// compressed returns the cached file's body in enc, compressing it once.
func (e *fileEntry) compressed(enc string) []byte {
	slot := &e.gz
	if enc == encZstd {
		slot = &e.zst
	}
	if p := slot.Load(); p != nil {
		return *p
	}
	var buf bytes.Buffer
	w := newCompressor(&buf, enc, true)
	w.Write(e.data)
	w.Close()
	body := buf.Bytes()
	slot.Store(&body)
	return body
}

// newCompressor makes a gzip or zstd writer; best is for bodies that are
// compressed once and served many times.
func newCompressor(dst io.Writer, enc string, best bool) io.WriteCloser {
	if enc == encZstd {
		level := zstd.SpeedDefault
		if best {
			level = zstd.SpeedBetterCompression
		}
		zw, _ := zstd.NewWriter(dst, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
		return zw
	}
	level := 5
	if best {
		level = gzip.BestCompression
	}
	gw, _ := gzip.NewWriterLevel(dst, level)
	return gw
}

// streamCompressed compresses a large file as it is read from disk.
func (s *Handler) streamCompressed(w http.ResponseWriter, r *http.Request, e *fileEntry, enc string) {
	f, err := s.root.Open(e.rel)
	if err != nil {
		s.log.Error("static: open", "path", e.rel, "err", err)
		panic(http.ErrAbortHandler)
	}
	defer f.Close()
	cw := newCompressor(w, enc, false)
	if _, err := io.Copy(cw, f); err != nil {
		panic(http.ErrAbortHandler)
	}
	if err := cw.Close(); err != nil {
		panic(http.ErrAbortHandler)
	}
}
