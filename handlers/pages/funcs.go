package pages

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"

	"shoal/handlers/books"
	"shoal/handlers/session"
)

// renderState is one instance's view of the request it is rendering. It
// lives as long as its instance and is reset per request, so a render
// allocates little; the template functions read it.
type renderState struct {
	p    *Handler
	set  *pageSet
	w    http.ResponseWriter
	r    *http.Request
	data pageDot
	req  requestData
	sess pageSession
}

func (st *renderState) begin(p *Handler, set *pageSet, w http.ResponseWriter, r *http.Request) {
	st.p, st.set, st.w, st.r = p, set, w, r
	st.req = requestData{r: r, Method: r.Method, Host: r.Host, Path: r.URL.Path, Header: r.Header,
		RemoteAddr: r.RemoteAddr, ClientIP: books.ClientIP(r), TLS: r.TLS != nil}
	if info := books.InfoFrom(r); info != nil && info.AuthType != "" {
		st.req.User = info.User
	}
	st.sess = pageSession{store: p.Sessions, r: r}
	st.data = pageDot{Request: &st.req, Session: &st.sess, Node: nodeData{info: p.Node}, Now: time.Now()}
}

// end drops the request so a pooled instance does not keep it alive.
func (st *renderState) end() {
	*st = renderState{}
}

// pageDot is a page's dot.
type pageDot struct {
	Request *requestData
	Session *pageSession
	Node    nodeData
	Now     time.Time
}

// requestData is .Request: the parts of the request a page may read.
// They are fields, not methods: text/template looks a method up by name
// and builds its function type on every use, which made a few
// .Request.Path in a page cost more than the rest of it.
type requestData struct {
	Method     string
	Host       string
	Path       string
	Header     http.Header
	RemoteAddr string
	ClientIP   string // the client's address, trusted_proxies applied
	TLS        bool
	// User is the user a route's Basic auth checked; "" when none did.
	User string

	r     *http.Request
	query url.Values
}

// Query is parsed on first use and kept for the request.
func (d *requestData) Query() url.Values {
	if d.query == nil {
		d.query = d.r.URL.Query()
	}
	return d.query
}

// nodeData is .Node.
type nodeData struct{ info NodeInfo }

func (n nodeData) Name() string {
	if n.info == nil {
		return ""
	}
	return n.info.Name()
}

func (n nodeData) Members() []NodeMember {
	if n.info == nil {
		return nil
	}
	return n.info.Members()
}

// pageSession is .Session: read from the cookie on first use, written back
// only when a page changed it (or it needs re-issuing under the newest key).
type pageSession struct {
	store *session.Store // nil: empty and read-only
	r     *http.Request
	read  bool
	cur   session.Loaded
	dirty bool
}

func (s *pageSession) load() {
	if s.read {
		return
	}
	s.read = true
	if s.store == nil {
		s.cur = session.Loaded{Values: map[string]string{}}
		return
	}
	s.cur = s.store.Load(s.r)
}

// Get returns the value of k, "" when unset.
func (s *pageSession) Get(k string) string {
	s.load()
	return s.cur.Values[k]
}

// Set stores v (printed as a string) under k; an empty value deletes k.
// It returns "" so it can stand in a page.
func (s *pageSession) Set(k string, v any) string {
	s.load()
	if s.store == nil {
		return ""
	}
	val := fmt.Sprint(v)
	if val == "" {
		return s.Delete(k)
	}
	if old, ok := s.cur.Values[k]; !ok || old != val {
		s.cur.Values[k] = val
		s.dirty = true
	}
	return ""
}

// Delete removes k and returns "".
func (s *pageSession) Delete(k string) string {
	s.load()
	if _, ok := s.cur.Values[k]; ok && s.store != nil {
		delete(s.cur.Values, k)
		s.dirty = true
	}
	return ""
}

// Clear removes every value (log out) and returns "".
func (s *pageSession) Clear() string {
	s.load()
	if len(s.cur.Values) > 0 && s.store != nil {
		clear(s.cur.Values)
		s.dirty = true
	}
	return ""
}

// commit sets the cookie when the session changed or was read with an old
// key pair.
func (s *pageSession) commit(w http.ResponseWriter, r *http.Request) error {
	if !s.read || s.store == nil || !(s.dirty || s.cur.Stale) {
		return nil
	}
	if len(s.cur.Values) == 0 && !s.cur.Present {
		return nil
	}
	return s.store.Save(w, r, s.cur.Values)
}

// cacheHeaders keeps shared caches from storing a page that depends on,
// or sets, the session cookie.
func (s *pageSession) cacheHeaders(h http.Header) {
	if !s.read || s.store == nil {
		return
	}
	h.Add("Vary", "Cookie")
	if h.Get("Set-Cookie") != "" {
		h.Set("Cache-Control", "no-store")
	} else {
		h.Set("Cache-Control", "private")
	}
}

// pageStatusError is httpError's way out of a template: rendering stops and the
// site's error page for code is sent instead.
type pageStatusError struct{ code int }

func (e *pageStatusError) Error() string { return "http error " + strconv.Itoa(e.code) }

// pageRedirect is redirect's way out: rendering stops and a 303 is sent.
type pageRedirect struct{ url string }

func (e *pageRedirect) Error() string { return "redirect to " + e.url }

// maxIncludeBytes bounds one included file.
const maxIncludeBytes = 4 << 20

// maxFormBytes bounds a POSTed form read by the form function.
const maxFormBytes = 1 << 20

// funcs returns the template functions bound to st.
func (st *renderState) funcs() template.FuncMap {
	return template.FuncMap{
		"include":   st.include,
		"query":     func(k string) string { return st.req.Query().Get(k) },
		"cookie":    st.cookie,
		"header":    func(k string) string { return st.r.Header.Get(k) },
		"form":      st.form,
		"markdown":  st.markdown,
		"httpError": tmplHTTPError,
		"redirect":  tmplRedirect,
		"add":       func(a, b int) int { return a + b },
		"sub":       func(a, b int) int { return a - b },
		"atoi":      tmplAtoi,
		"list":      func(v ...any) []any { return v },
		"dict":      tmplDict,
	}
}

// placeholderFuncs lets pages parse: parsing checks that each function
// exists, and instances replace these with bound ones before executing.
func placeholderFuncs() template.FuncMap {
	return (&renderState{}).funcs()
}

// include returns a file under the site's root, path relative to it, as
// HTML (it is the site's own content). Dotfiles, template sources and
// anything outside root (symlinks included) are refused.
func (st *renderState) include(name string) (template.HTML, error) {
	rel := strings.TrimPrefix(name, "/")
	if rel == "" || strings.ContainsAny(rel, "\x00\\") {
		return "", fmt.Errorf("include %q: bad path", name)
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == "" || seg[0] == '.' {
			return "", fmt.Errorf("include %q: bad path", name)
		}
		if strings.HasSuffix(strings.ToLower(seg), ".tmpl") {
			return "", fmt.Errorf("include %q: template sources are not included; use {{template}} with a file in the templates folder", name)
		}
	}
	f, err := st.set.root.Open(rel)
	if err != nil {
		return "", fmt.Errorf("include %q: %w", name, err)
	}
	defer f.Close()
	var b bytes.Buffer
	n, err := io.Copy(&b, io.LimitReader(f, maxIncludeBytes+1))
	if err != nil {
		return "", fmt.Errorf("include %q: %w", name, err)
	}
	if n > maxIncludeBytes {
		return "", fmt.Errorf("include %q: larger than %d bytes", name, maxIncludeBytes)
	}
	return template.HTML(b.String()), nil
}

func (st *renderState) cookie(name string) string {
	c, err := st.r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// form returns a value of the request's url-encoded form (the body of a
// POST, else the query). The body is read once, at most maxFormBytes.
func (st *renderState) form(k string) (string, error) {
	if st.r.Form == nil {
		if st.r.Body != nil && st.w != nil {
			st.r.Body = http.MaxBytesReader(st.w, st.r.Body, maxFormBytes)
		}
		if err := st.r.ParseForm(); err != nil {
			return "", &pageStatusError{code: formErrorStatus(err)}
		}
	}
	return st.r.Form.Get(k), nil
}

func formErrorStatus(err error) int {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// markdown renders CommonMark with GitHub's extensions (tables,
// strikethrough, autolinks, task lists) to HTML. Raw HTML in the input is
// left out and javascript: links are dropped (goldmark's safe mode), so
// the output can be trusted even when the text came from a visitor.
func (st *renderState) markdown(v any) (template.HTML, error) {
	src, ok := tmplText(v)
	if !ok {
		return "", fmt.Errorf("markdown: want text, got %T", v)
	}
	var b bytes.Buffer
	if err := st.set.md.Convert([]byte(src), &b); err != nil {
		return "", fmt.Errorf("markdown: %w", err)
	}
	return template.HTML(b.String()), nil
}

func newMarkdown() goldmark.Markdown {
	return goldmark.New(goldmark.WithExtensions(extension.GFM))
}

// asText accepts strings and string-like types (template.HTML from
// include), byte slices and Stringers.
func tmplText(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case []byte:
		return string(t), true
	case fmt.Stringer:
		return t.String(), true
	case nil:
		return "", true
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.String {
		return rv.String(), true
	}
	return "", false
}

// tmplHTTPError (httpError) stops rendering; the site's error page for code is sent.
func tmplHTTPError(code int) (string, error) {
	if code < 400 || code > 599 {
		return "", fmt.Errorf("httpError %d: status must be 400-599", code)
	}
	return "", &pageStatusError{code: code}
}

// tmplRedirect (redirect) stops rendering and answers 303 See Other to a path on this
// site (never another host: no open redirects).
func tmplRedirect(to string) (string, error) {
	if !strings.HasPrefix(to, "/") || strings.HasPrefix(to, "//") || strings.HasPrefix(to, "/\\") ||
		strings.ContainsAny(to, "\r\n\x00") {
		return "", fmt.Errorf("redirect %q: want a path on this site, starting with one /", to)
	}
	return "", &pageRedirect{url: to}
}

// tmplAtoi (atoi) reads an integer; empty or bad text is 0, so a missing counter
// starts at zero instead of failing the page.
func tmplAtoi(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0
	}
	return n
}

// tmplDict (dict) builds a map from key, value pairs, to pass several values to a
// partial: {{template "card" (dict "title" .Title "n" 3)}}.
func tmplDict(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("dict: %d arguments, want key, value pairs", len(kv))
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("dict: key %d is %T, want a string", i/2+1, kv[i])
		}
		m[k] = kv[i+1]
	}
	return m, nil
}
