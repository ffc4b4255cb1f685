package pages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"

	"shoal/handlers/books"
	"shoal/handlers/session"
)

// Handler serves a site's html/template pages: every *.tmpl file under Root
// is a page at its clean URL (/about -> about.tmpl, / and dir/ -> the
// index page). Every file in Templates (layouts, partials) is parsed into
// each page. Pages are parsed once and kept; Reload re-parses them, and in
// Dev mode a changed file is re-parsed on the next request.
//
// A Handler must not be copied after first use.
type Handler struct {
	// Root is the site's document root.
	Root string
	// Templates is the folder of layouts and partials parsed into every
	// page; "" or a folder that does not exist means none.
	Templates string
	// Index lists the names tried for "/" and "dir/", in order (the
	// site's index setting). A name not ending in .tmpl that exists in
	// the folder means the static file wins, so Match says no. nil means
	// ["index.tmpl"].
	Index []string
	// Dev re-parses changed, added and removed files on each request, and
	// shows template errors in the page instead of the site's 500 page.
	Dev bool
	// Sessions stores .Session; nil gives pages an empty, read-only
	// session.
	Sessions *session.Store
	// Node tells pages about this node and its cluster (.Node); nil means
	// .Node.Name is "" and there are no members.
	Node NodeInfo
	// Errors writes error responses; nil means generic pages.
	Errors *books.ErrorPages
	// Logger receives template errors; nil means slog.Default().
	Logger *slog.Logger

	// set is the parsed pages; mu serialises its replacement (Reload,
	// first use, Dev re-parses). Readers only Load.
	set atomic.Pointer[pageSet]
	mu  sync.Mutex
	// bufs holds *bytes.Buffer for rendering.
	bufs sync.Pool
}

// NodeInfo is what a page may learn about the cluster (.Node). The server
// adapts the cluster to it; handlers do not import cluster.
type NodeInfo interface {
	Name() string
	Members() []NodeMember
}

// NodeMember is one member of the cluster as a page sees it.
type NodeMember struct {
	Name     string
	State    string // alive | suspect | dead | left
	Load     float64
	Inflight int
	Capacity int
	Draining bool
}

// maxPageBytes bounds one rendered page, so a runaway template (a range
// over a huge number) fails with 500 instead of exhausting memory.
const maxPageBytes = 16 << 20

func (p *Handler) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// Match reports whether a page exists for the clean URL path urlPath.
// Paths naming a template source (/about.tmpl, any case, with trailing
// slash or NUL) never match, nor do dotfiles or unclean paths.
func (p *Handler) Match(urlPath string) bool {
	return p.lookup(urlPath) != nil
}

// Reload re-parses every page and layout. On a parse error the pages
// served so far stay in place and the error (every failing file) is
// returned; only when there were none yet is the new, partly broken set
// installed, so broken pages answer 500 and the others work.
func (p *Handler) Reload() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.loadSet()
	if err == nil || p.set.Load() == nil {
		p.set.Store(s)
	}
	return err
}

// current returns the parsed set, parsing it on first use.
func (p *Handler) current() *pageSet {
	if s := p.set.Load(); s != nil {
		return s
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.set.Load(); s != nil {
		return s
	}
	s, err := p.loadSet()
	if err != nil {
		p.log().Error("pages: parse failed", "root", p.Root, "err", err)
	}
	p.set.Store(s)
	return s
}

func (p *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	books.SetKind(r, books.KindTemplate)
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		p.Errors.Serve(w, r, http.StatusMethodNotAllowed)
		return
	}
	pg := p.lookup(r.URL.Path)
	if pg == nil {
		p.Errors.Serve(w, r, http.StatusNotFound)
		return
	}
	if pg.err != nil {
		p.fail(w, r, pg, pg.err)
		return
	}
	p.render(w, r, pg)
}

// render executes pg into a pooled buffer and sends it only when the whole
// page rendered, so a failure never shows half a page.
func (p *Handler) render(w http.ResponseWriter, r *http.Request, pg *tmplPage) {
	inst, err := pg.get()
	if err != nil {
		p.fail(w, r, pg, err)
		return
	}
	defer pg.put(inst)

	buf := p.getBuffer()
	defer p.putBuffer(buf)
	st := inst.st
	st.begin(p, pg.set, w, r)
	defer st.end()

	out := &pageWriter{buf: buf, ctx: r.Context()}
	err = inst.t.Execute(out, &st.data)
	if err != nil {
		p.renderFailed(w, r, pg, st, err)
		return
	}
	if err := st.sess.commit(w, r); err != nil {
		p.sessionFailed(w, r, pg, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	st.sess.cacheHeaders(h)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// renderFailed sorts an execution error: a page that asked for an error
// status or a redirect gets it; a client that went away gets nothing;
// anything else is the template's bug, logged and answered with 500.
func (p *Handler) renderFailed(w http.ResponseWriter, r *http.Request, pg *tmplPage, st *renderState, err error) {
	var se *pageStatusError
	var re *pageRedirect
	switch {
	case errors.As(err, &se):
		p.Errors.Serve(w, r, se.code)
	case errors.As(err, &re):
		// The form pattern (POST, set session, 303) needs the cookie.
		if err := st.sess.commit(w, r); err != nil {
			p.sessionFailed(w, r, pg, err)
			return
		}
		st.sess.cacheHeaders(w.Header())
		http.Redirect(w, r, re.url, http.StatusSeeOther)
	case r.Context().Err() != nil:
		// The client is gone; nobody reads an answer.
	default:
		p.fail(w, r, pg, err)
	}
}

// templateAt finds "name:line" in text/template's error messages, which
// start "template: name:line:col: ...".
var templateAt = regexp.MustCompile(`template: ?([^:\s]+):(\d+)`)

// fail logs err with the template's file:line and answers 500: the site's
// page, or in Dev mode the error itself.
func (p *Handler) fail(w http.ResponseWriter, r *http.Request, pg *tmplPage, err error) {
	at := pg.file
	if m := templateAt.FindStringSubmatch(err.Error()); m != nil {
		at = m[1] + ":" + m[2]
	}
	p.log().Error("template failed", "page", pg.file, "at", at, "method", r.Method, "path", r.URL.Path, "err", err)
	for _, k := range []string{"Set-Cookie", "Location"} {
		w.Header().Del(k)
	}
	if !p.Dev {
		p.Errors.Serve(w, r, http.StatusInternalServerError)
		return
	}
	body := "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>500 template error</title></head><body>" +
		"<h1>500 template error</h1><p>" + html.EscapeString(at) + "</p><pre>" + html.EscapeString(err.Error()) +
		"</pre><hr><p>shoal (dev mode: errors are shown because [site] dev = true)</p></body></html>\n"
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusInternalServerError)
	if r.Method != http.MethodHead {
		w.Write([]byte(body))
	}
}

// sessionFailed answers 500 when a page's session could not be written
// (too large for a cookie): sending the page without it would lose the
// visitor's data silently.
func (p *Handler) sessionFailed(w http.ResponseWriter, r *http.Request, pg *tmplPage, err error) {
	p.log().Error("session not saved", "page", pg.file, "method", r.Method, "path", r.URL.Path, "err", err)
	w.Header().Del("Set-Cookie")
	p.Errors.Serve(w, r, http.StatusInternalServerError)
}

// errPageTooLarge stops a template whose output passes maxPageBytes.
var errPageTooLarge = fmt.Errorf("pages: output larger than %d bytes", maxPageBytes)

// pageWriter collects a page, refusing output past maxPageBytes and
// stopping once the client has gone.
type pageWriter struct {
	buf    *bytes.Buffer
	ctx    context.Context
	writes int
}

func (w *pageWriter) Write(b []byte) (int, error) {
	if w.buf.Len()+len(b) > maxPageBytes {
		return 0, errPageTooLarge
	}
	// The context is checked now and then, not per write: templates make
	// many tiny writes.
	if w.writes++; w.writes%64 == 0 {
		if err := w.ctx.Err(); err != nil {
			return 0, err
		}
	}
	return w.buf.Write(b)
}

func (p *Handler) getBuffer() *bytes.Buffer {
	if b, ok := p.bufs.Get().(*bytes.Buffer); ok {
		return b
	}
	return new(bytes.Buffer)
}

func (p *Handler) putBuffer(b *bytes.Buffer) {
	// A huge page's buffer is let go rather than pinned in the pool.
	if b.Cap() > 1<<20 {
		return
	}
	b.Reset()
	p.bufs.Put(b)
}
