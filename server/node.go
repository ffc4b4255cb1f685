package server

import (
	"context"
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
	"shoal/handlers"
)

// Loader produces the node's config: the file read again plus the
// command-line overrides. The node calls it at start and on every reload.
type Loader func() (*Config, error)

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

	registry *prometheus.Registry
	metrics  *handlers.Metrics

	// mu guards listeners and reloading.
	mu        sync.Mutex
	listeners map[string]*listener
}

// runtime is everything built from one config; a reload builds a new one
// and swaps it in whole, so a request sees one config from start to end.
type runtime struct {
	cfg    *Config
	name   string // this node's name in the cluster and on the status page
	hash   string // configHash(cfg)
	sites  []*site
	vhosts *vhosts
	access *handlers.AccessLog
}

// listener is one http.Server on one address.
type listener struct {
	role string // "http", "https", "admin"
	addr string
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
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
	n.metrics = handlers.NewMetrics(n.registry)
	if o.ProcessMetrics {
		if _, err := cluster.InstallGoMetrics(n.registry); err != nil {
			return nil, err
		}
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	if n.level == nil {
		n.level = new(slog.LevelVar)
	}
	cfg, err := n.loadValid()
	if err != nil {
		return nil, err
	}
	rt, err := n.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	n.state.Store(rt)
	n.metrics.WatchCluster(n.clusterView())
	return n, nil
}

func (n *Node) loadValid() (*Config, error) {
	cfg, err := n.load()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Config returns the config in force.
func (n *Node) Config() *Config { return n.state.Load().cfg }

// build makes the sites of cfg; prev, when set, lends its access log when
// the target is unchanged, so lines from old and new never interleave.
func (n *Node) build(cfg *Config, prev *runtime) (*runtime, error) {
	n.level.Set(parseLevel(cfg.Log.Level))
	rt := &runtime{cfg: cfg, name: nodeName(cfg), hash: configHash(cfg)}
	if prev != nil && prev.cfg.Log.Access == cfg.Log.Access && prev.cfg.Log.Format == cfg.Log.Format {
		rt.access = prev.access
	} else if access, err := openAccessLog(cfg.Log); err != nil {
		return nil, err
	} else {
		rt.access = access
	}
	configAbs := ""
	if cfg.Path != "" {
		configAbs, _ = filepath.Abs(cfg.Path)
	}
	deps := siteDeps{server: cfg.Server, access: rt.access, logger: n.log, configAbs: configAbs, metrics: n.metrics}
	for _, sc := range cfg.Sites {
		st, err := buildSite(sc, deps)
		if err != nil {
			rt.close(prev)
			return nil, err
		}
		rt.sites = append(rt.sites, st)
	}
	rt.vhosts = newVhosts(rt.sites)
	return rt, nil
}

// close releases the runtime's resources except those shared with next.
func (rt *runtime) close(next *runtime) {
	for _, st := range rt.sites {
		st.close()
	}
	if rt.access != nil && (next == nil || next.access != rt.access) {
		rt.access.Close()
	}
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

func openAccessLog(lc LogConfig) (*handlers.AccessLog, error) {
	var out io.Writer
	switch lc.Access {
	case "off", "":
		return nil, nil
	case "stdout":
		out = nopCloser{os.Stdout}
	case "stderr":
		out = nopCloser{os.Stderr}
	default:
		f, err := os.OpenFile(lc.Access, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("log.access: %w", err)
		}
		out = f
	}
	return handlers.NewAccessLog(out, lc.Format), nil
}

// nopCloser keeps the access log from closing stdout.
type nopCloser struct{ io.Writer }

// ServeHTTP routes a request to its site by Host.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.state.Load().vhosts.match(r.Host).ServeHTTP(w, r)
}

// Run opens the listeners and serves until ctx is cancelled, then shuts
// down gracefully: draining, drain_delay, finish in-flight requests within
// shutdown_grace. It returns nil after a clean stop.
func (n *Node) Run(ctx context.Context) error {
	cfg := n.Config()
	if err := n.openListeners(cfg); err != nil {
		n.closeListeners()
		return err
	}
	n.log.Info("shoal serving", "listeners", n.Addrs(), "sites", len(cfg.Sites))
	close(n.ready)
	<-ctx.Done()
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
		out[role] = l.ln.Addr().String()
	}
	return out
}

func (n *Node) openListeners(cfg *Config) error {
	for _, spec := range []struct {
		role, addr string
		h          http.Handler
	}{
		{"http", cfg.Server.HTTP, n},
		{"admin", cfg.Server.Admin, n.adminHandler().Handler()},
	} {
		if spec.addr == "" {
			continue
		}
		l, err := n.listen(spec.role, spec.addr, spec.h, cfg.Server)
		if err != nil {
			return err
		}
		n.mu.Lock()
		n.listeners[spec.role] = l
		n.mu.Unlock()
	}
	return nil
}

func (n *Node) listen(role, addr string, h http.Handler, sc ServerConfig) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", role, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: sc.ReadHeaderTimeout,
		IdleTimeout:       sc.IdleTimeout,
		MaxHeaderBytes:    int(sc.MaxHeaderBytes),
		ErrorLog:          log.New(newServerErrorLog(n.log, role), "", 0),
	}
	l := &listener{role: role, addr: addr, srv: srv, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("listener stopped", "role", role, "addr", addr, "err", err)
		}
	}()
	return l, nil
}

func (n *Node) closeListeners() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.listeners {
		l.srv.Close()
	}
}

// Draining reports whether the node is shutting down.
func (n *Node) Draining() bool { return n.draining.Load() }

func (n *Node) shutdown() error {
	cfg := n.Config()
	n.draining.Store(true)
	n.log.Info("shoal stopping: draining", "drain_delay", cfg.Server.DrainDelay, "grace", cfg.Server.ShutdownGrace)
	time.Sleep(cfg.Server.DrainDelay) // peers and outside balancers must see "draining" before we go
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace)
	defer cancel()
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
			if err := l.srv.Shutdown(ctx); err != nil {
				n.log.Warn("shutdown grace over: closing open connections", "role", l.role, "err", err)
				l.srv.Close()
			}
			<-l.done
		}()
	}
	wg.Wait()
	n.state.Load().close(nil)
	n.log.Info("shoal stopped")
	return nil
}

// Reload reads the config again and, when it is valid, swaps the sites in
// without touching listeners or open connections. An invalid config keeps
// the old one and is returned.
func (n *Node) Reload() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	cfg, err := n.loadValid()
	if err != nil {
		n.log.Error("reload refused: keeping the running config", "err", err)
		return err
	}
	old := n.state.Load()
	rt, err := n.build(cfg, old)
	if err != nil {
		n.log.Error("reload refused: keeping the running config", "err", err)
		return err
	}
	n.state.Store(rt)
	// Requests that started on the old config finish on it.
	time.AfterFunc(cfg.Server.ShutdownGrace+time.Second, func() { old.close(rt) })
	n.log.Info("config reloaded", "sites", len(cfg.Sites))
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
