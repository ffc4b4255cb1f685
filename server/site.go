package server

import (
	"cmp"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"time"

	"shoal/handlers/books"
	"shoal/handlers/cgi"
	"shoal/handlers/pages"
	"shoal/handlers/route"
	"shoal/handlers/session"
	"shoal/handlers/static"
	"shoal/handlers/upstream"
	"shoal/server/config"
)

// site is one virtual host with its handler chain, built once per config.
type site struct {
	label   string
	log     *slog.Logger
	ids     *requestIDs // the node's, for requests without a trusted ID
	hosts   []string
	trusted []netip.Prefix

	maxBody     int64
	bodyTimeout time.Duration
	sendTimeout time.Duration
	access      *books.AccessLog
	metrics     *books.Metrics

	cluster *clusterRef // routes requests through the cluster when it runs
	balance string      // cluster.balance

	static *static.Handler
	pages  *pages.Handler
	cgi    []*cgi.Handler
	// root and index find an index that is a script (cgi.Index).
	root   string
	index  []string
	errors *books.ErrorPages
	// dynamic wraps the handlers of generated responses (pages, CGI) in
	// compression when the site has compress on.
	dynamic func(http.Handler) http.Handler
	headers http.Header // the site's extra response headers
	// routes are the site's [[site.route]] rules (nil: none; routes.go).
	routes *route.Table
	// upstreams are the node's [[upstream]]s, answering with this site's
	// error pages, by name.
	upstreams map[string]http.Handler
	// relays answer the upstreams' plain requests on the HTTP/1.1 fast
	// path (relay.go).
	relays map[string]*upstreamRelay
	// hopRelay answers on the HTTP/1.1 fast path what the cluster sends
	// to a peer (hoprelay.go).
	hopRelay *hopRelay
	// chain is everything inside the outer bookkeeping of ServeHTTP.
	chain http.Handler
	// closers release what the site opened (files, roots).
	closers []io.Closer
}

// siteDeps is what a site needs from the node besides its own config.
type siteDeps struct {
	server    config.Server
	access    *books.AccessLog
	logger    *slog.Logger
	configAbs string
	metrics   *books.Metrics
	nodeName  string
	node      pages.NodeInfo
	sessions  *session.Store
	compress  *static.Compressor
	cluster   *clusterRef
	balance   string
	routes    *routeState
	ids       *requestIDs
	upstreams *upstreamSet
	// hasUpstream reports whether an [[upstream]] of that name exists.
	hasUpstream func(string) bool

	// configFiles are the files the config names that hold secrets
	// (private keys, htpasswd, session keys): never served from a root.
	configFiles []string
}

func buildSite(sc config.Site, d siteDeps) (*site, error) {
	st := &site{
		label:       siteLabel(sc),
		log:         d.logger,
		ids:         d.ids,
		hosts:       sc.Hosts,
		trusted:     d.server.Trusted(),
		maxBody:     int64(d.server.MaxBodyBytes),
		bodyTimeout: d.server.BodyTimeout,
		sendTimeout: d.server.SendTimeout,
		access:      d.access,
		metrics:     d.metrics,
		errors:      &books.ErrorPages{Root: sc.Root, Pages: sc.StatusPages()},
		cluster:     d.cluster,
		balance:     d.balance,
		root:        sc.Root,
		index:       sc.Index,
	}
	if len(sc.Routes) > 0 {
		tbl, err := compileRoutes(sc, st.label, d.routes, d.hasUpstream)
		if err != nil {
			return nil, err
		}
		st.routes = tbl
	}
	st.dynamic = func(h http.Handler) http.Handler { return h }
	if sc.Compress && d.compress != nil {
		st.dynamic = d.compress.Middleware
	}
	// A script's local redirect goes through the routes again.
	dispatch := http.HandlerFunc(st.internalRedirect)
	for _, cc := range sc.CGI {
		st.cgi = append(st.cgi, &cgi.Handler{
			Root:           sc.Root,
			Prefix:         cc.Prefix,
			Dir:            cc.Dir,
			Ext:            cc.Ext,
			Interpreters:   cc.Interpreters,
			Program:        cc.Program,
			Timeout:        cc.Timeout,
			MaxTime:        cc.MaxTime,
			FollowSymlinks: sc.FollowSymlinks,
			MaxConcurrent:  cc.MaxConcurrent,
			QueueTimeout:   cc.QueueTimeout,
			Env:            cc.Env,
			PassEnv:        cc.PassEnv,
			MaxBodyBytes:   cmp.Or(int64(cc.MaxBodyBytes), st.maxBody),
			NodeName:       d.nodeName,
			Sessions:       d.sessions,
			Errors:         st.errors,
			Dispatch:       dispatch,
			Logger:         d.logger,
			Events:         d.metrics,
		})
	}
	st.pages = &pages.Handler{Root: sc.Root, Templates: sc.Templates, Index: sc.Index, Dev: sc.Dev,
		Sessions: d.sessions, Node: d.node, Errors: st.errors, Logger: d.logger}
	if err := st.pages.Reload(); err != nil {
		return nil, fmt.Errorf("site %s: %w", st.label, err)
	}
	st.upstreams = d.upstreams.forSite(upstream.Site{Errors: st.errors, Sessions: d.sessions, Dispatch: dispatch,
		MaxBodyBytes: st.maxBody, User: checkedUser})
	st.headers = canonicalHeaders(sc.Headers)
	st.relays = relaysFor(st)
	st.hopRelay = &hopRelay{site: st}
	files, err := static.New(static.Options{
		Root:           sc.Root,
		Index:          sc.Index,
		Browse:         sc.Browse,
		Compress:       sc.Compress,
		FollowSymlinks: sc.FollowSymlinks,
		Errors:         st.errors,
		Hidden:         st.hiddenFiles(append([]string{d.configAbs}, d.configFiles...)),
		Logger:         d.logger,
		Headers:        st.headers,
	})
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", st.label, err)
	}
	st.static = files
	st.closers = append(st.closers, files)
	// CGI internal redirects (dispatch above) stay on this node; requests
	// from outside go through the cluster.
	st.chain = http.HandlerFunc(st.balanced)
	return st, nil
}

func siteLabel(sc config.Site) string {
	if len(sc.Hosts) > 0 {
		return sc.Hosts[0]
	}
	return "default"
}

// dispatch picks the handler for a request inside the site: CGI, a
// template page, or a static file.
func (st *site) dispatch(w http.ResponseWriter, r *http.Request) {
	h, _ := st.route(r)
	h.ServeHTTP(w, r)
}

// balanced is dispatch through the cluster: generated responses (and
// static files with balance = "all") may be served by a peer.
func (st *site) balanced(w http.ResponseWriter, r *http.Request) {
	h, dynamic := st.route(r)
	if st.cluster == nil {
		h.ServeHTTP(w, r)
		return
	}
	st.cluster.serve(w, r, h, st.label, st.balance, dynamic)
}

// route names the handler for r and whether its response is generated
// (CGI or a page: the work the cluster balances by default).
func (st *site) route(r *http.Request) (http.Handler, bool) {
	p := r.URL.Path
	for _, c := range st.cgi {
		if c.Match(p) {
			return st.dynamic(c), true
		}
	}
	if c, script := cgi.Index(st.root, st.index, p, st.cgi); c != nil {
		return st.dynamic(indexScript(c, script)), true
	}
	if st.pages.Match(p) {
		return st.dynamic(st.pages), true
	}
	return st.static, false
}

// indexScript runs the script an index names for a folder's URL, as
// Apache's DirectoryIndex does: SCRIPT_NAME is the script's path while
// REQUEST_URI stays what the client asked for.
func indexScript(c *cgi.Handler, script string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path, u.RawPath = script, ""
		r2.URL = &u
		c.ServeHTTP(w, r2)
	})
}

// bodyLimit is the request body cap for path: the CGI mapping's own when
// one runs it (it refuses and logs an oversize body itself), else the
// server's.
func (st *site) bodyLimit(path string) (max int64, cgiOwns bool) {
	for _, c := range st.cgi {
		if c.Match(path) {
			return c.MaxBodyBytes, true
		}
	}
	return st.maxBody, false
}

// fast returns the prepared response for a plain GET or HEAD of path when
// route would send it to the static handler and that has it in memory;
// nil sends the request down the full chain.
func (st *site) fast(path string, req static.FastRequest) *static.FastFile {
	if st.generated(path) {
		return nil
	}
	return st.static.Fast(path, req)
}

// generated reports whether route sends a request for path to CGI or a
// page (the work balance = "dynamic" covers), for a fast path's plain
// path.
func (st *site) generated(path string) bool {
	for _, c := range st.cgi {
		if c.Match(path) {
			return true
		}
	}
	if c, _ := cgi.Index(st.root, st.index, path, st.cgi); c != nil {
		return true
	}
	return st.pages.Match(path)
}

func (st *site) close() {
	for _, c := range st.closers {
		c.Close()
	}
}

// canonicalHeaders turns the site's headers config into the header map
// the Recorder adds to every response that does not set them itself.
func canonicalHeaders(headers map[string]string) http.Header {
	if len(headers) == 0 {
		return nil
	}
	h := make(http.Header, len(headers))
	for k, v := range headers {
		h[http.CanonicalHeaderKey(k)] = []string{v}
	}
	return h
}

// hiddenFiles names what the static handler must never serve although it
// may lie under root: the named files (the config, its keys and htpasswd
// files) and every CGI script.
func (st *site) hiddenFiles(named []string) func(abs string) bool {
	var files []string
	for _, f := range named {
		if f == "" {
			continue
		}
		files = append(files, f)
		if real, err := filepath.EvalSymlinks(f); err == nil {
			files = append(files, real)
		}
	}
	return func(abs string) bool {
		for _, f := range files {
			if abs == f {
				return true
			}
		}
		for _, c := range st.cgi {
			if c.IsScript(abs) {
				return true
			}
		}
		return false
	}
}

// configFiles lists the secret files cfg names, absolute: a key or an
// htpasswd file kept under a site's root must not be served with it.
func configFiles(cfg *config.Config, configAbs string) []string {
	files := []string{cfg.TLS.Key}
	if kf := cfg.Session.KeyFile; filepath.IsAbs(kf) {
		files = append(files, kf)
	} else if kf != "" && configAbs != "" {
		files = append(files, filepath.Join(filepath.Dir(configAbs), kf))
	}
	for _, sc := range cfg.Sites {
		files = append(files, sc.Key)
		for _, r := range sc.Routes {
			files = append(files, r.Auth)
		}
	}
	return files
}

// cgiCounts sums running and queued scripts over every site.
func (rt *runtime) cgiCounts() (running, queued int) {
	for _, st := range rt.sites {
		for _, c := range st.cgi {
			running += c.Running()
			queued += c.Queued()
		}
	}
	return running, queued
}

// nodeInfo is what templates see as .Node: this node's name and the
// cluster as it sees it (itself alone when the cluster is off).
type nodeInfo struct{ n *Node }

func (ni nodeInfo) Name() string { return ni.n.state.Load().name }

func (ni nodeInfo) Members() []pages.NodeMember {
	ms := ni.n.clusterView().Members()
	out := make([]pages.NodeMember, len(ms))
	for i, m := range ms {
		out[i] = pages.NodeMember{Name: m.Name, State: m.State, Load: m.Load,
			Inflight: m.Inflight, Capacity: m.Capacity, Draining: m.Draining}
	}
	return out
}
