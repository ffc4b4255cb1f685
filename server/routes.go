package server

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"shoal/handlers/books"
	"shoal/handlers/cgi"
	"shoal/handlers/route"
	"shoal/handlers/static"
	"shoal/server/config"
)

// This file is where a site's [[site.route]] rules meet the one request
// path (request.go): the full chain asks routesFor and applyRoutes, the
// fast paths ask fastRoutes, and both get their answers from the same
// compiled table (handlers/route), so a fast answer never skips a route.

// routeState is what a node keeps for the routes of all its sites across
// reloads: the rate buckets (a reload must not hand every client a fresh
// burst) and the bcrypt guard (its cache of good passwords and its
// failure allowance per client).
type routeState struct {
	limits *route.Limits
	guard  *route.Guard
}

func newRouteState() *routeState {
	return &routeState{limits: route.NewLimits(), guard: route.NewGuard()}
}

// compileRoutes builds a site's route table with the node's shared state.
// The config was validated, so an error here means a file (an htpasswd)
// changed in between.
func compileRoutes(sc config.Site, label string, rs *routeState, hasUpstream func(string) bool) (*route.Table, error) {
	tbl, errs := route.Compile(sc.RouteSpecs(), route.Options{
		Scope: label, HasUpstream: hasUpstream, Limits: rs.limits, Guard: rs.guard})
	if len(errs) > 0 {
		return nil, fmt.Errorf("site %s: %w", label, errs[0])
	}
	return tbl, nil
}

// routeDecision is what a site's routes decided for one request: the
// modifiers of every matching route and the first action.
type routeDecision struct {
	route.Result
}

// fastRoutes is the fast paths' question to the routes: may a cached file
// answer a GET or HEAD of path (clean, no query) on scheme, and if so with
// which header rules (key 0: none)? Only routes that set fixed headers
// leave a request to a fast path; anything else (allow/deny, auth, a
// rate, an action, a header with a placeholder, a rule on Date, which the
// fast path writes itself) takes the full chain. No allocation: the set
// of routes is a bit mask.
func (st *site) fastRoutes(method, scheme, path string) (key uint64, ok bool) {
	if st.routes == nil {
		return 0, true
	}
	return st.routes.Plain(method, scheme, path)
}

// fastVariant is the cached response f with the header rules of key.
func (st *site) fastVariant(f *static.FastFile, key uint64) *static.FastFile {
	if key == 0 || f == nil {
		return f
	}
	return f.Variant(key, func(h http.Header) { route.ApplyHeaders(st.routes.FixedHeaders(key), h) })
}

// routesFor walks the site's routes for a request of the full chain; nil
// when the site has none.
func (st *site) routesFor(rq *request, r *http.Request) (*routeDecision, error) {
	if st.routes == nil {
		return nil, nil
	}
	client, _ := netip.ParseAddr(rq.ClientIP)
	in := route.Request{Method: r.Method, Client: client, Vars: route.Vars{
		Path: r.URL.Path, Query: r.URL.RawQuery, URI: r.RequestURI,
		Host: hostOnly(r.Host), Scheme: requestScheme(r), Remote: rq.ClientIP}}
	res, err := st.routes.Resolve(&in, st.exists)
	if err != nil {
		return nil, err
	}
	return &routeDecision{Result: res}, nil
}

// applyRoutes runs what the routes decided on a request of the full
// chain, its books open: header rules on whatever is answered, then
// allow/deny (403), rates (429), Basic auth (401), and the action. It
// returns the request the site's dispatch serves next (its path changed
// by a rewrite or try_files) and whether it does; false: the routes
// answered it.
func (st *site) applyRoutes(rq *request, w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	d, err := st.routesFor(rq, r)
	if err != nil {
		st.log.Error("routes: request not served", "site", st.label, "path", r.URL.Path, "err", err)
		st.errors.Serve(w, r, http.StatusInternalServerError)
		return r, false
	}
	if d == nil {
		return r, true
	}
	rq.route = d
	if len(d.Headers) > 0 {
		if rec, ok := w.(*books.Recorder); ok {
			rec.Edit = d.ApplyHeaders
		}
	}
	if d.Denied {
		st.errors.Serve(w, r, http.StatusForbidden)
		return r, false
	}
	// A peer proxied a hop here after its own walk: its buckets counted
	// the request already (and told the others), so it is not counted
	// twice. Auth runs again (from the cache) for the user's name.
	if !rq.hop && !rq.redirected && !st.admit(rq, w, r, d) || !st.authenticate(rq, w, r, d) {
		return r, false
	}
	switch d.Action {
	case route.Redirect:
		w.Header().Set("Location", d.URL)
		w.WriteHeader(d.Status)
		return r, false
	case route.Respond:
		st.respond(w, r, d.Status)
		return r, false
	}
	if d.Changed {
		r = withTarget(r, d.Path, d.Query)
	}
	if d.Action == route.Upstream {
		st.proxyUpstream(w, r, d.Upstream)
		return r, false
	}
	return r, true
}

// internalRedirect serves a script's local redirect (a CGI or FastCGI
// answer of "Location: /path" alone) as Apache serves an internal
// redirect: the site's routes apply to the new path (deny, auth,
// rewrite, respond, an upstream: a .php path runs in php-fpm rather than
// going out as the file's source), then its dispatch. Rates counted the
// request when it came in and are not taken again.
func (st *site) internalRedirect(w http.ResponseWriter, r *http.Request) {
	info := books.InfoFrom(r)
	rq := &request{redirected: true}
	rq.Info = *info
	r, ok := st.applyRoutes(rq, w, r)
	if rq.AuthType != "" { // the new path's auth checked the user: REMOTE_USER
		info.User, info.AuthType = rq.User, rq.AuthType
	}
	if ok {
		st.dispatch(w, r)
	}
}

// proxyUpstream sends r to the named upstream, through the cluster as
// dynamic work (an upstream on every node is balanced like CGI), with the
// body limits of the site.
func (st *site) proxyUpstream(w http.ResponseWriter, r *http.Request, name string) {
	h, ok := st.upstreams[name]
	if !ok { // validation makes this impossible; a 502 rather than a panic
		st.errors.Serve(w, r, http.StatusBadGateway)
		return
	}
	if !st.limitBody(w, r) {
		return
	}
	books.SetKind(r, books.KindUpstream)
	if st.cluster == nil {
		h.ServeHTTP(w, r)
		return
	}
	st.cluster.serve(w, r, h, st.label, st.balance, true)
}

// checkedUser is the user a route's auth checked, for FastCGI's
// REMOTE_USER and AUTH_TYPE.
func checkedUser(r *http.Request) (string, string) {
	if info := books.InfoFrom(r); info != nil && info.AuthType != "" {
		return info.User, info.AuthType
	}
	return "", ""
}

// admit takes a token from each rate of the matching routes, or answers
// 429 with the Retry-After of the emptiest.
func (st *site) admit(rq *request, w http.ResponseWriter, r *http.Request, d *routeDecision) bool {
	now := time.Now()
	for _, l := range d.Limits {
		if ok, wait := l.Allow(rq.ClientIP, now); !ok {
			tooMany(w, r, st, wait)
			return false
		}
	}
	return true
}

// failureWait is the Retry-After of a client past its failed-password
// allowance (one more attempt every 6 s).
const failureWait = 6 * time.Second

// authenticate checks the Basic credentials against every realm of the
// matching routes: none or wrong, 401 with the realm; too many failures
// from this client, 429. A checked user goes into the books (access log,
// REMOTE_USER and AUTH_TYPE for CGI, .Request.User for pages).
func (st *site) authenticate(rq *request, w http.ResponseWriter, r *http.Request, d *routeDecision) bool {
	if len(d.Auth) == 0 {
		return true
	}
	user, pass, ok := r.BasicAuth()
	client, _ := netip.ParseAddr(rq.ClientIP)
	for _, a := range d.Auth {
		verdict := route.Denied
		if ok {
			verdict = a.Check(r.Context(), user, pass, client)
		}
		switch verdict {
		case route.Throttled:
			st.log.Warn("auth: too many failed passwords", "site", st.label, "client", rq.ClientIP)
			tooMany(w, r, st, failureWait)
			return false
		case route.Denied:
			if ok {
				st.log.Info("auth: wrong user or password", "site", st.label, "client", rq.ClientIP, "user", user)
			}
			w.Header().Set("WWW-Authenticate", a.Challenge())
			st.errors.Serve(w, r, http.StatusUnauthorized)
			return false
		}
	}
	rq.User, rq.AuthType = user, "Basic"
	return true
}

func tooMany(w http.ResponseWriter, r *http.Request, st *site, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	st.errors.Serve(w, r, http.StatusTooManyRequests)
}

// respond answers a route's respond status: an error status with the
// site's error page, any other with no body.
func (st *site) respond(w http.ResponseWriter, r *http.Request, status int) {
	if status >= 400 {
		st.errors.Serve(w, r, status)
		return
	}
	w.WriteHeader(status)
}

// exists tells try_files whether p is something the site serves: a CGI
// script, an index that is a script, a page, a file, or a folder with an
// index (p ending in "/").
func (st *site) exists(p string) bool {
	for _, c := range st.cgi {
		if c.Match(p) {
			return c.Has(p)
		}
	}
	if c, _ := cgi.Index(st.root, st.index, p, st.cgi); c != nil {
		return true
	}
	return st.pages.Match(p) || st.static.Has(p)
}

// withTarget is r with its path and query changed internally; the
// request-target as sent (REQUEST_URI, the access log) stays.
func withTarget(r *http.Request, path, query string) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath, u.RawQuery = path, "", query
	r2.URL = &u
	return r2
}

// requestScheme is the scheme the client used: this connection's, or the
// X-Forwarded-Proto a trusted proxy or a peer set (the cluster strips the
// header from anyone else before the site sees the request).
func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	if strings.EqualFold(strings.TrimSpace(proto), "https") {
		return "https"
	}
	return "http"
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
