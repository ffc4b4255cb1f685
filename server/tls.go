package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"shoal/internal/acme"
	"shoal/server/config"
)

// certManager owns the certificates of the https (and HTTP/3) listener. It
// picks one per handshake by SNI and swaps the whole set atomically on
// Reload, so new handshakes see new certificates while open connections,
// which finished their handshake, keep going.
//
// Choice for a server name follows the vhost routing, so the site that
// will serve a host also presents its certificate; first match wins:
//  1. a site whose hosts list the name exactly (case-insensitive, trailing
//     dot ignored) and that has its own cert;
//  2. a site with its own cert and a host "*.parent" where the name ends in
//     ".parent" (any depth, as nginx and the vhost router do; the longest
//     parent wins);
//  3. the default (first) site's own cert when its hosts = [] (it serves
//     every other name);
//  4. tls.cert;
//  5. the self-signed certificate (tls.self_signed);
//  6. the first site cert in config order, so a client without SNI still
//     completes a handshake (like nginx's default server); HasTLS reports
//     false for such names.
type certManager struct {
	log        *slog.Logger
	minVersion string // as configured; changing it needs a restart

	// certs is the current set; handshakes load it without locking.
	certs atomic.Pointer[certSet]
	// reloadMu serialises Reload, so two SIGHUPs do not interleave.
	reloadMu sync.Mutex

	tickets *ticketKeyRing
	config  *tls.Config
	// acme serves [acme] certificates for names no site cert matches;
	// nil until Node.startACME, or with [acme] off.
	acme atomic.Pointer[acme.Manager]
}

// newCertManager loads every configured certificate (and makes the
// self-signed one) and starts session ticket key rotation; Close stops it.
// Errors are *config.CertError values joined; config's checkCerts gives the same problems
// placed in the config file.
func newCertManager(t config.TLS, sites []config.Site, log *slog.Logger) (*certManager, error) {
	if log == nil {
		log = slog.Default()
	}
	minVersion, err := tlsVersion(t.MinVersion)
	if err != nil {
		return nil, err
	}
	set, err := buildCertSet(t, sites, nil, time.Now())
	if err != nil {
		return nil, err
	}
	tickets, err := newTicketKeyRing(ticketRotation, ticketKeysKept)
	if err != nil {
		return nil, err
	}
	m := &certManager{log: log, minVersion: t.MinVersion, tickets: tickets}
	m.certs.Store(set)
	m.config = &tls.Config{
		MinVersion:     minVersion,
		CipherSuites:   tls12CipherSuites(),
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: m.getCertificate,
		// Tickets go through the ring rather than the config's own keys:
		// net/http and quic-go clone the config, and keys set on a config
		// never reach its clones.
		WrapSession:   tickets.wrap,
		UnwrapSession: tickets.unwrap,
	}
	m.logSet(set, nil)
	return m, nil
}

// TLSConfig is the config for the https listener: use it as is (not a
// clone) with tls.NewListener and http.Server.Serve, and hand it to
// startHTTP3. Its GetCertificate follows Reload.
func (m *certManager) TLSConfig() *tls.Config { return m.config }

// Reload loads the certificates of a new config and swaps them in at once.
// On any error the old set stays in use and the error says which file and
// key failed. min_version changes need a restart (a tls.Config in use cannot
// be changed safely); that is logged, not refused.
func (m *certManager) Reload(t config.TLS, sites []config.Site) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	old := m.certs.Load()
	set, err := buildCertSet(t, sites, old.self, time.Now())
	if err != nil {
		m.log.Error("tls: reload failed; keeping the old certificates", "err", err)
		return fmt.Errorf("tls reload: %w", err)
	}
	if t.MinVersion != m.minVersion {
		m.log.Warn("tls: min_version changes need a restart", "running", m.minVersion, "configured", t.MinVersion)
	}
	m.certs.Store(set)
	m.logSet(set, old)
	return nil
}

// HasTLS reports whether host has a certificate meant for it (rules 1-5 of
// certManager), which is what redirect_http needs to know.
func (m *certManager) HasTLS(host string) bool {
	_, ok := m.certs.Load().lookup(host)
	return ok
}

// Covers reports whether the certificate served for host names it, so a
// browser would accept it.
func (m *certManager) Covers(host string) bool {
	if a := m.acme.Load(); a != nil && m.certs.Load().matchSite(normalizeHost(host)) == nil {
		if c := a.Certificate(normalizeHost(host)); c != nil {
			return c.Leaf != nil && c.Leaf.VerifyHostname(normalizeHost(host)) == nil
		}
	}
	cert, ok := m.certs.Load().lookup(host)
	if !ok || cert == nil || cert.Leaf == nil {
		return false
	}
	return cert.Leaf.VerifyHostname(normalizeHost(host)) == nil
}

// Close stops session ticket key rotation and ACME. It is idempotent.
func (m *certManager) Close() {
	m.tickets.close()
	if a := m.acme.Load(); a != nil {
		a.Close()
	}
}

func (m *certManager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := m.certs.Load()
	// A site's own cert (rules 1-2) wins over ACME, which wins over the
	// fallbacks (rules 3-6).
	if set.matchSite(normalizeHost(hello.ServerName)) == nil || acme.IsChallenge(hello) {
		if cert, ok, err := m.acmeCertificate(hello); ok {
			return cert, err
		}
	}
	cert, _ := set.lookup(hello.ServerName)
	if cert == nil {
		return nil, fmt.Errorf("tls: no certificate for %q", hello.ServerName)
	}
	return cert, nil
}

// logSet reports what a load produced: the self-signed fingerprint (a
// developer compares it with the browser's) and certificates that will soon
// expire or do not name their site's hosts.
func (m *certManager) logSet(set, old *certSet) {
	for _, lc := range set.loaded {
		leaf := lc.cert.Leaf
		m.log.Info("tls: certificate loaded", "key", lc.src.Prefix+".cert", "file", lc.src.Cert,
			"subject", leaf.Subject.CommonName, "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter.UTC())
		if left := time.Until(leaf.NotAfter); left < 14*24*time.Hour {
			m.log.Warn("tls: certificate expires soon", "file", lc.src.Cert, "not_after", leaf.NotAfter.UTC())
		}
		for _, h := range lc.src.Hosts {
			probe := strings.Replace(normalizeHost(h), "*", "probe", 1)
			if err := leaf.VerifyHostname(probe); err != nil {
				m.log.Warn("tls: certificate does not cover its site's host", "file", lc.src.Cert, "host", h)
			}
		}
	}
	if set.self != nil && (old == nil || old.self != set.self) {
		m.log.Info("tls: self-signed certificate made", "names", set.self.names,
			"sha256", fingerprint(set.self.cert.Certificate[0]), "not_after", set.self.cert.Leaf.NotAfter.UTC())
	}
	if set.selfSkipped {
		m.log.Info("tls: self_signed unused: certificate files cover every host")
	}
}

// certSet is one generation of certificates; it is never changed after
// being built, so handshakes read it without locks.
type certSet struct {
	exact    map[string]*tls.Certificate // site host -> that site's cert
	wildcard []wildcardCert              // longest suffix first
	catchAll *tls.Certificate            // cert of the first site when its hosts = []
	def      *tls.Certificate            // tls.cert
	self     *selfSigned                 // tls.self_signed, when some host needs it
	fallback *tls.Certificate            // first site cert, last resort
	loaded   []loadedCert                // for logging

	selfSkipped bool // self_signed asked for but every host had real files
}

type wildcardCert struct {
	suffix string // ".c.test" for a site host "*.c.test"
	cert   *tls.Certificate
}

type loadedCert struct {
	src  config.CertSource
	cert *tls.Certificate
}

// buildCertSet loads the configured pairs and, when asked, the self-signed
// certificate (reusing prevSelf when it still fits).
func buildCertSet(t config.TLS, sites []config.Site, prevSelf *selfSigned, now time.Time) (*certSet, error) {
	s := &certSet{exact: map[string]*tls.Certificate{}}
	var errs []error
	for _, src := range config.CertSources(t, sites) {
		cert, cerr := config.LoadPair(src, now)
		if cerr != nil {
			errs = append(errs, cerr)
			continue
		}
		s.add(src, cert)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Longest suffix first, so *.a.example.com wins over *.example.com;
	// stable, so among equals the first site keeps it.
	slices.SortStableFunc(s.wildcard, func(a, b wildcardCert) int { return len(b.suffix) - len(a.suffix) })
	if t.SelfSigned {
		s.selfSkipped = true
		if s.catchAll == nil && s.def == nil {
			names := selfSignedNames(sites, func(h string) bool { return s.matchSite(h) != nil })
			if len(names) > 0 {
				self, err := makeSelfSigned(names, prevSelf, now)
				if err != nil {
					return nil, err
				}
				s.self, s.selfSkipped = self, false
			}
		}
	}
	return s, nil
}

func (s *certSet) add(src config.CertSource, cert *tls.Certificate) {
	s.loaded = append(s.loaded, loadedCert{src: src, cert: cert})
	if src.Site < 0 {
		s.def = cert
		return
	}
	if s.fallback == nil {
		s.fallback = cert
	}
	if src.Site == 0 && len(src.Hosts) == 0 {
		s.catchAll = cert
	}
	// The first site to name a host owns it, as in vhost routing.
	for _, h := range src.Hosts {
		h = normalizeHost(h)
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			s.wildcard = append(s.wildcard, wildcardCert{suffix: suffix, cert: cert})
		} else if _, taken := s.exact[h]; !taken {
			s.exact[h] = cert
		}
	}
}

// matchSite is rules 1 and 2: a site cert that names host.
func (s *certSet) matchSite(host string) *tls.Certificate {
	if c := s.exact[host]; c != nil {
		return c
	}
	for _, w := range s.wildcard {
		if len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) {
			return w.cert
		}
	}
	return nil
}

// lookup picks the certificate for a server name (see certManager); ok is
// false when only the last-resort fallback (or nothing) fits.
func (s *certSet) lookup(name string) (cert *tls.Certificate, ok bool) {
	name = normalizeHost(name)
	if c := s.matchSite(name); c != nil {
		return c, true
	}
	switch {
	case s.catchAll != nil:
		return s.catchAll, true
	case s.def != nil:
		return s.def, true
	case s.self != nil:
		return s.self.cert, true
	}
	return s.fallback, false
}

// normalizeHost makes a host name comparable: DNS names are
// case-insensitive and may end in a dot.
func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

func tlsVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tls: min_version must be \"1.2\" or \"1.3\", not %q", v)
}

// tls12CipherSuites is Go's default TLS 1.2 list without the CBC-SHA1
// suites it still carries for old clients: only ECDHE with AEAD remains, so
// every 1.2 connection has forward secrecy and no CBC padding oracle.
// TLS 1.3 suites are not configurable in Go and all are fine.
func tls12CipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}
