package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrNameTaken exists so a second node started with a name that a live
// node already uses fails clearly instead of fighting over the name.
var ErrNameTaken = errors.New("cluster: node name already in use")

// Cluster is this node's membership and the request router built on it.
type Cluster struct {
	opts    Options
	log     *slog.Logger
	keys    hmacKeys
	boot    uint32
	started time.Time
	peerURL *url.URL

	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	// gossipAddr is this node's gossip host:port, as memberlist bound it.
	gossipAddr string
	// apps receive peers' SendToPeers payloads, per channel (exchange.go).
	apps appHandlers

	// Hot counters: read on every request, so atomics, never copied.
	inflight atomic.Int64  // requests this node is serving
	served   atomic.Uint64 // requests served here since start (the books' count of local work)
	draining atomic.Bool   // set once by SetDraining
	seq      atomic.Uint64 // load report sequence of this boot
	alive    atomic.Int32  // live peers, for the broadcast queue and mode choice
	joinFail atomic.Int64  // failed join attempts while alone (tests wait on it)
	joins    atomic.Int64  // join calls made (tests count them)
	kick     chan struct{} // wakes the load sender after a change

	// tune holds the settings Retune may swap; tuneMu orders Retunes.
	tune   atomic.Pointer[tuning]
	tuneMu sync.Mutex

	// peers is the sorted list of live peers, rebuilt under mu on every
	// membership change and read lock-free by the request path.
	peers atomic.Pointer[[]*member]

	drift driftState // this node's site hashes (drift.go)
	mlLog *mlWriter  // memberlist's log lines, rate-limited (logging.go)

	// mu guards members, meta, conflict.
	mu       sync.Mutex
	members  map[string]*member // every peer heard of, live or not, by name
	meta     []byte             // this node's encoded meta
	conflict *conflictNote      // the last report of another node using our name

	proxy     *httputil.ReverseProxy
	transport *http.Transport // ReverseProxy's, for what hop.go does not send
	hops      *hopPools       // the lean path's connections to peers (hop.go)
	peerTLS   *peerTLS        // nil: peers talk plain HTTP
	replay    *replayGuard    // nonces of the hops accepted
	refusals  logLimiter      // refused hops, logged at most once a second
	acme      acmeSync        // certificate locks and key sharing (acmesync.go)

	stop     chan struct{}
	wg       sync.WaitGroup
	fatal    chan error
	shutErr  error
	stopOnce sync.Once
}

type conflictNote struct {
	addr    string
	started int64
}

// New starts gossip on opts.Bind, publishes this node and begins joining
// opts.Join. It returns once the first join attempt has finished or 2s have
// passed; later attempts run in the background.
func New(opts Options) (*Cluster, error) {
	if err := checkOptions(&opts); err != nil {
		return nil, err
	}
	peerURL, err := parseBaseURL("peer_url", opts.PeerURL)
	if err != nil {
		return nil, err
	}
	if _, err := parseBaseURL("public_url", opts.publicURL()); err != nil {
		return nil, err
	}
	c := &Cluster{
		opts:    opts,
		log:     opts.logger().With("component", "cluster"),
		keys:    deriveKeys(opts.Secret),
		boot:    randomBoot(),
		started: time.Now(),
		peerURL: peerURL,
		kick:    make(chan struct{}, 1),
		members: make(map[string]*member),
		stop:    make(chan struct{}),
		fatal:   make(chan error, 1),
	}
	c.tune.Store(newTuning(opts.tunables(), nil))
	c.peers.Store(&[]*member{})
	if c.meta, err = c.selfMeta().encode(); err != nil {
		return nil, err
	}
	if opts.PeerTLS {
		if c.peerTLS, err = newPeerTLS(opts.Secret, opts.Name); err != nil {
			return nil, err
		}
	}
	c.replay = newReplayGuard(opts.Timings.hopValidity())
	c.transport = newTransport(opts.Timings.dialTimeout(), c.peerTLS)
	c.hops = newHopPools(c.transport, opts.peerTimeout())
	c.proxy = c.newProxy()
	cfg, err := c.memberlistConfig()
	if err != nil {
		return nil, err
	}
	c.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(c.alive.Load()) + 1 },
		RetransmitMult: cfg.RetransmitMult,
	}
	c.ml, err = memberlist.Create(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip on %s: %w", opts.bind(), err)
	}
	// Read once, here: LocalNode reads memberlist's own entry without its
	// lock (a race with UpdateNode when draining), and the address never
	// changes.
	n := c.ml.LocalNode()
	c.gossipAddr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	c.log.Info("gossip started", "name", opts.Name, "addr", c.GossipAddr())

	first := make(chan error, 1)
	c.wg.Add(3)
	go c.loadLoop()
	go c.watchLoop()
	go c.joinLoop(first)
	select {
	case err := <-first:
		if err != nil {
			c.Shutdown()
			return nil, err
		}
	case <-time.After(2 * time.Second):
	}
	return c, nil
}

func checkOptions(o *Options) error {
	switch {
	case o.Name == "":
		return errors.New("cluster: node name is empty")
	case len(o.Secret) != 16 && len(o.Secret) != 24 && len(o.Secret) != 32:
		return fmt.Errorf("cluster: secret is %d bytes, want 16, 24 or 32", len(o.Secret))
	case o.PeerURL == "":
		return errors.New("cluster: peer_url is empty")
	}
	return o.tunables().check()
}

// parseBaseURL accepts http(s)://host[:port][/prefix], the form peers and
// clients are sent to.
func parseBaseURL(what, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s %q: %w", what, s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("cluster: %s %q: want http(s)://host[:port]", what, s)
	}
	return u, nil
}

func randomBoot() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return binary.BigEndian.Uint32(b[:])
}

func (c *Cluster) selfMeta() *nodeMeta {
	t := c.tune.Load()
	m := &nodeMeta{
		Draining:  c.draining.Load(),
		Capacity:  t.capacity,
		Started:   c.started.UnixMilli(),
		Boot:      c.boot,
		PeerURL:   c.opts.PeerURL,
		PublicURL: c.opts.publicURL(),
		Version:   c.opts.Version,
		Config:    t.set.ConfigHash,
	}
	m.Sites, m.More = c.publishedSites()
	return m
}

func (c *Cluster) memberlistConfig() (*memberlist.Config, error) {
	cfg := memberlist.DefaultLANConfig()
	cfg.Name = c.opts.Name
	host, port, err := splitHostPort(c.opts.bind(), 7946)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address: %w", err)
	}
	cfg.BindAddr, cfg.BindPort = host, port
	cfg.AdvertisePort = port
	if c.opts.Advertise != "" {
		ahost, aport, err := splitHostPort(c.opts.Advertise, port)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise address: %w", err)
		}
		cfg.AdvertiseAddr, cfg.AdvertisePort = ahost, aport
	}
	cfg.SecretKey = c.opts.Secret
	cfg.Label = c.opts.label()
	d := &delegate{c: c}
	cfg.Delegate, cfg.Events, cfg.Conflict = d, d, d
	// A node restarted on a new address may take its name back as soon as
	// the old one is known dead, instead of being refused for as long as
	// the dead entry lingers.
	cfg.DeadNodeReclaimTime = time.Millisecond
	// Gossip packets here are a few dozen bytes: LZW-compressing each one
	// cost more CPU than it saved (measured: BenchmarkLoadSteady).
	cfg.EnableCompression = false
	cfg.Logger, c.mlLog = newMemberlistLogger(c.opts.logger())
	if c.opts.Tune != nil {
		c.opts.Tune(cfg)
	}
	return cfg, nil
}

// splitHostPort resolves host names (memberlist binds only to IPs).
func splitHostPort(hp string, defPort int) (string, int, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		host, ps = hp, strconv.Itoa(defPort)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return "", 0, fmt.Errorf("resolve %q: %w", host, err)
		}
		host = ips[0].String()
	}
	return host, port, nil
}

// Self returns this node's name.
func (c *Cluster) Self() string { return c.opts.Name }

// GossipAddr returns the address peers gossip with, host:port.
func (c *Cluster) GossipAddr() string { return c.gossipAddr }

// Fatal delivers at most one error after which this node cannot stay in
// the cluster (its name was taken by an older live node). The caller
// should stop.
func (c *Cluster) Fatal() <-chan error { return c.fatal }

func (c *Cluster) fail(err error) {
	select {
	case c.fatal <- err:
	default:
	}
}

// SetDraining tells every peer at once that this node takes no new work;
// requests reaching it are sent to peers where the policy allows.
func (c *Cluster) SetDraining() {
	if c.draining.Swap(true) {
		return
	}
	c.mu.Lock()
	if b, err := c.selfMeta().encode(); err == nil {
		c.meta = b
	}
	c.mu.Unlock()
	c.sendLoad(false)
	if err := c.ml.UpdateNode(time.Second); err != nil {
		c.log.Warn("publish draining", "err", err)
	}
	c.log.Info("draining")
}

// Leave marks this node draining (so peers record "left", not "dead") and
// leaves the cluster, waiting up to timeout for the news to spread.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.SetDraining()
	if err := c.ml.Leave(timeout); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}

// Shutdown stops gossip and the background loops without telling peers
// (they will see the node die); call Leave first for a clean exit. It is
// idempotent.
func (c *Cluster) Shutdown() error {
	c.stopOnce.Do(func() {
		close(c.stop)
		c.shutErr = c.ml.Shutdown()
		c.wg.Wait()
		c.transport.CloseIdleConnections()
		c.hops.close()
	})
	return c.shutErr
}
