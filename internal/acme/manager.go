// Package acme gets and renews TLS certificates from an ACME CA (Let's
// Encrypt, Pebble) for a list of host names, answers the CA's http-01 and
// tls-alpn-01 challenges, and keeps what it gets in a Storage that a
// cluster can replicate. It knows no sites: the server hands it names and
// asks it for certificates during handshakes.
//
// The ordering, renewal (with ARI when the CA offers it) and challenge
// logic is certmagic's; this package sets it up, retries failed orders
// with its own backoff and records which node ordered a certificate.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"go.uber.org/zap"
)

// Challenge types as [acme] challenges spells them.
const (
	HTTP01    = "http-01"
	TLSALPN01 = "tls-alpn-01"
)

// Options configure a Manager; the zero value of each field says what it
// means.
type Options struct {
	CA         string         // ACME directory URL
	Roots      *x509.CertPool // trusted for the CA's HTTPS; nil: the system's
	Email      string         // account contact; "" none
	Challenges []string       // HTTP01 and/or TLSALPN01
	Storage    string         // folder for account, keys, certificates
	// RenewBefore is how long before expiry a certificate is renewed (ARI
	// may ask for earlier; a certificate shorter-lived than it is renewed
	// at half its life, and none later than its last fiftieth, as
	// certmagic does); 0: DefaultRenewBefore.
	RenewBefore time.Duration
	Node        string  // this node's name, recorded as a certificate's orderer
	Cluster     Cluster // nil: this node alone
	Logger      *slog.Logger
	// RetryBase is the first wait after a failed order, doubled up to
	// RetryMax; 0: 30s and 6h.
	RetryBase, RetryMax time.Duration
	// HTTPAddr and TLSAddr are the node's bound http and https listeners:
	// certmagic would start its own challenge listener on the ports it is
	// told, and finds them taken by the node's, which answer instead.
	HTTPAddr, TLSAddr string
}

// Manager orders and renews certificates for the names it is given.
type Manager struct {
	log         *slog.Logger
	zlog        *zap.Logger
	node        string
	renewBefore time.Duration
	cache       *certmagic.Cache
	magic       *certmagic.Config
	issuer      *certmagic.ACMEIssuer
	storage     *Storage
	retry       [2]time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once

	// mu guards managed.
	mu      sync.Mutex
	managed map[string]bool

	// cfgMu guards configs.
	cfgMu   sync.Mutex
	configs map[time.Duration]*certmagic.Config // by certificate lifetime
}

// New sets up the ACME client; it orders nothing until Manage.
func New(o Options) (*Manager, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RenewBefore <= 0 {
		o.RenewBefore = DefaultRenewBefore
	}
	m := &Manager{log: o.Logger, zlog: newZapLogger(o.Logger), node: o.Node, renewBefore: o.RenewBefore,
		storage: NewStorage(o.Storage, o.Cluster), managed: map[string]bool{},
		configs: map[time.Duration]*certmagic.Config{}, retry: [2]time.Duration{o.RetryBase, o.RetryMax}}
	if m.retry[0] <= 0 {
		m.retry[0] = 30 * time.Second
	}
	if m.retry[1] <= 0 {
		m.retry[1] = 6 * time.Hour
	}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   m.configFor,
		RenewCheckInterval: renewCheckInterval(o.RenewBefore),
		Logger:             m.zlog,
	})
	m.magic = m.newConfig(baseRatio)
	m.issuer = certmagic.NewACMEIssuer(m.magic, certmagic.ACMEIssuer{
		CA:                      o.CA,
		Email:                   o.Email,
		Agreed:                  true,
		TrustedRoots:            o.Roots,
		DisableHTTPChallenge:    !slices.Contains(o.Challenges, HTTP01),
		DisableTLSALPNChallenge: !slices.Contains(o.Challenges, TLSALPN01),
		ListenHost:              host(o.HTTPAddr, o.TLSAddr),
		AltHTTPPort:             port(o.HTTPAddr),
		AltTLSALPNPort:          port(o.TLSAddr),
		Logger:                  m.zlog,
	})
	m.magic.Issuers = []certmagic.Issuer{quietIssuer{m.issuer}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// quietIssuer is the ACME issuer without its terminal prompt: certmagic
// asks for an email on stdin when an order is synchronous and none is
// configured, which would stall a node started from a shell.
type quietIssuer struct{ *certmagic.ACMEIssuer }

func (q quietIssuer) PreCheck(ctx context.Context, names []string, _ bool) error {
	return q.ACMEIssuer.PreCheck(ctx, names, false)
}

func host(addrs ...string) string {
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil {
			return h
		}
	}
	return ""
}

func port(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Manage starts getting certificates for names in the background: each
// loaded from storage when there, else ordered (retried with backoff
// until it succeeds), then kept renewed. Names already managed are left
// alone; names dropped from the list keep their certificate until restart.
func (m *Manager) Manage(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range names {
		if m.managed[name] {
			continue
		}
		m.managed[name] = true
		m.wg.Add(1)
		go m.manageOne(name)
	}
}

// manageOne loads or orders one name, retrying failures; certmagic's own
// async retries wait a minute or more before the first retry and keep no
// log of it for us, so each attempt here is synchronous.
func (m *Manager) manageOne(name string) {
	defer m.wg.Done()
	wait := m.retry[0]
	for attempt := 1; ; attempt++ {
		err := m.magic.ManageSync(m.ctx, []string{name})
		if err == nil {
			m.renewIfDue(name)
			return
		}
		if m.ctx.Err() != nil {
			return
		}
		m.log.Error("acme: no certificate yet; serving the fallback certificate", "name", name,
			"attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, m.retry[1])
	}
}

// renewIfDue starts the renewal of a certificate found in storage with
// less than its renewal window left: ManageSync judged it by the base
// Config, which renews only in certmagic's emergency window, and
// certmagic's maintenance, which asks configFor, would come only at its
// next check.
func (m *Manager) renewIfDue(name string) {
	if !m.renewDue(name, time.Now()) {
		return
	}
	if err := m.cache.RenewManagedCertificates(m.ctx); err != nil {
		m.log.Warn("acme: renewal check failed", "name", name, "err", err)
	}
}

// Certificate is the managed certificate for name, or nil when there is
// none yet (the caller serves its fallback).
func (m *Manager) Certificate(name string) *tls.Certificate {
	now := time.Now()
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if c.Leaf != nil && now.Before(c.Leaf.NotAfter) && now.After(c.Leaf.NotBefore) {
			tc := c.Certificate
			return &tc
		}
	}
	return nil
}

// Storage is where the manager keeps its state; a cluster transport
// passes what peers publish to its Receive and answers their fetches from
// its Local.
func (m *Manager) Storage() *Storage { return m.storage }

// IsChallenge reports whether a ClientHello is a CA's tls-alpn-01 probe.
func IsChallenge(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmez.ACMETLS1Protocol
}

// ALPN is the protocol a tls-alpn-01 probe asks for; the https listener's
// NextProtos must list it.
const ALPN = acmez.ACMETLS1Protocol

// ChallengeCertificate answers a tls-alpn-01 probe (IsChallenge) with the
// challenge certificate of an order this node or a peer is running.
func (m *Manager) ChallengeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.magic.GetCertificate(hello)
}

// HandleHTTPChallenge answers a CA's http-01 request for a token of an
// order this node or a peer is running, and reports whether it did.
func (m *Manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return m.issuer.HandleHTTPChallenge(w, r)
}

// Info describes one managed certificate, for /api/certificates.
type Info struct {
	Names     []string
	Issuer    string
	NotAfter  time.Time
	Serial    string
	OrderedBy string // node that ordered it; "" when unknown
}

// Certificates lists the managed certificates this node holds.
func (m *Manager) Certificates() []Info {
	m.mu.Lock()
	names := make([]string, 0, len(m.managed))
	for n := range m.managed {
		names = append(names, n)
	}
	m.mu.Unlock()
	slices.Sort(names)
	var out []Info
	for _, n := range names {
		c := m.Certificate(n)
		if c == nil || c.Leaf == nil {
			continue
		}
		out = append(out, Info{Names: c.Leaf.DNSNames, Issuer: c.Leaf.Issuer.CommonName,
			NotAfter: c.Leaf.NotAfter, Serial: c.Leaf.SerialNumber.Text(16), OrderedBy: m.orderedBy(n)})
	}
	return out
}

// orderRecord is stored beside the certificates (and so replicated) when
// a node obtains one.
type orderRecord struct {
	Node string    `json:"node"`
	At   time.Time `json:"at"`
}

func orderKey(name string) string {
	return "shoal/orders/" + certmagic.StorageKeys.Safe(name) + ".json"
}

func (m *Manager) orderedBy(name string) string {
	b, err := m.storage.Load(m.ctx, orderKey(name))
	if err != nil {
		return ""
	}
	var rec orderRecord
	if json.Unmarshal(b, &rec) != nil {
		return ""
	}
	return rec.Node
}

// onEvent records the orderer of each certificate obtained and logs
// failures (certmagic's own lines go to the debug/info log).
func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	switch event {
	case "cert_obtained":
		m.log.Info("acme: certificate obtained", "name", name, "renewal", data["renewal"], "issuer", data["issuer"])
		b, _ := json.Marshal(orderRecord{Node: m.node, At: time.Now().UTC()})
		if err := m.storage.Store(ctx, orderKey(name), b); err != nil {
			m.log.Warn("acme: cannot record the order", "name", name, "err", err)
		}
	case "cert_failed":
		err, _ := data["error"].(error)
		m.log.Warn("acme: order failed", "name", name, "renewal", data["renewal"], "err", err)
	}
	return nil
}

// Close stops ordering and renewing; it is idempotent.
func (m *Manager) Close() {
	m.closeOnce.Do(func() {
		m.cancel()
		m.wg.Wait()
		m.cache.Stop()
	})
}
