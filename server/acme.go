package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"

	"shoal/internal/acme"
	"shoal/server/config"
)

// acmeChallengePrefix is where a CA fetches http-01 tokens.
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// acmeNames lists the host names [acme] gets certificates for: every
// site host that is not a wildcard, an IP or localhost, of a site with no
// cert of its own, minus names an earlier site's own cert already serves
// (the first site to name a host owns it, as in vhost routing).
func acmeNames(sites []config.Site) []string {
	seen := map[string]bool{}
	var names []string
	for _, s := range sites {
		for _, h := range s.Hosts {
			h = normalizeHost(h)
			if seen[h] {
				continue
			}
			seen[h] = true
			if s.Cert != "" || strings.Contains(h, "*") || h == "localhost" || strings.HasSuffix(h, ".localhost") {
				continue
			}
			if _, err := netip.ParseAddr(h); err == nil {
				continue
			}
			names = append(names, h)
		}
	}
	slices.Sort(names)
	return names
}

// withACMEFallback is the [tls] the certificate manager builds from: with
// [acme] on, names wait for their first certificate behind a self-signed
// one unless tls.cert or a catch-all site cert serves them, so a name is
// never served with no certificate.
func withACMEFallback(cfg *config.Config) config.TLS {
	t := cfg.TLS
	if cfg.ACME.Enabled {
		t.SelfSigned = true
	}
	return t
}

// acceptACMEALPN lets the https listener negotiate acme-tls/1, which the
// CA's tls-alpn-01 probe asks for alone; call it before the listener uses
// the config.
func (m *certManager) acceptACMEALPN() {
	if !slices.Contains(m.config.NextProtos, acme.ALPN) {
		m.config.NextProtos = append(m.config.NextProtos, acme.ALPN)
	}
}

// acmeTransport is what the cluster implements to share ACME state
// between nodes (the contract is internal/acme.Cluster's doc); ServeACME
// hands it this node's storage, whose Receive it calls for every key a
// peer publishes and whose Local answers a peer's Fetch.
// *cluster.Cluster implements it (cluster/acmesync.go); its Lock holds
// back the first order of a node that is still alone, with peers to join,
// until its first join or a bounded wait, so ordering starts only after
// the initial join.
type acmeTransport interface {
	acme.Cluster
	ServeACME(s *acme.Storage)
}

// startACME makes the ACME manager once the listeners are bound (it needs
// their ports) and the cluster runs, and starts ordering in the
// background: the node serves at once, with fallback certificates until
// the CA has answered. A failure leaves the fallbacks in place.
func (n *Node) startACME(cfg *config.Config) {
	if !cfg.ACME.Enabled || n.certs == nil {
		return
	}
	if err := n.newACME(cfg); err != nil {
		n.log.Error("acme: not started; serving fallback certificates", "err", err)
	}
}

func (n *Node) newACME(cfg *config.Config) error {
	var roots *x509.CertPool
	if cfg.ACME.CARoot != "" {
		pem, err := os.ReadFile(cfg.ACME.CARoot)
		if err != nil {
			return fmt.Errorf("acme.ca_root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("acme.ca_root: %s holds no PEM certificate", cfg.ACME.CARoot)
		}
	}
	addrs := n.Addrs()
	o := acme.Options{
		CA: cfg.ACME.CA, Roots: roots, Email: cfg.ACME.Email, Challenges: cfg.ACME.Challenges,
		Storage: cfg.ACME.Storage, RenewBefore: cfg.ACME.RenewBefore, Node: n.state.Load().name,
		Logger: n.log, HTTPAddr: addrs["http"], TLSAddr: addrs["https"],
	}
	var transport acmeTransport
	shared := false
	if c := n.cl.get(); c != nil {
		transport, shared = any(c).(acmeTransport)
	}
	if shared {
		o.Cluster = transport
	}
	m, err := acme.New(o)
	if err != nil {
		return fmt.Errorf("acme: %w", err)
	}
	if shared {
		transport.ServeACME(m.Storage())
	}
	n.certs.acme.Store(m)
	names := acmeNames(cfg.Sites)
	n.log.Info("acme: managing certificates", "ca", cfg.ACME.CA, "names", names,
		"challenges", cfg.ACME.Challenges, "shared", shared)
	m.Manage(names)
	return nil
}

// manageACME hands the names of a reloaded config to the running ACME
// manager; changes to [acme] itself take effect at the next restart.
func (m *certManager) manageACME(cfg *config.Config) {
	if a := m.acme.Load(); a != nil && cfg.ACME.Enabled {
		a.Manage(acmeNames(cfg.Sites))
	}
}

// answerACME answers a CA's http-01 request on the http listener, before
// redirect_http and any site, and reports whether it did.
func (m *certManager) answerACME(w http.ResponseWriter, r *http.Request) bool {
	if !strings.HasPrefix(r.URL.Path, acmeChallengePrefix) {
		return false
	}
	a := m.acme.Load()
	return a != nil && a.HandleHTTPChallenge(w, r)
}

// acmeCertificate is the ACME certificate for a handshake, or a
// tls-alpn-01 challenge answer; nil, false when ACME has none for it.
func (m *certManager) acmeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	a := m.acme.Load()
	if a == nil {
		return nil, false, nil
	}
	if acme.IsChallenge(hello) {
		c, err := a.ChallengeCertificate(hello)
		return c, true, err
	}
	if c := a.Certificate(normalizeHost(hello.ServerName)); c != nil {
		return c, true, nil
	}
	return nil, false, nil
}
