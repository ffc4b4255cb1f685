package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"

	"shoal/cluster"
	"shoal/handlers/admin"
	"shoal/handlers/books"
	"shoal/internal/http1"
	"shoal/server/config"
)

// clusterRef holds the node's cluster once Run has started it. Sites are
// built before the listeners open (and rebuilt on reload), so they reach
// the cluster through this reference: while it is empty (cluster off, or
// not started yet) every request is served locally.
type clusterRef struct {
	p atomic.Pointer[cluster.Cluster]
	// peer is the cluster's PeerServerConfig, stored as soon as the
	// cluster exists: peers may proxy here once they learn this node's
	// site hashes, before p is stored, and a peer's TLS connection read
	// as plain HTTP meanwhile hung until its peer_timeout.
	peer atomic.Pointer[tls.Config]
}

// get returns the running cluster or nil.
func (cr *clusterRef) get() *cluster.Cluster { return cr.p.Load() }

// fatal delivers the error after which the node cannot stay in the
// cluster (its name belongs to an older live node); never fires while no
// cluster runs.
func (cr *clusterRef) fatal() <-chan error {
	if c := cr.get(); c != nil {
		return c.Fatal()
	}
	return nil
}

// guard is the outermost wrapper of the HTTP and HTTPS listeners: it
// strips cluster headers (and X-Forwarded-* from untrusted clients) and,
// for a request a peer proxied here, restores the client's address before
// anything works out the client IP.
func (cr *clusterRef) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := cr.get(); c != nil {
			r = c.Inbound(r)
		}
		next.ServeHTTP(w, r)
	})
}

// peerConn takes a connection a plain-HTTP listener accepted whose first
// byte, already read into pending, opens a TLS handshake: with peer TLS on,
// it is a peer's (or a stranger's, refused at the handshake), and the
// result is the TLS server side of it; nil when peer TLS is off, so the
// connection goes on as plain HTTP (net/http answers such bytes 400).
func (cr *clusterRef) peerConn(c net.Conn, pending []byte) *tls.Conn {
	cfg := cr.peer.Load()
	if cfg == nil || len(pending) == 0 || pending[0] != http1.TLSHandshakeRecord {
		return nil
	}
	return tls.Server(c, cfg)
}

// peerConnContext marks the requests of a peer's TLS connection that the
// fast path handed to net/http (which sees no *tls.Conn then), so the
// cluster still knows them for a peer's.
func peerConnContext(ctx context.Context, c net.Conn) context.Context {
	if http1.IsPeerConn(c) {
		return cluster.ContextFromPeer(ctx)
	}
	return ctx
}

// peerTLS wraps a client-facing TLS configuration so that a peer's
// ClientHello (one offering the peer ALPN) gets the peer configuration:
// a peer_url with https reaches the node over peer TLS on its HTTPS
// listener. Everybody else gets base itself, so its certificates and
// session ticket keys still follow reloads.
func (cr *clusterRef) peerTLS(base *tls.Config) *tls.Config {
	return &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if cfg := cr.peer.Load(); cfg != nil && cluster.IsPeerHello(h) {
			return cfg, nil
		}
		return base, nil
	}}
}

// serve routes one request of a site: served here by local, proxied or
// redirected. dynamic says whether the site serves r by a template or CGI
// (what balance = "dynamic" covers).
func (cr *clusterRef) serve(w http.ResponseWriter, r *http.Request, local http.Handler, site, balance string, dynamic bool) {
	c := cr.get()
	if c == nil {
		local.ServeHTTP(w, r)
		return
	}
	covered := balanced(balance, dynamic)
	if covered {
		r = cluster.WithSite(r, site) // only to peers with this node's hash of the site (sitehash.go)
	}
	c.Serve(w, r, local, covered)
}

// balanced applies cluster.balance to one request.
func balanced(balance string, dynamic bool) bool {
	switch balance {
	case "all":
		return true
	case "none":
		return false
	}
	return dynamic
}

// clusterParams is what startCluster needs from the node besides the
// config.
type clusterParams struct {
	Name       string            // the node name (nodeName(cfg))
	ConfigHash string            // configHash(cfg)
	Version    string            // shoal's version
	Addrs      map[string]string // bound listener addresses by role
	Logger     *slog.Logger
	// Metrics counts retried requests; nil counts nothing.
	Metrics *books.Metrics
	// ErrorPage writes the 502 when no node could serve a request; nil
	// writes plain text.
	ErrorPage func(w http.ResponseWriter, r *http.Request, status int)
}

// startCluster starts gossip and routing for cfg, or returns nil, nil when
// cluster.enabled is false. Call it after the listeners are open: the
// default peer_url comes from the bound HTTP address.
func startCluster(cfg *config.Config, p clusterParams) (*cluster.Cluster, error) {
	if !cfg.Cluster.Enabled {
		return nil, nil
	}
	opts, err := clusterOptions(cfg, p)
	if err != nil {
		return nil, err
	}
	return cluster.New(opts)
}

// stopCluster is the cluster's part of a graceful stop: draining at once
// (peers send no new work), then, after drainDelay, leaving. The caller
// finishes in-flight requests and then calls Shutdown.
func stopCluster(c *cluster.Cluster, drainDelay time.Duration, log *slog.Logger) {
	if c == nil {
		return
	}
	c.SetDraining()
	time.Sleep(drainDelay)
	if err := c.Leave(2 * time.Second); err != nil {
		log.Warn("leaving the cluster", "err", err)
	}
}

func clusterOptions(cfg *config.Config, p clusterParams) (cluster.Options, error) {
	cc := cfg.Cluster
	secret, err := clusterSecret(cfg)
	if err != nil {
		return cluster.Options{}, err
	}
	peerURL := cc.PeerURL
	if peerURL == "" {
		if peerURL, err = defaultPeerURL(cc, p.Addrs); err != nil {
			return cluster.Options{}, err
		}
	}
	tn := clusterTunables(cc, p.ConfigHash)
	trusted := cfg.Server.Trusted()
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	opts := cluster.Options{
		Name:       p.Name,
		Bind:       cc.Gossip,
		Advertise:  cc.Advertise,
		Join:       cc.Join,
		Secret:     secret,
		PeerURL:    peerURL,
		PublicURL:  cc.PublicURL,
		Mode:       tn.Mode,
		Policy:     tn.Policy,
		Capacity:   tn.Capacity,
		Margin:     tn.Margin,
		Sticky:     tn.Sticky,
		Retries:    tn.Retries,
		ConfigHash: tn.ConfigHash,
		Version:    p.Version,
		Logger:     log,
		Observe:    routeObserver(p.Metrics),
		ClientIP:   books.ClientIP,
		TrustedProxy: func(ip string) bool {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return false
			}
			a = a.Unmap()
			for _, pfx := range trusted {
				if pfx.Contains(a) {
					return true
				}
			}
			return false
		},
		ErrorPage: p.ErrorPage,
	}
	opts.PeerTimeout, opts.PeerTLS = cc.PeerTimeout, cc.PeerTLS
	return opts, nil
}

// routeObserver records where the cluster sent a request, for the access
// log and metrics; m may be nil.
func routeObserver(m *books.Metrics) func(*http.Request, cluster.Route) {
	return func(r *http.Request, rt cluster.Route) {
		if m != nil {
			for _, peer := range rt.FailedPeers {
				m.PeerFailed(peer)
			}
			if rt.Retries > 0 && !rt.Failed {
				m.Retried(rt.Peer)
			}
		}
		observeRoute(r, rt)
	}
}

func observeRoute(r *http.Request, rt cluster.Route) {
	switch rt.Kind {
	case cluster.Proxied:
		books.SetKind(r, books.KindProxy)
	case cluster.Redirected:
		books.SetKind(r, books.KindRedirect)
	default:
		return
	}
	books.InfoFrom(r).Peer = rt.Peer
}

// clusterSecret is cluster.secret, else $SHOAL_SECRET, else the file
// .shoal/cluster-secret beside the config, made on first start, so nodes
// started from one folder share it.
func clusterSecret(cfg *config.Config) ([]byte, error) {
	if s := cfg.Cluster.Secret; s != "" {
		return decodeSecret("cluster.secret", s)
	}
	if s := os.Getenv("SHOAL_SECRET"); s != "" {
		return decodeSecret("$SHOAL_SECRET", s)
	}
	return secretFile(secretPath(cfg))
}

func secretPath(cfg *config.Config) string {
	dir := "."
	if cfg.Path != "" {
		dir = filepath.Dir(cfg.Path)
	}
	return filepath.Join(dir, ".shoal", "cluster-secret")
}

func decodeSecret(from, s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || (len(b) != 16 && len(b) != 24 && len(b) != 32) {
		return nil, fmt.Errorf("%s: want base64 of 16, 24 or 32 bytes (make one with `shoal keygen`)", from)
	}
	return b, nil
}

// secretFile reads the secret at path, creating it (0600, in a 0700
// folder) when missing. The file is written whole under a temporary name
// and linked into place, so nodes starting together from one folder never
// read half a key and all end up with the one linked first.
func secretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return decodeSecret(path, string(b))
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".cluster-secret-*")
	if err != nil {
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	defer os.Remove(f.Name())
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(f.Name(), 0o600)
	}
	if werr != nil {
		return nil, fmt.Errorf("cluster secret: %w", werr)
	}
	if err := os.Link(f.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			b, err := os.ReadFile(path) // another node linked first
			if err != nil {
				return nil, fmt.Errorf("cluster secret: %w", err)
			}
			return decodeSecret(path, string(b))
		}
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	return key, nil
}

// defaultPeerURL is the HTTP listener's bound address (the HTTPS one when
// there is no HTTP listener), with the host peers can reach: the advertise
// host, else the listener's own IP, else (listening on all interfaces) the
// gossip bind IP or a private IP, as memberlist picks.
func defaultPeerURL(cc config.Cluster, addrs map[string]string) (string, error) {
	scheme, addr := "http", addrs["http"]
	if addr == "" {
		scheme, addr = "https", addrs["https"]
	}
	if addr == "" {
		return "", errors.New("cluster.peer_url: no http or https listener to derive it from")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("cluster.peer_url: listener address %q: %w", addr, err)
	}
	switch ip := net.ParseIP(host); {
	case cc.Advertise != "":
		host = cc.Advertise
		if h, _, err := net.SplitHostPort(cc.Advertise); err == nil {
			host = h
		}
	case ip == nil || ip.IsUnspecified():
		host = reachableHost(cc.Gossip)
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

func reachableHost(gossip string) string {
	if h, _, err := net.SplitHostPort(gossip); err == nil {
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
			return h
		}
	}
	if ip, err := sockaddr.GetPrivateIP(); err == nil && ip != "" {
		return ip
	}
	return "127.0.0.1"
}

// clusterView shows the cluster on the admin pages: the running
// cluster's members, with this node's own entry from its live counters
// (self), or this node alone while no cluster runs.
type clusterView struct {
	ref  *clusterRef
	self func() admin.Member
}

func (v clusterView) Self() string {
	if c := v.ref.get(); c != nil {
		return c.Self()
	}
	return v.self().Name
}

func (v clusterView) Members() []admin.Member {
	c := v.ref.get()
	if c == nil {
		return []admin.Member{v.self()}
	}
	ms := c.Members()
	out := make([]admin.Member, 0, len(ms))
	for _, m := range ms {
		hm := admin.Member{
			Name:      m.Name,
			State:     m.State,
			Load:      m.Load,
			Inflight:  int(m.Inflight),
			Capacity:  m.Capacity,
			Draining:  m.Draining,
			PeerURL:   m.PeerURL,
			PublicURL: m.PublicURL,
			Config:    m.Config,
			Sites:     m.Sites,
			Drift:     m.Drift,
			Version:   m.Version,
			Started:   m.Started,
		}
		if m.Self {
			own := v.self()
			own.State, own.Draining = m.State, m.Draining || own.Draining
			own.PeerURL, own.PublicURL = m.PeerURL, m.PublicURL
			own.Capacity = m.Capacity
			own.Sites = m.Sites
			hm = own
		}
		out = append(out, hm)
	}
	return out
}

// clusterTunables maps [cluster] to the settings a running cluster can
// change, for the start and for every reload alike.
func clusterTunables(cc config.Cluster, hash string) cluster.Tunables {
	margin := cc.Margin
	if margin == 0 {
		margin = -1 // the config says no margin; the package's zero means its default
	}
	return cluster.Tunables{Mode: cc.Mode, Policy: cc.Policy, Capacity: cc.Capacity, Margin: margin,
		Sticky: cc.Sticky, Retries: cc.Retries, ConfigHash: hash}
}

// retune applies a reloaded config to the running cluster: the routing
// tunables and the published config hash change at once; what only a
// restart can change is named in a warning, so nobody waits for it.
func (cr *clusterRef) retune(cfg, old *config.Config, log *slog.Logger) {
	if keys := restartOnly(cfg, old); len(keys) > 0 {
		log.Warn("cluster settings changed that take effect at the next restart", "keys", keys)
	}
	c := cr.get()
	if c == nil {
		return
	}
	prev := c.Tunables()
	next := clusterTunables(cfg.Cluster, configHash(cfg))
	if err := c.Retune(next); err != nil {
		log.Error("cluster tunables kept as they were", "err", err)
		return
	}
	if changed := tunablesChanged(prev, next); len(changed) > 0 {
		log.Info("cluster retuned", "changed", changed)
	}
}

// restartOnly names the settings a running node cannot change: its
// identity, its gossip, and the addresses it published.
func restartOnly(cfg, old *config.Config) []string {
	a, b := cfg.Cluster, old.Cluster
	var keys []string
	add := func(changed bool, key string) {
		if changed {
			keys = append(keys, key)
		}
	}
	add(a.Enabled != b.Enabled, "cluster.enabled")
	if !a.Enabled && !b.Enabled {
		return keys
	}
	add(cfg.Server.Name != old.Server.Name, "server.name")
	add(a.Gossip != b.Gossip, "cluster.gossip")
	add(a.Advertise != b.Advertise, "cluster.advertise")
	add(!slices.Equal(a.Join, b.Join), "cluster.join")
	add(a.Secret != b.Secret, "cluster.secret")
	add(a.PeerURL != b.PeerURL, "cluster.peer_url")
	add(a.PublicURL != b.PublicURL, "cluster.public_url")
	add(a.PeerTimeout != b.PeerTimeout, "cluster.peer_timeout")
	add(a.PeerTLS != b.PeerTLS, "cluster.peer_tls")
	// A peer_url derived from a listener that moved would send peers to
	// the old address.
	add(a.PeerURL == "" && (cfg.Server.HTTP != old.Server.HTTP || cfg.Server.HTTPS != old.Server.HTTPS),
		"cluster.peer_url (derived from server.http/https)")
	// Sites follow a new list at once; the cluster's own check of
	// X-Forwarded-* keeps the list it started with.
	add(!slices.Equal(cfg.Server.TrustedProxies, old.Server.TrustedProxies), "server.trusted_proxies (for cluster routing)")
	return keys
}

// tunablesChanged lists the tunables that differ, as key=old->new, for
// the log.
func tunablesChanged(prev, next cluster.Tunables) []string {
	var out []string
	add := func(key string, a, b any) {
		if a != b {
			out = append(out, fmt.Sprintf("%s=%v->%v", key, a, b))
		}
	}
	add("mode", prev.Mode, next.Mode)
	add("policy", prev.Policy, next.Policy)
	add("capacity", prev.Capacity, next.Capacity)
	add("margin", max(prev.Margin, 0), max(next.Margin, 0)) // as the config says it: no margin is 0
	add("sticky", prev.Sticky, next.Sticky)
	add("retries", prev.Retries, next.Retries)
	add("config", prev.ConfigHash, next.ConfigHash)
	return out
}
