package cgi

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"shoal/handlers/books"
	"shoal/handlers/session"
)

// Handler runs scripts for one [[site.cgi]] mapping of one site, per RFC 3875.
//
// It is written on syscall.StartProcess rather than net/http/cgi because that
// package refuses chunked bodies, never kills a hung script or its
// children, has no concurrency limit and passes Authorization and
// underscore headers through. A Handler must not be copied after first use.
type Handler struct {
	// Root is the site's document root: DOCUMENT_ROOT, the base of
	// PATH_TRANSLATED, and where extension-style scripts live.
	Root string
	// Prefix (a URL path ending in "/") maps to the folder Dir, ScriptAlias
	// style: every file there is a script and none is served as a file.
	// Either empty: no prefix mapping.
	Prefix, Dir string
	// Ext lists extensions (".cgi", ".php"; matched without regard to case)
	// that make a file under Root a script, AddHandler style.
	Ext []string
	// Interpreters maps an extension to the program that runs such a
	// script, possibly with arguments ("php-cgi", "python3 -u"); the
	// script's path is its last argument. A script without one must be
	// executable, else 403.
	Interpreters map[string]string
	// Program, when set, is the one program every path under Prefix runs
	// (the rest of the path is PATH_INFO), as Apache's ScriptAlias to a
	// file; Dir is then not used.
	Program string
	// Timeout bounds how long a script may go without a byte read from its
	// stdout or written to its stdin (as Apache and lighttpd count it, so a
	// long download keeps going); then its whole process group gets
	// SIGTERM, and SIGKILL after KillGrace. Zero: 30s.
	Timeout time.Duration
	// MaxTime caps a run as a whole, however busy. Zero: no cap.
	MaxTime time.Duration
	// FollowSymlinks lets a script's path use symlinks that leave the
	// folder (Apache's FollowSymLinks); off, such a link gets 403.
	FollowSymlinks bool
	// KillGrace is the wait between SIGTERM and SIGKILL. Zero: 2s.
	KillGrace time.Duration
	// MaxConcurrent bounds the scripts running at once through this
	// mapping. Up to as many more requests wait at most QueueTimeout for a
	// slot; the rest get 503 with Retry-After. Zero: 16.
	MaxConcurrent int
	// QueueTimeout is the longest a request waits for a slot. Zero: 1s.
	QueueTimeout time.Duration
	// Env holds extra variables for every script; they never override a
	// request meta-variable.
	Env map[string]string
	// PassEnv names the server's own environment variables a script gets
	// (read once, at first use); no other variable of the server leaks.
	PassEnv []string
	// MaxBodyBytes caps a request body. A body without a length (chunked,
	// HTTP/2) is buffered up to it, in memory and then in an unlinked temp
	// file, so CONTENT_LENGTH is exact. Over it: 413 and the script never
	// runs. Zero: 32 MiB.
	MaxBodyBytes int64
	// NodeName is passed as SHOAL_NODE.
	NodeName string
	// Sessions gives scripts HTTP_SESSION and applies X-Replace-Session.
	// Nil: no HTTP_SESSION, and X-Replace-Session is dropped.
	Sessions session.Codec
	// Errors writes 403/404/413/500/502/503/504 pages. Nil: generic pages.
	Errors *books.ErrorPages
	// Dispatch serves a script's local redirect (RFC 3875 6.2.2, a bare
	// "Location: /path") inside the server, as a GET. Nil: the client gets
	// a 302 to that path instead.
	Dispatch http.Handler
	// Logger receives script stderr lines and failures. Nil: slog.Default().
	Logger *slog.Logger
	// Events is told of script starts, timeouts and 503 refusals (the
	// node's *books.Metrics fits). Nil: nobody is told.
	Events Events

	once    sync.Once
	st      *cgiState
	running atomic.Int64
	waiting atomic.Int64
}

// Events counts what happens to scripts, for metrics.
type Events interface {
	CGIStarted()
	CGITimedOut()
	CGIRejected()
}

// Running reports how many scripts of this mapping are running now.
func (h *Handler) Running() int { return int(h.running.Load()) }

// Queued reports how many requests wait for a free slot now.
func (h *Handler) Queued() int { return int(h.waiting.Load()) }

// Match reports whether this mapping handles the (decoded) URL path, so
// routing sends it here and the static handler never serves it as a file.
func (h *Handler) Match(urlPath string) bool {
	st := h.state()
	if st.prefix != "" && (strings.HasPrefix(urlPath, st.prefix) || urlPath == st.prefix[:len(st.prefix)-1]) {
		return true
	}
	return st.extScriptEnd(urlPath) > 0
}

// Has reports whether urlPath runs a script of this mapping (the script
// exists and may run), for try_files.
func (h *Handler) Has(urlPath string) bool {
	if !h.Match(urlPath) {
		return false
	}
	sc, _, _ := h.state().resolve(urlPath)
	return sc != nil
}

// IsScript reports whether the file (an absolute path) is one this mapping
// runs: anything inside Dir, or a file whose extension is in Ext. The
// static handler refuses such files even when reached by another URL.
func (h *Handler) IsScript(file string) bool {
	st := h.state()
	if st.dir != "" && cgiWithin(file, st.dir) || st.program != "" && file == st.program {
		return true
	}
	return st.hasExt(file)
}

// Index finds the script that serves a URL path ending in "/" when the
// site's index names one (index = ["index.cgi", "doku.php"]): the first
// name of index that exists in that folder under root wins, and when it is
// a script of one of the mappings, Index returns the mapping and the
// script's URL path. A page or file found first wins as it is, so the
// order of index stays the site's. No name a mapping runs: no file is
// looked at.
func Index(root string, index []string, urlPath string, cgis []*Handler) (*Handler, string) {
	if !strings.HasSuffix(urlPath, "/") || !cgiIndexNamesScript(index, cgis) {
		return nil, ""
	}
	if strings.IndexByte(urlPath, 0) >= 0 || cgiDotSegment(urlPath) {
		return nil, ""
	}
	dir := filepath.Join(root, filepath.FromSlash(urlPath))
	for _, name := range index {
		file := filepath.Join(dir, name)
		if fi, err := os.Stat(file); err != nil || fi.IsDir() {
			continue
		}
		for _, c := range cgis {
			if c.Match(urlPath+name) && c.IsScript(file) {
				return c, urlPath + name
			}
		}
		return nil, ""
	}
	return nil, ""
}

func cgiIndexNamesScript(index []string, cgis []*Handler) bool {
	for _, name := range index {
		for _, c := range cgis {
			if c.state().hasExt(name) {
				return true
			}
		}
	}
	return false
}

// ServeHTTP reads top to bottom: find the script, check it may run, take
// the body, wait for a slot, run it and relay its response.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	books.SetKind(r, books.KindCGI)
	st := h.state()
	sc, status, why := st.resolve(r.URL.Path)
	if status != 0 {
		h.refuse(w, r, status, why, sc)
		return
	}
	if status, why = st.runnable(sc); status != 0 {
		h.refuse(w, r, status, why, sc)
		return
	}
	in, status, err := h.requestBody(r)
	if status != 0 {
		h.refuse(w, r, status, err.Error(), sc)
		return
	}
	defer in.close()
	if !h.acquire(r.Context()) {
		if h.Events != nil {
			h.Events.CGIRejected()
		}
		w.Header().Set("Retry-After", "1")
		h.refuse(w, r, http.StatusServiceUnavailable, "cgi: too many scripts running", sc)
		return
	}
	if redirect := h.runInSlot(w, r, sc, in); redirect != "" {
		h.localRedirect(w, r, redirect)
	}
}

// runInSlot runs the script holding a slot taken by acquire; the slot is
// given back even when the response is aborted by a panic.
func (h *Handler) runInSlot(w http.ResponseWriter, r *http.Request, sc *cgiScript, in *cgiInput) string {
	defer func() { <-h.state().slots }()
	return h.run(w, r, sc, in)
}

// refuse answers status without running anything; 400 and 404 are logged
// at debug, everything else (a 413 too: a limit an operator may need to
// raise) as a warning.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, why string, sc *cgiScript) {
	lvl := slog.LevelWarn
	if status == http.StatusNotFound || status == http.StatusBadRequest {
		lvl = slog.LevelDebug
	}
	args := []any{"status", status, "reason", why, "method", r.Method, "uri", r.RequestURI, "remote", books.ClientIP(r)}
	if sc != nil && sc.file != "" {
		args = append(args, "script", sc.file)
	}
	h.logger().Log(r.Context(), lvl, "cgi refused", args...)
	h.Errors.Serve(w, r, status)
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// acquire takes a run slot, waiting in a short queue when all are busy.
func (h *Handler) acquire(ctx context.Context) bool {
	st := h.state()
	select {
	case st.slots <- struct{}{}:
		return true
	default:
	}
	if h.waiting.Add(1) > int64(cap(st.slots)) {
		h.waiting.Add(-1)
		return false
	}
	defer h.waiting.Add(-1)
	t := time.NewTimer(st.queueTimeout)
	defer t.Stop()
	select {
	case st.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}
