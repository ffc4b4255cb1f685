package static

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compressor compresses dynamic responses (pages, CGI) on the fly with
// zstd or gzip, for compressible types of at least minCompressSize bytes
// when the length is known. Static files do their own (they can cache the
// result). It keeps its encoders in pools: one Compressor per node.
type Compressor struct {
	gz, zs sync.Pool
}

// Middleware wraps next so its response is compressed when the client
// accepts it and the response is worth it.
func (c *Compressor) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enc := chooseEncoding(headerValue(r.Header, "Accept-Encoding"), []string{encZstd, encGzip})
		if enc == encIdentity || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		cw := &compressWriter{ResponseWriter: w, c: c, enc: enc}
		defer cw.finish()
		next.ServeHTTP(cw, r)
	})
}

func (c *Compressor) get(dst io.Writer, enc string) io.WriteCloser {
	if enc == encZstd {
		if z, ok := c.zs.Get().(*zstd.Encoder); ok {
			z.Reset(dst)
			return z
		}
		z, _ := zstd.NewWriter(dst, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
		return z
	}
	if g, ok := c.gz.Get().(*gzip.Writer); ok {
		g.Reset(dst)
		return g
	}
	g, _ := gzip.NewWriterLevel(dst, 5)
	return g
}

func (c *Compressor) put(w io.WriteCloser) {
	switch x := w.(type) {
	case *zstd.Encoder:
		x.Reset(nil)
		c.zs.Put(x)
	case *gzip.Writer:
		x.Reset(io.Discard)
		c.gz.Put(x)
	}
}

// compressWriter decides at WriteHeader whether to compress.
type compressWriter struct {
	http.ResponseWriter
	c       *Compressor
	enc     string
	z       io.WriteCloser
	decided bool
}

func (cw *compressWriter) WriteHeader(code int) {
	if cw.decided || code < 200 {
		cw.ResponseWriter.WriteHeader(code)
		return
	}
	cw.decided = true
	h := cw.Header()
	if cw.worthIt(code, h) {
		h.Set("Content-Encoding", cw.enc)
		h.Del("Content-Length")
		h.Del("Accept-Ranges")
		if et := h.Get("Etag"); et != "" && !strings.HasPrefix(et, "W/") {
			h.Set("Etag", "W/"+et) // the bytes differ from the uncompressed ones
		}
		cw.z = cw.c.get(cw.ResponseWriter, cw.enc)
	}
	if !hasToken(h.Get("Vary"), "Accept-Encoding") {
		h.Add("Vary", "Accept-Encoding")
	}
	cw.ResponseWriter.WriteHeader(code)
}

func (cw *compressWriter) worthIt(code int, h http.Header) bool {
	if code == http.StatusNoContent || code == http.StatusNotModified || code == http.StatusPartialContent {
		return false
	}
	if h.Get("Content-Encoding") != "" || !compressible(h.Get("Content-Type")) {
		return false
	}
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.Atoi(cl); err == nil && n < minCompressSize {
			return false
		}
	}
	return true
}

func (cw *compressWriter) Write(b []byte) (int, error) {
	if !cw.decided {
		if cw.Header().Get("Content-Type") == "" {
			cw.Header().Set("Content-Type", http.DetectContentType(b))
		}
		cw.WriteHeader(http.StatusOK)
	}
	if cw.z == nil {
		return cw.ResponseWriter.Write(b)
	}
	return cw.z.Write(b)
}

// Flush pushes what is compressed so far to the client (CGI streaming).
func (cw *compressWriter) Flush() {
	if f, ok := cw.z.(interface{ Flush() error }); ok {
		f.Flush()
	}
	_ = http.NewResponseController(cw.ResponseWriter).Flush()
}

func (cw *compressWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

func (cw *compressWriter) finish() {
	if cw.z != nil {
		cw.z.Close()
		cw.c.put(cw.z)
		cw.z = nil
	}
}
