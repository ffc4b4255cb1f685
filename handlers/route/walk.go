package route

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path"
	"strings"
)

// MaxRestarts is how often a rewrite or a try_files hit may restart the
// walk before the request is answered 500: a rewrite that matches its own
// output loops, and a bound turns that into a log line, not a hang.
const MaxRestarts = 10

// ErrLoop is returned by Resolve when rewrites restarted the walk more
// than MaxRestarts times; the error's text names the routes involved.
var ErrLoop = errors.New("route: rewrites loop")

// Request is what the walk reads of a request.
type Request struct {
	Method string
	Client netip.Addr
	// Vars holds the placeholder values; Resolve updates Path and Query as
	// rewrites and try_files hits change them.
	Vars Vars
}

// Header is one response-header change of a matching route.
type Header struct {
	Name   string // canonical
	Value  string
	Remove bool
}

// Result is what the walk decided for a request.
type Result struct {
	// Path and Query are the request's after rewrites and try_files hits;
	// Changed says whether they differ from what the client sent.
	Path, Query string
	Changed     bool

	// Headers are the changes of every matching route, in file order.
	Headers []Header
	// HeaderRoutes has bit i set when route i (of the first 64) added
	// Headers; with HeadersFixed, the changes depend on nothing else, so a
	// response prepared once per file can be prepared once per file and
	// HeaderRoutes too.
	HeaderRoutes uint64
	HeadersFixed bool
	// Denied is set when a matching route's allow or deny refuses the
	// client: the answer is 403.
	Denied bool
	// Auth lists the Basic auth every matching route asks for.
	Auth []*Auth
	// Limits lists the rate limits of every matching route.
	Limits []*Limit

	// Action is the first matching route's action; NoAction leaves the
	// request to the site's own dispatch of Path.
	Action ActionKind
	Status int    // Redirect: its status; Respond: the status to answer
	URL    string // Redirect: the Location
	// Upstream names the [[upstream]] an Upstream action proxies to.
	Upstream string
	// Route is the index of the route whose action this is, -1 for none.
	Route int
}

// ApplyHeaders makes the matching routes' header changes to h.
func (r *Result) ApplyHeaders(h http.Header) { ApplyHeaders(r.Headers, h) }

// Exists tells the walk whether a try_files candidate exists on the site:
// a file, a directory with an index (a path ending in "/"), a page or a
// CGI script. p is a clean path without the query.
type Exists func(p string) bool

// Resolve walks the routes for req: it collects the modifiers of every
// matching route and stops at the first with an action. A rewrite or a
// try_files hit on another path restarts the walk with that path, at most
// MaxRestarts times. A nil Table resolves every request to the site's own
// dispatch.
func (t *Table) Resolve(req *Request, exists Exists) (Result, error) {
	res := Result{Path: req.Vars.Path, Query: req.Vars.Query, Route: -1, HeadersFixed: true}
	if t == nil {
		return res, nil
	}
	v := req.Vars
	var trail []int
	for restarts := 0; ; restarts++ {
		if restarts > MaxRestarts {
			return res, fmt.Errorf("%w: %s", ErrLoop, t.describe(trail))
		}
		next, done := t.walkOnce(req, &v, &res, exists)
		if done {
			res.Path, res.Query = v.Path, v.Query
			res.Changed = v.Path != req.Vars.Path || v.Query != req.Vars.Query
			return res, nil
		}
		trail = append(trail, next)
	}
}

// walkOnce applies the routes matching v.Path. It returns done when the
// walk ends here, else the index of the route that changed v and asks for
// another walk.
func (t *Table) walkOnce(req *Request, v *Vars, res *Result, exists Exists) (restartedBy int, done bool) {
	for i := range t.rules {
		r := &t.rules[i]
		ok, groups := r.matches(req.Method, v.Scheme, v.Path)
		if !ok {
			continue
		}
		r.applyModifiers(req.Client, v, groups, res)
		switch {
		case r.rewrite != nil:
			p, q := splitTarget(r.rewrite.expand(v, groups), v.Query)
			v.Path, v.Query = cleanKeepSlash(p), q
			return i, false
		case r.tries != nil || r.tryStatus != 0:
			return r.tryFiles(v, groups, res, exists)
		case r.kind != NoAction:
			res.Action, res.Status, res.Upstream, res.Route = r.kind, r.status, r.upstream, r.index
			if r.kind == Redirect {
				res.URL = r.redirect.expand(v, groups)
			}
			return i, true
		}
	}
	return -1, true
}

// tryFiles serves the first candidate that exists: the same path ends the
// walk (the site's dispatch serves it), another path restarts it. As in
// nginx, the last entry is the fallback, taken without a check (a front
// controller an upstream runs need not be a file here), or a "=status".
func (r *rule) tryFiles(v *Vars, groups []string, res *Result, exists Exists) (int, bool) {
	for i := range r.tries {
		p, q := splitTarget(r.tries[i].expand(v, groups), v.Query)
		p = cleanKeepSlash(p)
		fallback := i == len(r.tries)-1 && r.tryStatus == 0
		if !fallback && !exists(p) {
			continue
		}
		if p == v.Path {
			v.Query = q
			return r.index, true
		}
		v.Path, v.Query = p, q
		return r.index, false
	}
	status := r.tryStatus
	if status == 0 {
		status = http.StatusNotFound
	}
	res.Action, res.Status, res.Route = Respond, status, r.index
	return r.index, true
}

// cleanKeepSlash cleans a candidate ("{path}/" of "/a/" is "/a//") but
// keeps a trailing slash, which asks for a directory.
func cleanKeepSlash(p string) string {
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// splitTarget cuts an expanded target into path and query; a target
// without "?" keeps the request's query, as nginx's rewrite does.
func splitTarget(s, query string) (string, string) {
	if p, q, ok := strings.Cut(s, "?"); ok {
		return p, q
	}
	return s, query
}

func (r *rule) matches(method, scheme, p string) (bool, []string) {
	if len(r.methods) > 0 && !methodListed(r.methods, method) {
		return false, nil
	}
	if r.scheme != "" && r.scheme != scheme {
		return false, nil
	}
	return r.path.match(p)
}

// methodListed reports whether m is in list; GET also admits HEAD, as a
// HEAD is a GET without its body everywhere else in shoal.
func methodListed(list []string, m string) bool {
	for _, x := range list {
		if x == m || (x == http.MethodGet && m == http.MethodHead) {
			return true
		}
	}
	return false
}

func (r *rule) applyModifiers(client netip.Addr, v *Vars, groups []string, res *Result) {
	for i := range r.headers {
		h := &r.headers[i]
		res.Headers = append(res.Headers, Header{Name: h.name, Remove: h.remove, Value: h.value.expand(v, groups)})
	}
	if len(r.headers) > 0 {
		if r.index < 64 && r.headersFixed {
			res.HeaderRoutes |= 1 << r.index
		} else {
			res.HeadersFixed = false
		}
	}
	if r.refuses(client) {
		res.Denied = true
	}
	if r.auth != nil && !containsAuth(res.Auth, r.auth) {
		res.Auth = append(res.Auth, r.auth)
	}
	if r.limit != nil && !containsLimit(res.Limits, r.limit) {
		res.Limits = append(res.Limits, r.limit)
	}
}

// refuses applies deny, then allow: a client in deny is refused, and when
// allow is set a client outside it is too.
func (r *rule) refuses(client netip.Addr) bool {
	client = client.Unmap()
	for _, p := range r.deny {
		if p.Contains(client) {
			return true
		}
	}
	if len(r.allow) == 0 {
		return false
	}
	for _, p := range r.allow {
		if p.Contains(client) {
			return false
		}
	}
	return true
}

func containsAuth(list []*Auth, a *Auth) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

func containsLimit(list []*Limit, l *Limit) bool {
	for _, x := range list {
		if x == l {
			return true
		}
	}
	return false
}

// describe names the routes of a rewrite loop for the log line.
func (t *Table) describe(trail []int) string {
	var b strings.Builder
	for i, idx := range trail {
		if i > 0 {
			b.WriteString(" -> ")
		}
		fmt.Fprintf(&b, "route.%d (%s)", idx, t.rules[idx].spec)
		if i >= 3 {
			b.WriteString(" -> ...")
			break
		}
	}
	return b.String()
}
