package static

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"shoal/handlers/books"
)

// Options configures a Handler, the file server of one site.
type Options struct {
	// Root is the folder served. Nothing outside it is ever served.
	Root string
	// Index lists the file names tried for a directory; entries ending in
	// .tmpl are pages, not files, and are skipped here.
	Index []string
	// Browse turns on directory listings.
	Browse bool
	// Compress turns on gzip/zstd on the fly and precompressed sidecars.
	Compress bool
	// FollowSymlinks follows symlinks, also those leaving Root (Apache's
	// FollowSymLinks: Debian's packaged apps link their assets from
	// /usr/share); off, every symlink is refused. Either way the target
	// must be servable: no dot segment anywhere in its real path, no
	// template source, nothing Hidden names.
	FollowSymlinks bool
	// Errors writes error responses; nil gives generic pages.
	Errors *books.ErrorPages
	// Hidden, when set, names files never served although under Root
	// (the config file, CGI scripts). It gets the absolute path.
	Hidden func(abs string) bool
	// MaxRanges caps the ranges in one request after merging; beyond it
	// the whole file is sent (as Apache's MaxRanges). 0 means 16.
	MaxRanges int
	// CacheBytes is the memory for small hot files; 0 means 64 MiB.
	CacheBytes int64
	// Logger gets the log lines; nil means slog.Default().
	Logger *slog.Logger
	// Headers are the site's extra response headers, put into the
	// responses Fast prepares (on the normal path the site's Recorder adds
	// them).
	Headers http.Header
}

// Handler serves files from one folder: conditional requests, ranges,
// index files, listings, error pages and compression. Small files live in
// memory with their headers precomputed, checked against the disk on every
// request so a change is seen at once.
type Handler struct {
	opts     Options
	root     fileRoot
	rootReal string
	cache    *fileCache
	log      *slog.Logger
	maxRange int
}

// New opens the root folder. Close releases it.
func New(o Options) (*Handler, error) {
	real, err := filepath.EvalSymlinks(o.Root)
	if err != nil {
		return nil, fmt.Errorf("static: root: %w", err)
	}
	root, err := openFileRoot(real, o.FollowSymlinks)
	if err != nil {
		return nil, fmt.Errorf("static: root: %w", err)
	}
	s := &Handler{opts: o, root: root, rootReal: real, log: o.Logger, maxRange: o.MaxRanges}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxRange <= 0 {
		s.maxRange = 16
	}
	budget := o.CacheBytes
	if budget <= 0 {
		budget = 64 << 20
	}
	s.cache = newFileCache(budget)
	return s, nil
}

// Close releases the root folder.
func (s *Handler) Close() error { return s.root.Close() }

// fileRoot is the folder files are read from, by slash-separated names
// relative to it: an *os.Root, which refuses any way out, or with
// follow_symlinks a looseRoot.
type fileRoot interface {
	Open(name string) (*os.File, error)
	Stat(name string) (fs.FileInfo, error)
	Lstat(name string) (fs.FileInfo, error)
	Close() error
}

func openFileRoot(dir string, follow bool) (fileRoot, error) {
	if !follow {
		return os.OpenRoot(dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", dir)
	}
	return looseRoot(dir), nil
}

// looseRoot follows symlinks wherever they lead, as follow_symlinks asks.
// Names come cleaned from cleanURLPath (no "..", no dot segment), so only
// a symlink the site's owner made can lead out, and load checks its target.
type looseRoot string

func (r looseRoot) path(name string) string {
	return filepath.Join(string(r), filepath.FromSlash(name))
}

func (r looseRoot) Open(name string) (*os.File, error)     { return os.Open(r.path(name)) }
func (r looseRoot) Stat(name string) (fs.FileInfo, error)  { return os.Stat(r.path(name)) }
func (r looseRoot) Lstat(name string) (fs.FileInfo, error) { return os.Lstat(r.path(name)) }
func (r looseRoot) Close() error                           { return nil }

// errNotFound and friends are the outcomes of resolving a URL path; each
// maps to one status in fail.
var (
	// errBadPath: the decoded path is malformed (NUL, "..", bad UTF-8).
	errBadPath = errors.New("bad path")
	// errHidden: the file exists but is never served (dotfile, template,
	// script, config, or a symlink that is not allowed).
	errHidden = errors.New("hidden")
	// errNoIndex: a directory without index file and listings off.
	errNoIndex = errors.New("directory without index")
)

func (s *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusNotFound
	switch {
	case errors.Is(err, errBadPath):
		status = http.StatusBadRequest
	case errors.Is(err, errNoIndex), errors.Is(err, fs.ErrPermission):
		status = http.StatusForbidden
	case errors.Is(err, errHidden), errors.Is(err, fs.ErrNotExist), isNameError(err):
	default:
		status = http.StatusInternalServerError
		s.log.Error("static: serving file", "path", r.URL.Path, "err", err)
	}
	if status != http.StatusInternalServerError {
		s.log.Debug("static: refused", "path", r.URL.Path, "status", status, "reason", err)
	}
	s.opts.Errors.Serve(w, r, status)
}

// isNameError reports errors that mean "no such file" for a URL: a name
// too long, a file used as a folder, a path that escapes the root.
func isNameError(err error) bool {
	return errors.Is(err, syscall.ENAMETOOLONG) || errors.Is(err, syscall.ENOTDIR) ||
		errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EINVAL) ||
		strings.Contains(err.Error(), "path escapes from parent")
}

func (s *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	books.SetKind(r, books.KindStatic)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.methodNotAllowed(w, r)
		return
	}
	rel, err := cleanURLPath(r.URL.Path)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := s.lookup(rel)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if e.isDir {
		s.serveDir(w, r, rel, e)
		return
	}
	if strings.HasSuffix(r.URL.Path, "/") && rel != "" {
		s.fail(w, r, fs.ErrNotExist) // a file asked for as a folder
		return
	}
	s.serveFile(w, r, e)
}

func (s *Handler) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD, OPTIONS")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.opts.Errors.Serve(w, r, http.StatusMethodNotAllowed)
}

// cleanURLPath turns a decoded URL path into a slash-separated path
// relative to the root ("" for the root itself), refusing what could name
// something outside it or something never served.
func cleanURLPath(p string) (string, error) {
	if !utf8.ValidString(p) || strings.ContainsAny(p, "\x00\\") {
		return "", errBadPath
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == ".." {
			return "", errBadPath
		}
		if strings.HasPrefix(seg, ".") && seg != ".well-known" && seg != "." {
			return "", errHidden
		}
	}
	rel := strings.TrimPrefix(path.Clean(p), "/")
	if strings.HasSuffix(rel, ".tmpl") {
		return "", errHidden
	}
	return rel, nil
}

// lookup finds the cache entry for rel, filling or refreshing it.
func (s *Handler) lookup(rel string) (*fileEntry, error) {
	if e := s.cache.get(rel); e != nil {
		if e.fresh() {
			return e, nil
		}
		s.cache.drop(rel)
	}
	e, err := s.load(rel)
	if err != nil {
		return nil, err
	}
	s.cache.put(rel, e)
	return e, nil
}

// load resolves rel safely and builds its entry.
func (s *Handler) load(rel string) (*fileEntry, error) {
	abs := filepath.Join(s.rootReal, filepath.FromSlash(rel))
	if err := s.checkLinks(rel); err != nil {
		return nil, err
	}
	if s.opts.FollowSymlinks {
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil, err
		}
		// The link's target must itself be servable: no dot segment and no
		// template, checked on its path inside the root or, for a target
		// outside, on its whole real path (a link to ~/.ssh is refused).
		target := filepath.ToSlash(real)
		inside, err := filepath.Rel(s.rootReal, real)
		if err == nil && inside != ".." && !strings.HasPrefix(inside, "../") {
			target = "/" + filepath.ToSlash(inside)
		}
		if _, err := cleanURLPath(target); err != nil {
			return nil, errHidden
		}
		abs = real
	}
	if s.opts.Hidden != nil && s.opts.Hidden(abs) {
		return nil, errHidden
	}
	name := rel
	if name == "" {
		name = "."
	}
	fi, err := s.root.Stat(name)
	if err != nil {
		return nil, err
	}
	return s.newEntry(rel, abs, fi)
}

// checkLinks refuses symlinks on the way to rel unless follow_symlinks is
// on; os.Root refuses any that leave the root in both cases.
func (s *Handler) checkLinks(rel string) error {
	if s.opts.FollowSymlinks || rel == "" {
		return nil
	}
	prefix := ""
	for _, seg := range strings.Split(rel, "/") {
		prefix = path.Join(prefix, seg)
		fi, err := s.root.Lstat(prefix)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return errHidden
		}
	}
	return nil
}

func (s *Handler) serveDir(w http.ResponseWriter, r *http.Request, rel string, dir *fileEntry) {
	if !strings.HasSuffix(r.URL.Path, "/") {
		target := path.Base(r.URL.Path) + "/"
		w.Header().Set("Location", (&url.URL{Path: target}).EscapedPath()+querySuffix(r))
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	for _, idx := range s.opts.Index {
		if strings.HasSuffix(idx, ".tmpl") {
			continue
		}
		e, err := s.lookup(path.Join(rel, idx))
		if err == nil && !e.isDir {
			s.serveFile(w, r, e)
			return
		}
	}
	if !s.opts.Browse {
		s.fail(w, r, errNoIndex)
		return
	}
	s.serveListing(w, r, rel, dir)
}

func querySuffix(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}

// serveFile answers for one regular file: validators, conditionals,
// encoding, ranges, then the body from memory or disk.
func (s *Handler) serveFile(w http.ResponseWriter, r *http.Request, e *fileEntry) {
	h := w.Header()
	if done := checkPreconditions(w, r, e.etag, e.mod); done {
		return
	}
	rangeHeader := headerValue(r.Header, "Range")
	if rangeHeader != "" && !ifRangeMatches(r, e.etag, e.mod) {
		rangeHeader = ""
	}
	if rangeHeader == "" && s.opts.Compress && e.compressible {
		if s.serveEncoded(w, r, e) {
			return
		}
	}
	h["Content-Type"] = e.ctype
	h["Last-Modified"] = e.lastMod
	h["Etag"] = e.etagH
	h["Accept-Ranges"] = bytesUnit
	if s.opts.Compress && e.compressible {
		h["Vary"] = varyAE
	}
	if rangeHeader != "" {
		s.serveRanges(w, r, e, rangeHeader)
		return
	}
	h["Content-Length"] = e.clen
	s.sendWhole(w, r, e.rel, e.data, e.size)
}

// sendWhole answers 200 with a whole file: from memory when data holds
// it, else from disk. Headers other than the status are already set.
func (s *Handler) sendWhole(w http.ResponseWriter, r *http.Request, rel string, data []byte, size int64) {
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if data != nil {
		w.Write(data)
		return
	}
	s.copyFile(w, r, rel, 0, size)
}

var (
	bytesUnit = []string{"bytes"}
	varyAE    = []string{"Accept-Encoding"}
)

// copyFile streams length bytes at off from disk (sendfile on plain HTTP).
func (s *Handler) copyFile(w io.Writer, r *http.Request, rel string, off, length int64) {
	f, err := s.root.Open(rel)
	if err != nil {
		s.log.Error("static: open", "path", rel, "err", err)
		panic(http.ErrAbortHandler) // headers are out: abort, never a short body that looks whole
	}
	defer f.Close()
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			panic(http.ErrAbortHandler)
		}
	}
	n, err := io.Copy(w, &io.LimitedReader{R: f, N: length})
	if err != nil || n != length {
		if r.Context().Err() == nil && !isClientGone(err) {
			s.log.Warn("static: copy", "path", rel, "sent", n, "want", length, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

func isClientGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, os.ErrDeadlineExceeded)
}

// checkPreconditions evaluates If-Match, If-Unmodified-Since,
// If-None-Match and If-Modified-Since in RFC 9110 13.2.2 order and writes
// 304 or 412 when one decides the response.
func checkPreconditions(w http.ResponseWriter, r *http.Request, etag string, mod time.Time) bool {
	h := r.Header
	if im := headerValue(h, "If-Match"); im != "" {
		if !etagListMatch(im, etag, true) {
			w.WriteHeader(http.StatusPreconditionFailed)
			return true
		}
	} else if ius := headerValue(h, "If-Unmodified-Since"); ius != "" {
		if t, err := http.ParseTime(ius); err == nil && mod.Truncate(time.Second).After(t) {
			w.WriteHeader(http.StatusPreconditionFailed)
			return true
		}
	}
	if inm := headerValue(h, "If-None-Match"); inm != "" {
		if etagListMatch(inm, etag, false) {
			notModified(w, etag, mod)
			return true
		}
	} else if ims := headerValue(h, "If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !mod.Truncate(time.Second).After(t) {
			notModified(w, etag, mod)
			return true
		}
	}
	return false
}

func notModified(w http.ResponseWriter, etag string, mod time.Time) {
	h := w.Header()
	h.Set("Etag", etag)
	h.Set("Last-Modified", mod.UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusNotModified)
}

// etagListMatch compares a header's list of entity tags with ours; strong
// comparison for If-Match, weak for If-None-Match.
func etagListMatch(list, etag string, strong bool) bool {
	if strings.TrimSpace(list) == "*" {
		return true
	}
	for list != "" {
		var tag string
		tag, list, _ = strings.Cut(list, ",")
		tag = strings.TrimSpace(tag)
		if !strong {
			tag = strings.TrimPrefix(tag, "W/")
		} else if strings.HasPrefix(tag, "W/") {
			continue
		}
		if tag == etag || sameVariantBase(tag, etag) && !strong {
			return true
		}
	}
	return false
}

// sameVariantBase lets a client that cached a compressed variant ("x-br")
// revalidate against the resource: same file, same version.
func sameVariantBase(tag, etag string) bool {
	base := strings.TrimSuffix(etag, `"`)
	return strings.HasPrefix(tag, base+"-") && strings.HasSuffix(tag, `"`)
}

// ifRangeMatches reports whether a Range may be honoured: no If-Range, or
// one naming the current version (strong ETag or exact date).
func ifRangeMatches(r *http.Request, etag string, mod time.Time) bool {
	ir := headerValue(r.Header, "If-Range")
	if ir == "" {
		return true
	}
	if strings.HasPrefix(ir, `"`) {
		return ir == etag
	}
	t, err := http.ParseTime(ir)
	return err == nil && mod.Truncate(time.Second).Equal(t)
}

// headerValue reads a header by its canonical name without canonicalizing
// it again (Header.Get does, and it shows on the hot path).
func headerValue(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}
