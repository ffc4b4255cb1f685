package server

import (
	"cmp"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"shoal/handlers"
)

// site is one virtual host with its handler chain, built once per config.
type site struct {
	label   string
	hosts   []string
	trusted []netip.Prefix

	maxBody     int64
	bodyTimeout time.Duration
	sendTimeout time.Duration
	access      *handlers.AccessLog
	metrics     *handlers.Metrics

	cluster *clusterRef // routes requests through the cluster when it runs
	balance string      // cluster.balance

	static *handlers.Static
	pages  *handlers.Pages
	cgi    []*handlers.CGI
	// root and index find an index that is a script (handlers.CGIIndex).
	root   string
	index  []string
	errors *handlers.ErrorPages
	// dynamic wraps the handlers of generated responses (pages, CGI) in
	// compression when the site has compress on.
	dynamic func(http.Handler) http.Handler
	headers http.Header // the site's extra response headers
	// chain is everything inside the outer bookkeeping of ServeHTTP.
	chain http.Handler
	// closers release what the site opened (files, roots).
	closers []io.Closer
}

// siteDeps is what a site needs from the node besides its own config.
type siteDeps struct {
	server    ServerConfig
	access    *handlers.AccessLog
	logger    *slog.Logger
	configAbs string
	metrics   *handlers.Metrics
	nodeName  string
	node      handlers.NodeInfo
	sessions  *handlers.SessionStore
	compress  *handlers.Compressor
	cluster   *clusterRef
	balance   string
}

func buildSite(sc SiteConfig, d siteDeps) (*site, error) {
	st := &site{
		label:       siteLabel(sc),
		hosts:       sc.Hosts,
		trusted:     d.server.Trusted(),
		maxBody:     int64(d.server.MaxBodyBytes),
		bodyTimeout: d.server.BodyTimeout,
		sendTimeout: d.server.SendTimeout,
		access:      d.access,
		metrics:     d.metrics,
		errors:      &handlers.ErrorPages{Root: sc.Root, Pages: sc.StatusPages()},
		cluster:     d.cluster,
		balance:     d.balance,
		root:        sc.Root,
		index:       sc.Index,
	}
	st.dynamic = func(h http.Handler) http.Handler { return h }
	if sc.Compress && d.compress != nil {
		st.dynamic = d.compress.Middleware
	}
	dispatch := http.HandlerFunc(st.dispatch)
	for _, cc := range sc.CGI {
		st.cgi = append(st.cgi, &handlers.CGI{
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
	st.pages = &handlers.Pages{Root: sc.Root, Templates: sc.Templates, Index: sc.Index, Dev: sc.Dev,
		Sessions: d.sessions, Node: d.node, Errors: st.errors, Logger: d.logger}
	if err := st.pages.Reload(); err != nil {
		return nil, fmt.Errorf("site %s: %w", st.label, err)
	}
	st.headers = canonicalHeaders(sc.Headers)
	static, err := handlers.NewStatic(handlers.StaticOptions{
		Root:           sc.Root,
		Index:          sc.Index,
		Browse:         sc.Browse,
		Compress:       sc.Compress,
		FollowSymlinks: sc.FollowSymlinks,
		Errors:         st.errors,
		Hidden:         st.hiddenFiles(d.configAbs),
		Logger:         d.logger,
		Headers:        st.headers,
	})
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", st.label, err)
	}
	st.static = static
	st.closers = append(st.closers, static)
	// CGI internal redirects (dispatch above) stay on this node; requests
	// from outside go through the cluster.
	st.chain = http.HandlerFunc(st.balanced)
	return st, nil
}

func siteLabel(sc SiteConfig) string {
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
	st.cluster.serve(w, r, h, st.balance, dynamic)
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
	if c, script := handlers.CGIIndex(st.root, st.index, p, st.cgi); c != nil {
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
func indexScript(c *handlers.CGI, script string) http.Handler {
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
// route would send it to the static handler and that has it in memory,
// else whether route would send it to a template page; neither sends the
// request down the full chain.
func (st *site) fast(path string, req handlers.FastRequest) (file *handlers.FastFile, page bool) {
	for _, c := range st.cgi {
		if c.Match(path) {
			return nil, false
		}
	}
	if c, _ := handlers.CGIIndex(st.root, st.index, path, st.cgi); c != nil {
		return nil, false
	}
	if st.pages.Match(path) {
		return nil, true
	}
	return st.static.Fast(path, req), false
}

// logFast writes the access log line of a request a fast path answered,
// through the same formatter as every other request: an HTTP/2 one when
// hdr is given, else HTTP/1.1 with the header lines of h.
func (st *site) logFast(remote string, h *requestHead, hdr http.Header, started time.Time, status int, bytes int64) {
	proto, major, minor := "HTTP/2.0", 2, 0
	if hdr == nil {
		proto, major, minor = "HTTP/1.1", 1, 1
		hdr = http.Header{}
	}
	for rest := h.lines; len(rest) > 0; {
		line, more, _ := strings.Cut(string(rest), "\r\n")
		rest = rest[len(rest)-len(more):]
		if line == "" {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		hdr.Add(name, strings.Trim(value, " \t"))
	}
	path, query, _ := strings.Cut(h.target, "?")
	method := http.MethodGet
	if h.head {
		method = http.MethodHead
	}
	r := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: query}, RequestURI: h.target,
		Proto: proto, ProtoMajor: major, ProtoMinor: minor, Header: hdr, Host: h.host, RemoteAddr: remote}
	r, info := handlers.Begin(r, st.label, st.trusted)
	info.Handler = handlers.KindStatic
	st.access.Log(r, &handlers.Recorder{Status: status, Bytes: bytes, Started: started})
}

// ServeHTTP is the outer bookkeeping every request of the site passes:
// client address, body limits, access log; then the chain.
func (st *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, info := handlers.Begin(r, st.label, st.trusted)
	rec := handlers.NewRecorder(w, st.sendTimeout)
	rec.Defaults = st.headers
	span := st.metrics.Start(st.label)
	defer func() {
		if rec.Status == 0 {
			if p := recover(); p != nil {
				rec.Status = http.StatusInternalServerError
				defer panic(p) // after the books, let net/http handle the panic as before
			}
		}
		span.End(info, rec.StatusOrOK(), rec.Bytes)
		if st.access != nil {
			st.access.Log(r, rec)
		}
	}()
	if r.Body != nil && r.Body != http.NoBody {
		rc := http.NewResponseController(w)
		if st.bodyTimeout > 0 {
			// Also bounds the body net/http drains itself when the handler
			// read none of it: a trickled body never pins the connection.
			_ = rc.SetReadDeadline(time.Now().Add(st.bodyTimeout))
		}
		maxBody, cgiOwns := st.bodyLimit(r.URL.Path)
		if r.ContentLength > maxBody && !cgiOwns {
			// Refused before a byte is read, also for Expect: 100-continue.
			// net/http drains a small rest (so the client reads the 413
			// instead of a reset) and closes on a large one.
			st.errors.Serve(rec, r, http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = &bodyReader{
			ReadCloser: http.MaxBytesReader(rec, r.Body, maxBody),
			rc:         rc,
			timeout:    st.bodyTimeout,
		}
	}
	st.chain.ServeHTTP(rec, r)
}

// bodyReader gives each read of a request body its own deadline
// (body_timeout: the longest wait between two reads), so a trickled body
// is cut off while a slow but steady upload is not.
type bodyReader struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.timeout > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.timeout > 0 {
		// The whole body is in: net/http now watches the connection for
		// the client leaving, which a stale deadline would cut. After a
		// timeout the deadline stays, so net/http's own drain of the rest
		// cannot wait forever either.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
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
// may lie under root: the config file and every CGI script.
func (st *site) hiddenFiles(configAbs string) func(abs string) bool {
	var files []string
	if configAbs != "" {
		files = append(files, configAbs)
		if real, err := filepath.EvalSymlinks(configAbs); err == nil {
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

func (ni nodeInfo) Members() []handlers.NodeMember {
	ms := ni.n.clusterView().Members()
	out := make([]handlers.NodeMember, len(ms))
	for i, m := range ms {
		out[i] = handlers.NodeMember{Name: m.Name, State: m.State, Load: m.Load,
			Inflight: m.Inflight, Capacity: m.Capacity, Draining: m.Draining}
	}
	return out
}
