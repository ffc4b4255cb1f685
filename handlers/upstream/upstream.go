package upstream

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"shoal/handlers/books"
	"shoal/handlers/session"
)

// Options is one [[upstream]]; the zero value of each field has the
// meaning its comment gives, so the literal is the whole API.
type Options struct {
	// Name is the upstream's name, as routes and /api/upstreams give it.
	Name string
	// Targets are the addresses (see ParseTarget). At least one.
	Targets []string
	// Policy picks a target: least_loaded ("" too), round_robin, ip_hash,
	// random or first.
	Policy string
	// Health is the path checked with a GET every HealthInterval; 2xx and
	// 3xx are healthy. "": no active checks, failures alone count.
	Health string
	// HealthInterval is the time between checks. Zero: 5s.
	HealthInterval time.Duration
	// FailTimeout is how long a target that refused or timed out is
	// skipped. Zero: 10s.
	FailTimeout time.Duration
	// ConnectTimeout bounds a connect (and a TLS handshake). Zero: 5s.
	ConnectTimeout time.Duration
	// Timeout bounds the wait for the response header once the request
	// is sent; then 504. Zero: 60s.
	Timeout time.Duration
	// Retries is how many other targets an idempotent request is tried on
	// when a connection fails before any response. Zero: none.
	Retries int
	// StripPrefix is removed from the path (at a segment boundary) before
	// forwarding. "": none.
	StripPrefix string
	// Headers are set on the request toward the target; a name written
	// "-Name" removes that header instead.
	Headers map[string]string
	// Root, Index, Split and Env map a request to a script on a FastCGI
	// target (fastcgi.ParamsOptions).
	Root, Index, Split string
	Env                map[string]string
	// NodeName is passed to FastCGI applications as SHOAL_NODE.
	NodeName string
	// TLS configures connections to https:// targets. Nil: system roots.
	TLS *tls.Config
	// MaxIdlePerTarget is how many idle keep-alive connections are kept
	// per target. Zero: 512 (Go's default of 2 makes most requests under
	// load open a connection).
	MaxIdlePerTarget int
	// FastCGIMaxConns bounds the connections to one FastCGI target
	// (match php-fpm's pm.max_children). Zero: 16.
	FastCGIMaxConns int
	// Previous is the Upstream this one replaces on a reload: what it knew
	// of the targets both have (skips, check verdicts, failure counts,
	// other nodes' in-flight) carries over. Nil: a fresh start.
	Previous *Upstream
	// RequestID returns the request's ID, sent as X-Request-ID. Nil, or
	// "": the client's X-Request-ID passes as sent.
	RequestID func(r *http.Request) string
	// OnMarkDown, when set, is told each time this node finds a target
	// down (passively or by a check) and skips it until the time given, so
	// the cluster can tell every node. MarkDown does not call it.
	OnMarkDown func(target string, until time.Time)
	// OnMarkUp, when set, is told when this node's check finds a target
	// healthy that was skipped (here or by another node's finding), so
	// the cluster can tell every node. MarkUp does not call it.
	OnMarkUp func(target string)
	// Prober, when set, says whether this node runs the active checks of
	// a target now; in a cluster one node checks each target and tells
	// the others. Nil: this node checks every target.
	Prober func(target string) bool
	// Logger gets failures. Nil: slog.Default().
	Logger *slog.Logger
}

func (o *Options) healthInterval() time.Duration { return cmp.Or(o.HealthInterval, 5*time.Second) }
func (o *Options) failTimeout() time.Duration    { return cmp.Or(o.FailTimeout, 10*time.Second) }
func (o *Options) connectTimeout() time.Duration { return cmp.Or(o.ConnectTimeout, 5*time.Second) }
func (o *Options) timeout() time.Duration        { return cmp.Or(o.Timeout, 60*time.Second) }
func (o *Options) maxIdle() int                  { return cmp.Or(o.MaxIdlePerTarget, 512) }

// Upstream is one running [[upstream]]: its targets, their pools and its
// health checker. Serve it per site with Handler; Close it when the
// config it came from is replaced.
type Upstream struct {
	opts    Options
	targets []*target
	byName  map[string]*target
	policy  policy
	log     *slog.Logger
	// base serves with generic error pages (ServeHTTP).
	base    *Handler
	buffers bufferPool
	// via is this Upstream's token in the Via header of what it sends: a
	// request that comes back with it has looped (a target pointing at
	// this server), and would loop until descriptors ran out.
	via string
	// pruned (unix nanoseconds) is when the pools were last rid of their
	// idle connections past the idle timeout (prune).
	pruned atomic.Int64

	// ctx ends on Close: the health checks stop, a check under way too.
	ctx       context.Context
	cancel    context.CancelFunc
	checker   sync.WaitGroup
	closeOnce sync.Once
}

// New builds an Upstream and starts its health checks (with Health set).
func New(o Options) (*Upstream, error) {
	if len(o.Targets) == 0 {
		return nil, fmt.Errorf("upstream %s: no targets", o.Name)
	}
	pol, err := newPolicy(o.Policy)
	if err != nil {
		return nil, err
	}
	u := &Upstream{opts: o, policy: pol, byName: map[string]*target{}, buffers: newBufferPool(),
		log: cmp.Or(o.Logger, slog.Default()).With("upstream", o.Name), via: viaToken(o)}
	for _, raw := range o.Targets {
		e, err := ParseTarget(raw)
		if err != nil {
			u.closeTargets()
			return nil, fmt.Errorf("upstream %s: %w", o.Name, err)
		}
		t := newTarget(e)
		if e.FastCGI {
			t.fcgi = u.newFastCGI(t)
		} else {
			t.http = u.newHTTP(t)
		}
		u.targets = append(u.targets, t)
		u.byName[raw] = t
	}
	u.inherit(o.Previous)
	u.opts.Previous = nil // not kept alive by its successor
	u.ctx, u.cancel = context.WithCancel(context.Background())
	u.base = u.Handler(Site{})
	if o.Health != "" {
		u.checker.Add(1)
		go u.checkLoop()
	}
	return u, nil
}

// viaToken names this server's upstream in Via: random, so that only a
// request this process sent out is taken for a loop (an empty token
// matched every Via, and a peer's or a CDN's request got 508); kept
// across a reload so a loop under way is still seen.
func viaToken(o Options) string {
	if o.Previous != nil && o.Previous.via != "" {
		return o.Previous.via
	}
	b := make([]byte, 8)
	rand.Read(b)
	return "1.1 shoal-" + hex.EncodeToString(b)
}

// Name is the upstream's name.
func (u *Upstream) Name() string { return u.opts.Name }

// ServeHTTP proxies r with generic error pages; a site serves through
// Handler so its own error pages answer.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.base.ServeHTTP(w, r) }

// Close stops the health checks and closes idle connections; requests
// under way finish. Safe to call more than once.
func (u *Upstream) Close() error {
	u.closeOnce.Do(func() {
		u.cancel()
		u.checker.Wait()
		u.closeTargets()
	})
	return nil
}

func (u *Upstream) closeTargets() {
	for _, t := range u.targets {
		if t.http != nil {
			t.http.transport.CloseIdleConnections()
			t.http.pool.Close()
		}
		if t.fcgi != nil {
			t.fcgi.client.Close()
		}
	}
}

// MarkDown skips target until the given time, as when another node found
// it down. It reports whether the upstream has that target.
func (u *Upstream) MarkDown(target string, until time.Time) bool {
	t, ok := u.byName[target]
	if ok {
		t.skipUntil(until)
	}
	return ok
}

// MarkUp takes target back at once, as when another node's check found
// it healthy. It reports whether the upstream has that target.
func (u *Upstream) MarkUp(target string) bool {
	t, ok := u.byName[target]
	if ok {
		t.downUntil.Store(0)
		t.unhealthy.Store(false)
	}
	return ok
}

// inherit takes over what prev knew of the targets both have.
func (u *Upstream) inherit(prev *Upstream) {
	if prev == nil {
		return
	}
	for _, t := range u.targets {
		p, ok := prev.byName[t.Raw]
		if !ok {
			continue
		}
		t.downUntil.Store(p.downUntil.Load())
		t.unhealthy.Store(p.unhealthy.Load())
		t.failures.Store(p.failures.Load())
		t.remote.Store(p.remote.Load())
	}
}

// SetRemoteInflight records n, the requests other nodes have in flight to
// target, which least_loaded adds to this node's own.
func (u *Upstream) SetRemoteInflight(target string, n int64) bool {
	t, ok := u.byName[target]
	if ok {
		t.remote.Store(n)
	}
	return ok
}

// Status is one upstream in /api/upstreams.
type Status struct {
	Name    string         `json:"name"`
	Targets []TargetStatus `json:"targets"`
}

// TargetStatus is one target in /api/upstreams.
type TargetStatus struct {
	URL             string `json:"url"`
	Healthy         bool   `json:"healthy"`
	Inflight        int64  `json:"inflight"`
	ClusterInflight int64  `json:"cluster_inflight"`
	Failures        int64  `json:"failures"`
}

// Snapshot reports each target's health as this node sees it and its
// counters.
func (u *Upstream) Snapshot() Status {
	now := time.Now().UnixNano()
	s := Status{Name: u.opts.Name, Targets: make([]TargetStatus, len(u.targets))}
	for i, t := range u.targets {
		s.Targets[i] = TargetStatus{URL: t.Raw, Healthy: t.available(now), Inflight: t.inflight.Load(),
			ClusterInflight: t.load(), Failures: t.failures.Load()}
	}
	return s
}

// markFailed counts a failure of t and skips it for fail_timeout; the
// log says so once per outage, not once per request or check.
func (u *Upstream) markFailed(t *target, err error) {
	t.failures.Add(1)
	now := time.Now()
	until := now.Add(u.opts.failTimeout())
	lvl := slog.LevelDebug
	if t.available(now.UnixNano()) {
		lvl = slog.LevelWarn
	}
	t.skipUntil(until)
	u.log.Log(context.Background(), lvl, "upstream: target failed; skipped", "target", t.Raw, "for", u.opts.failTimeout(), "error", err)
	if u.opts.OnMarkDown != nil {
		u.opts.OnMarkDown(t.Raw, until)
	}
}

// pick selects among the available targets not tried yet; nil: none.
func (u *Upstream) pick(client string, tried []*target, now int64) *target {
	u.prune(now)
	if len(u.targets) == 1 {
		// Every policy picks the one target; the candidates' slice
		// would escape through the policy's interface.
		if t := u.targets[0]; t.available(now) && !contains(tried, t) {
			return t
		}
		return nil
	}
	var buf [16]*target
	c := buf[:0]
	for _, t := range u.targets {
		if t.available(now) && !contains(tried, t) {
			c = append(c, t)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return u.policy.Select(c, client)
}

// prune closes, at most once per idle timeout, the idle connections
// past it in every target's pool: a target the policy no longer picks
// (first, once the first is back) would keep them until a reload.
func (u *Upstream) prune(now int64) {
	last := u.pruned.Load()
	if now-last < int64(idleTimeout) || !u.pruned.CompareAndSwap(last, now) {
		return
	}
	for _, t := range u.targets {
		if t.http != nil {
			t.http.pool.Prune()
		}
	}
}

func contains(ts []*target, t *target) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// errNoTarget: every target is down or was tried; the client gets 502.
var errNoTarget = errors.New("upstream: no target available")

// Site is what a site lends the upstream to answer in its name; the zero
// value answers with generic pages and passes no user or session.
type Site struct {
	// Errors writes 502/504 (and FastCGI's 404/413) with the site's pages.
	Errors *books.ErrorPages
	// Sessions gives FastCGI applications HTTP_SESSION. Nil: none.
	Sessions session.Codec
	// User returns REMOTE_USER and AUTH_TYPE for FastCGI. Nil: none.
	User func(r *http.Request) (user, authType string)
	// Dispatch serves a FastCGI local redirect inside the server. Nil: 302.
	Dispatch http.Handler
	// MaxBodyBytes caps a FastCGI body without a length. Zero: 32 MiB.
	MaxBodyBytes int64
}

func randomToken() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
