package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"shoal/cluster"
	"shoal/handlers/books"
	"shoal/handlers/session"
	"shoal/handlers/static"
	"shoal/internal/h2"
	"shoal/internal/http1"
	"shoal/server/config"
)

// Loader produces the node's config: the file read again plus the
// command-line overrides. The node calls it at start and on every reload.
type Loader func() (*config.Config, error)

// Node is one running shoal: listeners, sites, and their life cycle.
type Node struct {
	load    Loader
	log     *slog.Logger
	level   *slog.LevelVar
	version string

	state    atomic.Pointer[runtime]
	draining atomic.Bool
	ready    chan struct{}
	started  time.Time

	registry   *prometheus.Registry
	cl         clusterRef         // the cluster once Run started it (server/cluster.go)
	certs      *certManager       // nil without an https listener
	conns      *http1.ConnLimiter // open connections per client address
	http3      *http3Listener
	altSvc     atomic.Pointer[string] // Alt-Svc value once HTTP/3 runs
	h2fields   atomic.Pointer[h2Fields]
	h1fields   atomic.Pointer[httpsFields]
	h2Answered atomic.Int64 // responses the HTTP/2 fast path sent
	metrics    *books.Metrics
	compress   *static.Compressor
	routes     *routeState // rate buckets and the auth guard, kept across reloads
	ids        *requestIDs

	admin   http.Handler
	running atomic.Bool

	// reloadMu makes reloads one at a time.
	reloadMu sync.Mutex
	// stopped: Shutdown retired the last runtime; reloads are refused.
	stopped atomic.Bool
	// retiring counts what reloads leave running: retired runtimes not
	// yet closed and listeners still shutting down. Shutdown waits for it.
	retiring sync.WaitGroup
	// mu guards listeners.
	mu        sync.Mutex
	listeners map[string]*listener
}

// runtime is everything built from one config; a reload builds a new one
// and swaps it in whole, so a request sees one config from start to end.
type runtime struct {
	cfg *config.Config
	// redirect is the http listener's redirect_http handler (nil: off),
	// set once the https port is bound.
	redirect atomic.Pointer[http.Handler]
	name     string // this node's name in the cluster and on the status page
	hash     string // configHash(cfg)
	sites    []*site
	vhosts   *vhosts
	access   *books.AccessLog
	// accessRef is access with the other runtimes that share it.
	accessRef *sharedLog
	// runtimeRefs closes the runtime after its last request (retire.go).
	runtimeRefs
	// upstreams are the [[upstream]]s, closed with the runtime.
	upstreams *upstreamSet
}

// Options for New.
type Options struct {
	// Version is reported by the admin API and in Server headers.
	Version string
	// ProcessMetrics installs memberlist's go-metrics sink into the
	// node's registry. go-metrics has one global sink per process, so only
	// the binary sets it, never tests that run several nodes.
	ProcessMetrics bool
	// Logger is the error log; its level follows log.level through Level.
	Logger *slog.Logger
	Level  *slog.LevelVar
}

// New loads and validates the config and builds the sites; it opens no
// listener yet (Run does).
func New(load Loader, o Options) (*Node, error) {
	n := &Node{load: load, log: o.Logger, level: o.Level, version: o.Version,
		listeners: map[string]*listener{}, ready: make(chan struct{}), started: time.Now()}
	n.registry = prometheus.NewRegistry()
	n.metrics = books.NewMetrics(n.registry)
	n.compress = &static.Compressor{}
	n.routes = newRouteState()
	n.ids = newRequestIDs()
	if o.ProcessMetrics {
		if _, err := cluster.InstallGoMetrics(n.registry); err != nil {
			return nil, err
		}
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.conns = http1.NewConnLimiter(n.log)
	n.conns.Exempt = n.capExempt
	if n.level == nil {
		n.level = new(slog.LevelVar)
	}
	cfg, err := n.loadValid()
	if err != nil {
		return nil, err
	}
	if err := n.loadCerts(cfg); err != nil {
		return nil, err
	}
	rt, err := n.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	n.state.Store(rt)
	n.metrics.WatchCluster(n.clusterView())
	n.metrics.ObserveCGI(
		func() int { r, _ := n.state.Load().cgiCounts(); return r },
		func() int { _, q := n.state.Load().cgiCounts(); return q })
	n.admin = n.adminHandler().Handler()
	return n, nil
}

func (n *Node) loadValid() (*config.Config, error) {
	return LoadValid(n.load)
}

// LoadValid runs load and validates what it gives, returning every problem
// of both steps at once (a config with an unknown key is still validated,
// so `shoal check` shows all its errors in one go).
func LoadValid(load Loader) (*config.Config, error) {
	cfg, err := load()
	if cfg == nil {
		return nil, err
	}
	var all config.Errors
	if err != nil {
		if !errors.As(err, &all) {
			return nil, err
		}
	}
	if verr := cfg.Validate(); verr != nil {
		var verrs config.Errors
		if !errors.As(verr, &verrs) {
			return nil, verr
		}
		all = append(all, verrs...)
	}
	if len(all) > 0 {
		all.Sort()
		return nil, all
	}
	return cfg, nil
}

// Config returns the config in force.
func (n *Node) Config() *config.Config { return n.state.Load().cfg }

// build makes the sites of cfg; prev, when set, lends its access log when
// the target is unchanged, so lines from old and new never interleave.
func (n *Node) build(cfg *config.Config, prev *runtime) (*runtime, error) {
	n.level.Set(parseLevel(cfg.Log.Level))
	rt := &runtime{cfg: cfg, name: nodeName(cfg), hash: configHash(cfg)}
	if prev != nil && cfg.Server.Name == prev.cfg.Server.Name {
		rt.name = prev.name // a node's name never changes under a reload it did not ask for
	}
	if prev != nil && prev.cfg.Log.Access == cfg.Log.Access && prev.cfg.Log.Format == cfg.Log.Format {
		rt.access, rt.accessRef = prev.access, prev.accessRef.share()
	} else if access, err := openAccessLog(cfg.Log, n.metrics.AccessLogDropped); err != nil {
		return nil, err
	} else {
		rt.access, rt.accessRef = access, newSharedLog(access)
	}
	configAbs := ""
	if cfg.Path != "" {
		configAbs, _ = filepath.Abs(cfg.Path)
	}
	sessions, err := sessionStore(cfg, configAbs, n.log)
	if err != nil {
		rt.close()
		return nil, err
	}
	if rt.upstreams, err = buildUpstreams(cfg.Upstreams, prev.upstreamSet(), rt.name, n.log, n.upstreamHooks()); err != nil {
		rt.close()
		return nil, err
	}
	deps := siteDeps{server: cfg.Server, access: rt.access, logger: n.log, configAbs: configAbs,
		configFiles: configFiles(cfg, configAbs),
		metrics:     n.metrics, nodeName: rt.name, compress: n.compress, cluster: &n.cl, balance: cfg.Cluster.Balance,
		sessions: sessions, node: nodeInfo{n}, routes: n.routes, ids: n.ids, hasUpstream: cfg.HasUpstream,
		upstreams: rt.upstreams}
	for _, sc := range cfg.Sites {
		st, err := buildSite(sc, deps)
		if err != nil {
			rt.close()
			return nil, err
		}
		rt.sites = append(rt.sites, st)
	}
	rt.vhosts = newVhosts(rt.sites)
	return rt, nil
}

// close releases the runtime's resources; its access log closes with the
// last runtime that shares it.
func (rt *runtime) close() {
	for _, st := range rt.sites {
		st.close()
	}
	rt.upstreams.close()
	rt.accessRef.drop()
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// openAccessLog opens log.access; onDrop counts the lines it drops when
// its destination falls behind.
func openAccessLog(lc config.Log, onDrop func()) (*books.AccessLog, error) {
	o := books.AccessLogOptions{Format: lc.Format, OnDrop: onDrop}
	var out io.Writer
	switch lc.Access {
	case "off", "":
		return nil, nil
	case "stdout":
		out = nopCloser{os.Stdout}
	case "stderr":
		out = nopCloser{os.Stderr}
	default:
		// Reopen (SIGUSR1) opens the path again: after logrotate moved
		// the file, lines go to a new one under the configured name.
		o.Open = func() (io.Writer, error) {
			f, err := os.OpenFile(lc.Access, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				return nil, fmt.Errorf("log.access: %w", err)
			}
			return f, nil
		}
		f, err := o.Open()
		if err != nil {
			return nil, err
		}
		out = f
	}
	return books.OpenAccessLog(out, o), nil
}

// nopCloser keeps the access log from closing stdout.
type nopCloser struct{ io.Writer }

// ServeHTTP routes a request to its site by Host, holding the runtime
// until the request is done, so a reload closes it only after.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := n.acquire()
	defer rt.release()
	rt.vhosts.match(r.Host).ServeHTTP(w, r)
}

// Run opens the listeners and serves until ctx is cancelled, then shuts
// down gracefully: draining, drain_delay, finish in-flight requests within
// shutdown_grace. It returns nil after a clean stop.
func (n *Node) Run(ctx context.Context) error {
	cfg := n.Config()
	if err := n.syncListeners(cfg); err != nil {
		n.stopListeners(context.Background())
		return err
	}
	if err := n.startHTTP3(cfg); err != nil {
		n.stopListeners(context.Background())
		return err
	}
	rt := n.state.Load()
	rt.setRedirect(n.redirectFor(cfg))
	c, err := startCluster(cfg, clusterParams{Name: rt.name, ConfigHash: rt.hash, Version: n.version, Metrics: n.metrics,
		Addrs: n.Addrs(), Logger: n.log, ErrorPage: n.errorPage})
	if err != nil {
		n.stopListeners(context.Background())
		return err
	}
	if c != nil {
		n.cl.peer.Store(c.PeerServerConfig()) // before peers learn the site hashes and proxy here
	}
	watchSites(c, n.Config)    // before routing starts: peers learn the site hashes (sitehash.go)
	go n.exchangeRates(ctx, c) // rates hold across the cluster (ratesync.go)
	go n.syncUpstreams(ctx, c) // upstream health and load too (upstreamsync.go)
	n.cl.p.Store(c)
	n.startACME(cfg)
	n.running.Store(true)
	n.log.Info(servingMessage(n.Addrs()), "sites", len(cfg.Sites))
	close(n.ready)
	select {
	case <-ctx.Done():
	case err := <-n.cl.fatal():
		n.shutdown()
		return err
	}
	return n.shutdown()
}

// Ready is closed once every listener is open (for tests and embedders).
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Addrs lists the bound address of each listener by role ("http", ...),
// with the port the OS chose when the config said :0.
func (n *Node) Addrs() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]string{}
	for role, l := range n.listeners {
		out[role] = l.acc.ln.Addr().String()
	}
	return out
}

// listener is one listening socket and the http.Server serving it now.
type listener struct {
	role, addr string
	acc        *acceptor
	srv        *serving
}

// serving is one http.Server attached to an acceptor, behind the
// HTTP/1.1 fast path on plain-HTTP sockets.
type serving struct {
	srv    *http.Server
	front  *http1.Front // nil: the http.Server takes the connections itself
	limits http1.Limits
	done   chan struct{}
}

// shutdown stops the fast path first, so every connection it hands over
// reaches the http.Server before that one stops, then the http.Server.
func (sv *serving) shutdown(ctx context.Context) error {
	if sv.front != nil {
		if err := sv.front.Shutdown(ctx); err != nil {
			return err
		}
	}
	return sv.srv.Shutdown(ctx)
}

// close closes every connection at once.
func (sv *serving) close() {
	if sv.front != nil {
		sv.front.Close()
	}
	sv.srv.Close()
}

func limitsOf(sc config.Server) http1.Limits {
	return http1.Limits{ReadHeader: sc.ReadHeaderTimeout, Idle: sc.IdleTimeout, Send: sc.SendTimeout,
		MaxHeader: int64(sc.MaxHeaderBytes), MinSendRate: int64(sc.MinSendRate), MaxConnsPerIP: sc.MaxConnsPerIP}
}

type listenerSpec struct {
	role, addr string
	h          http.Handler
	tls        *tls.Config // nil: plain HTTP
	fast       bool        // answer cached static files on the fast path
}

func (n *Node) listenerSpecs(cfg *config.Config) []listenerSpec {
	specs := []listenerSpec{
		{role: "http", addr: cfg.Server.HTTP, h: n.cl.guard(http.HandlerFunc(n.serveHTTP)), fast: true},
		{role: "admin", addr: cfg.Server.Admin, h: n.admin},
	}
	if n.certs != nil {
		specs = append(specs, listenerSpec{role: "https", addr: cfg.Server.HTTPS,
			h: n.cl.guard(http.HandlerFunc(n.serveHTTPS)), tls: n.cl.peerTLS(n.certs.TLSConfig()), fast: true})
	} else {
		specs = append(specs, listenerSpec{role: "https"}) // closes one a reload turned off
	}
	return specs
}

// syncListeners makes the open listeners match cfg: new addresses are
// opened first (a failure changes nothing), then servers with changed
// limits are replaced on their socket, and what is no longer wanted is
// shut down gracefully in the background.
func (n *Node) syncListeners(cfg *config.Config) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	specs := n.listenerSpecs(cfg)
	opened := map[string]*acceptor{}
	for _, sp := range specs {
		old := n.listeners[sp.role]
		if sp.addr == "" || (old != nil && old.addr == sp.addr) {
			continue
		}
		ln, err := net.Listen("tcp", sp.addr)
		if err != nil {
			for _, acc := range opened {
				acc.close()
			}
			return fmt.Errorf("%s listener: %w", sp.role, err)
		}
		opened[sp.role] = newAcceptor(ln)
	}
	lim := limitsOf(cfg.Server)
	grace := cfg.Server.ShutdownGrace
	for _, sp := range specs {
		old := n.listeners[sp.role]
		switch acc, isNew := opened[sp.role]; {
		case isNew:
			n.listeners[sp.role] = &listener{role: sp.role, addr: sp.addr, acc: acc, srv: n.serve(sp, acc, lim)}
			if old != nil {
				n.retiring.Go(func() { n.retire(old.srv, old.acc, grace) })
			}
		case sp.addr == "" && old != nil:
			delete(n.listeners, sp.role)
			n.retiring.Go(func() { n.retire(old.srv, old.acc, grace) })
		case old != nil && old.srv.limits != lim:
			prev := old.srv
			old.srv = n.serve(sp, old.acc, lim)
			n.retiring.Go(func() { n.retire(prev, nil, grace) })
		}
	}
	return nil
}

// serve starts an http.Server for sp on acc.
func (n *Node) serve(sp listenerSpec, acc *acceptor, lim http1.Limits) *serving {
	srv := &http.Server{
		Handler:           sp.h,
		ReadHeaderTimeout: lim.ReadHeader,
		IdleTimeout:       lim.Idle,
		// The first write deadline of every request (send_timeout); the
		// site's Recorder moves it forward while a long response flows.
		WriteTimeout:   lim.Send,
		MaxHeaderBytes: int(lim.MaxHeader),
		ErrorLog:       log.New(newServerErrorLog(n.log, sp.role), "", 0),
		ConnContext:    peerConnContext,
	}
	sv := &serving{srv: srv, limits: lim, done: make(chan struct{})}
	ln := acc.listener()
	var rules *http1.Rules
	if sp.role != "admin" {
		ln = n.conns.Listener(ln, lim)
		rules = http1.NewRules(lim.MaxHeader, n.log)
		srv.Handler = rules.Handler(srv.Handler)
	}
	if sp.fast && sp.tls == nil {
		handoff := http1.NewHandoff(acc.ln.Addr())
		sv.front = http1.NewFront(ln, handoff, lim, n.log, n.fastRoute)
		sv.front.Rules = rules
		sv.front.Peer = n.cl.peerConn
		go sv.front.AcceptLoop()
		ln = handoff
	}
	if sp.tls != nil {
		h2s := &h2.Server{MaxHeaderBytes: int(lim.MaxHeader), IdleTimeout: lim.Idle, WriteTimeout: lim.Send, Logger: n.log}
		if sp.fast {
			h2s.Fast = n.h2Fast
		}
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){"h2": h2s.ServeTLS}
		srv.RegisterOnShutdown(h2s.Shutdown)
		// The manager's config itself, not a clone: certificates and
		// ticket keys follow its reloads. TLSConfig stays nil on the
		// server, which still turns HTTP/2 on for "h2" connections.
		if rules != nil {
			var route http1.Route
			if sp.fast {
				route = n.fastRouteTLS
			}
			ln, sv.front = http1.FrontTLS(srv, ln, sp.tls, rules, lim, route, n.log)
		} else {
			ln = tls.NewListener(ln, sp.tls)
		}
	}
	go func() {
		defer close(sv.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("listener stopped", "role", sp.role, "addr", sp.addr, "err", err)
		}
	}()
	return sv
}

// retire shuts a server down, letting its requests finish within grace,
// and then closes its socket when it has one of its own.
func (n *Node) retire(sv *serving, acc *acceptor, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if acc != nil {
		acc.close() // stop taking connections at once
	}
	if err := sv.shutdown(ctx); err != nil {
		n.log.Warn("shutdown grace over: closing open connections", "err", err)
		sv.close()
	}
	<-sv.done
}

// stopListeners shuts every listener down, waiting for them.
func (n *Node) stopListeners(ctx context.Context) {
	n.mu.Lock()
	ls := make([]*listener, 0, len(n.listeners))
	for _, l := range n.listeners {
		ls = append(ls, l)
	}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.acc.close()
			if err := l.srv.shutdown(ctx); err != nil {
				n.log.Warn("shutdown grace over: closing open connections", "role", l.role, "err", err)
				l.srv.close()
			}
			<-l.srv.done
		}()
	}
	wg.Wait()
}

// Draining reports whether the node is shutting down.
func (n *Node) Draining() bool { return n.draining.Load() }

func (n *Node) shutdown() error {
	cfg := n.Config()
	n.draining.Store(true)
	n.log.Info("shoal stopping: draining", "drain_delay", cfg.Server.DrainDelay, "grace", cfg.Server.ShutdownGrace)
	if c := n.cl.get(); c != nil {
		stopCluster(c, cfg.Server.DrainDelay, n.log) // draining at once, leave after drain_delay
	} else {
		time.Sleep(cfg.Server.DrainDelay) // outside balancers must see "draining" before we go
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace)
	defer cancel()
	n.stopListeners(ctx)
	n.stopTLS(ctx)
	if c := n.cl.get(); c != nil {
		c.Shutdown()
	}
	n.reloadMu.Lock()
	if !n.stopped.Swap(true) {
		n.retireRuntime(n.state.Load())
	}
	n.reloadMu.Unlock()
	// Listeners are closed: what still runs is a handler finishing after
	// its connection was cut, or a reload's old listener.
	if !n.waitRetired(retireWait) {
		n.log.Warn("requests still running after shutdown: closing without them", "waited", retireWait)
	}
	n.log.Info("shoal stopped")
	return nil
}

// Reload reads the config again and, when it is valid, swaps the sites in
// without touching listeners or open connections. An invalid config keeps
// the old one and is returned.
func (n *Node) Reload() error {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	if n.stopped.Load() {
		return errStopped
	}
	cfg, err := n.loadValid()
	if err != nil {
		n.log.Error("reload refused: keeping the running config", "err", err)
		return err
	}
	old := n.state.Load()
	if err := n.loadCerts(cfg); err != nil {
		n.log.Error("reload refused: keeping the running config", "err", err)
		return err
	}
	rt, err := n.build(cfg, old)
	if err != nil {
		n.log.Error("reload refused: keeping the running config", "err", err)
		return err
	}
	if n.running.Load() && !n.draining.Load() {
		if err := n.syncListeners(cfg); err != nil {
			rt.close()
			n.log.Error("reload refused: keeping the running config", "err", err)
			return err
		}
	}
	if n.running.Load() {
		rt.setRedirect(n.redirectFor(cfg))
		if cfg.TLS.HTTP3 != old.cfg.TLS.HTTP3 || cfg.TLS.MinVersion != old.cfg.TLS.MinVersion {
			n.log.Warn("tls.http3 and tls.min_version take effect at the next restart")
		}
		n.cl.retune(cfg, old.cfg, n.log)
	}
	n.state.Store(rt)
	n.cl.refreshSites() // the site hashes follow the new config
	// Requests that started on the old config finish on it; the last one
	// closes it.
	n.retireRuntime(old)
	n.log.Info("config reloaded", "sites", len(cfg.Sites))
	return nil
}

// errStopped: a reload after Shutdown retired the last runtime.
var errStopped = errors.New("node stopped: reload refused")

// retireWait bounds how long Shutdown waits, after the listeners are
// closed, for handlers still running on a cut connection.
const retireWait = 5 * time.Second

// ReopenLogs opens the access log file again, as `nginx -s reopen` does:
// after logrotate renamed it, later lines go to a new file under the
// configured name (SIGUSR1). Other destinations are left as they are.
func (n *Node) ReopenLogs() error {
	n.reloadMu.Lock() // not while a reload swaps the log
	defer n.reloadMu.Unlock()
	if access := n.state.Load().access; access != nil {
		return access.Reopen()
	}
	return nil
}

// serverErrorLog sends net/http's own log lines to slog, with TLS
// handshake errors limited to a few a second (a flood would drown the log).
type serverErrorLog struct {
	log  *slog.Logger
	role string

	// mu guards windowStart and inWindow.
	mu          sync.Mutex
	windowStart time.Time
	inWindow    int
	suppressed  int
}

func newServerErrorLog(l *slog.Logger, role string) *serverErrorLog {
	return &serverErrorLog{log: l, role: role}
}

const handshakeLogsPerSecond = 5

func (s *serverErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") {
		s.mu.Lock()
		now := time.Now()
		if now.Sub(s.windowStart) > time.Second {
			if s.suppressed > 0 {
				s.log.Warn("tls handshake errors not logged", "role", s.role, "count", s.suppressed)
			}
			s.windowStart, s.inWindow, s.suppressed = now, 0, 0
		}
		s.inWindow++
		drop := s.inWindow > handshakeLogsPerSecond
		if drop {
			s.suppressed++
		}
		s.mu.Unlock()
		if drop {
			return len(p), nil
		}
		s.log.Debug(msg, "role", s.role)
		return len(p), nil
	}
	s.log.Warn(msg, "role", s.role)
	return len(p), nil
}

// errorPage answers status with the error page of the request's site.
func (n *Node) errorPage(w http.ResponseWriter, r *http.Request, status int) {
	n.state.Load().vhosts.match(r.Host).errors.Serve(w, r, status)
}

// sessionStore makes the session store from [session]: its keys, else keys
// derived from the cluster secret (when the cluster is on or a secret is
// set), else the key file beside the config.
func sessionStore(cfg *config.Config, configAbs string, log *slog.Logger) (*session.Store, error) {
	var secret []byte
	if cfg.Cluster.Enabled || cfg.Cluster.Secret != "" {
		s, err := clusterSecret(cfg)
		if err != nil {
			return nil, err
		}
		secret = s
	}
	keyFile := cfg.Session.KeyFile
	if keyFile != "" && !filepath.IsAbs(keyFile) && configAbs != "" {
		keyFile = filepath.Join(filepath.Dir(configAbs), keyFile)
	}
	keys, err := session.Keys(cfg.Session.Keys, secret, keyFile)
	if err != nil {
		return nil, err
	}
	sameSite := map[string]http.SameSite{"lax": http.SameSiteLaxMode, "strict": http.SameSiteStrictMode,
		"none": http.SameSiteNoneMode}[strings.ToLower(cfg.Session.SameSite)]
	if sameSite == http.SameSiteNoneMode && cfg.Server.HTTPS == "" {
		// Browsers drop a SameSite=None cookie without Secure, which only
		// HTTPS (here, or at a trusted proxy in front) sets.
		log.Warn("session.same_site = \"none\": browsers keep the cookie only over HTTPS; this node has no https listener, so only a TLS proxy in front can make it work")
	}
	return session.NewStore(session.Options{Cookie: cfg.Session.Cookie, Keys: keys,
		MaxAge: cfg.Session.MaxAge, SameSite: sameSite, Logger: log})
}
