package cluster

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/memberlist"
)

// Options configures a node's membership and request routing. The zero
// value of each field is documented; New resolves the defaults.
// Mode, Policy, Capacity, Margin, Sticky, Retries and ConfigHash may be
// changed later with Retune; the rest is fixed for the node's life.
type Options struct {
	// Name is this node's unique name. Required. Joining a cluster in which
	// a live node already has this name fails with ErrNameTaken.
	Name string
	// Bind is the gossip address (TCP and UDP), host:port. "127.0.0.1:0"
	// lets the OS choose the port. Empty means "0.0.0.0:7946".
	Bind string
	// Advertise is the gossip address peers use, host[:port]; empty means
	// the bind address (memberlist picks a private IP for 0.0.0.0).
	Advertise string
	// Join lists gossip addresses of peers. They are tried in the
	// background with backoff while the node already serves alone; after
	// that, the node re-joins only members it lost (a partition healing)
	// and, about once a minute or two, one address picked at random among
	// every member and these.
	Join []string
	// Secret (16, 24 or 32 bytes) encrypts gossip and is the root of the
	// keys that sign hops, load reports, redirect markers and affinity
	// cookies. Required: memberlist without a key lets anyone join.
	Secret []byte
	// Label separates clusters sharing a network; empty means "shoal".
	Label string
	// PeerURL is how peers reach this node's HTTP, e.g.
	// "http://10.0.0.5:8080". Required.
	PeerURL string
	// PublicURL is how clients reach this node (redirect mode); empty
	// means PeerURL.
	PublicURL string
	// Mode is "proxy" (the default when empty) or "redirect".
	Mode string
	// Policy is "least_loaded" (the default when empty), "round_robin",
	// "ip_hash" or "random".
	Policy string
	// Capacity is the in-flight count at which this node counts as full;
	// 0 means 64.
	Capacity int
	// Margin is how much less loaded (fraction of capacity) a peer must be
	// for least_loaded to send a request there; 0 means 0.1, a negative
	// value means no margin.
	Margin float64
	// Sticky enables the affinity cookie that keeps a client on its node.
	Sticky bool
	// Retries is how many other nodes an idempotent request is tried on
	// after a peer failed; 0 means none.
	Retries int
	// ConfigHash and Version are published for drift checks.
	ConfigHash, Version string
	// Logger receives this package's and memberlist's logs; nil means
	// slog.Default().
	Logger *slog.Logger
	// Observe, when non-nil, is told once per request passing through the
	// Middleware how it was routed.
	Observe func(r *http.Request, rt Route)
	// ClientIP returns the real client address of r (for ip_hash and
	// X-Forwarded-For); nil means the host of r.RemoteAddr.
	ClientIP func(r *http.Request) string
	// TrustedProxy reports whether a connection from ip may set
	// X-Forwarded-*; nil trusts nobody, so those headers are stripped from
	// every request that does not come from a peer.
	TrustedProxy func(ip string) bool
	// ErrorPage writes an error response (502 when no node could serve
	// a request); nil writes a plain-text one.
	ErrorPage func(w http.ResponseWriter, r *http.Request, status int)
	// Timings tunes the package's own clocks; zero fields take defaults.
	Timings Timings
	// Tune, when non-nil, may change the memberlist configuration after
	// New filled it in from DefaultLANConfig (tests use millisecond
	// timings). Delegates, name, addresses, key and label must stay.
	Tune func(*memberlist.Config)
}

// Timings are the package's own clocks. Zero means the default noted.
type Timings struct {
	// LoadInterval is the shortest gap between two load reports; 0 means
	// 100ms. A change is sent at most this late.
	LoadInterval time.Duration
	// Heartbeat is how often the load is re-sent while it does not change;
	// 0 means 1s.
	Heartbeat time.Duration
	// StaleAfter is how long a peer may stay silent before it is treated
	// as unavailable (and shown as suspect); 0 means 3s.
	StaleAfter time.Duration
	// DirectMax is the most live peers to which a load change is sent
	// directly, one packet each; with more, changes travel by gossip
	// broadcast (cheaper, ~300ms instead of ~2ms). 0 means 16; a negative
	// value always broadcasts.
	DirectMax int
	// Unhealthy is how long a peer that failed to answer is skipped at
	// first; it doubles with each further failure up to 16 times; 0 means
	// 2s.
	Unhealthy time.Duration
	// DialTimeout bounds connecting to a peer's HTTP; 0 means 2s.
	DialTimeout time.Duration
	// JoinBackoff is the first wait after a failed join; it doubles up to
	// 30s. 0 means 500ms.
	JoinBackoff time.Duration
	// Rejoin is how often the node looks for members it lost and re-joins
	// them, to heal partitions; a cluster that lost none re-joins only
	// every 6 to 12 Rejoin periods (at least a minute). 0 means 10s.
	Rejoin time.Duration
	// HopValidity is how long a signed hop or redirect marker is accepted
	// (either way, to allow clock skew); 0 means 30s.
	HopValidity time.Duration
	// Forget is how long a dead or departed member is still listed; 0
	// means 5m.
	Forget time.Duration
}

func (t Timings) loadInterval() time.Duration { return orDur(t.LoadInterval, 100*time.Millisecond) }
func (t Timings) heartbeat() time.Duration    { return orDur(t.Heartbeat, time.Second) }
func (t Timings) staleAfter() time.Duration   { return orDur(t.StaleAfter, 3*time.Second) }
func (t Timings) unhealthy() time.Duration    { return orDur(t.Unhealthy, 2*time.Second) }
func (t Timings) dialTimeout() time.Duration  { return orDur(t.DialTimeout, 2*time.Second) }
func (t Timings) joinBackoff() time.Duration  { return orDur(t.JoinBackoff, 500*time.Millisecond) }
func (t Timings) rejoin() time.Duration       { return orDur(t.Rejoin, 10*time.Second) }
func (t Timings) hopValidity() time.Duration  { return orDur(t.HopValidity, 30*time.Second) }
func (t Timings) forget() time.Duration       { return orDur(t.Forget, 5*time.Minute) }

func (t Timings) directMax() int {
	if t.DirectMax == 0 {
		return 16
	}
	return t.DirectMax
}

func orDur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Route says how the Middleware handled one request.
type Route struct {
	Kind    RouteKind
	Peer    string // the node that served or was redirected to; "" when local
	Retries int    // peers that failed before the request was served
	Failed  bool   // no node could serve it: the client got 502
	// FailedPeers names the peers that failed to answer it, in order.
	FailedPeers []string
}

// RouteKind is where a request went.
type RouteKind int

// Route kinds.
const (
	Local      RouteKind = iota // served by this node
	Proxied                     // forwarded to Route.Peer
	Redirected                  // client sent to Route.Peer's public URL
)

func (k RouteKind) String() string {
	switch k {
	case Proxied:
		return "proxy"
	case Redirected:
		return "redirect"
	}
	return "local"
}

func (o *Options) mode() string      { return orStr(o.Mode, "proxy") }
func (o *Options) policy() string    { return orStr(o.Policy, "least_loaded") }
func (o *Options) label() string     { return orStr(o.Label, "shoal") }
func (o *Options) bind() string      { return orStr(o.Bind, "0.0.0.0:7946") }
func (o *Options) publicURL() string { return orStr(o.PublicURL, o.PeerURL) }

func (o *Options) capacity() int {
	if o.Capacity <= 0 {
		return 64
	}
	return o.Capacity
}

func (o *Options) margin() float64 {
	switch {
	case o.Margin < 0:
		return 0
	case o.Margin == 0:
		return 0.1
	}
	return o.Margin
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

func orStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
