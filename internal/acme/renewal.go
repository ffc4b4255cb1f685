package acme

import (
	"time"

	"github.com/caddyserver/certmagic"
)

// certmagic measures a renewal window as a share of a certificate's
// lifetime (RenewalWindowRatio) and [acme] renew_before is a duration, so
// each certificate is managed by a Config whose ratio turns renew_before
// into that share of its own lifetime: a 90-day certificate and Let's
// Encrypt's 6-day ones are then both renewed when less than renew_before
// of their validity remains.

// DefaultRenewBefore is used when Options.RenewBefore is not positive.
const DefaultRenewBefore = 720 * time.Hour

// baseRatio is the ratio of the Config that manages names before their
// certificate is known (ManageSync): it cannot know the lifetime, so it
// is too small ever to find a certificate due by its ratio (certmagic's
// emergency checks still apply); Manage then asks the per-certificate
// Config (renewIfDue).
const baseRatio = 1e-9

// renewalWindow is how long before expiry a certificate of the given
// lifetime is renewed: before, except that a certificate whose whole life
// is shorter than before (Let's Encrypt's 6-day profile against the 720h
// default) is renewed at half its life rather than again and again from
// the moment it is issued, and that certmagic renews any certificate in
// the last fiftieth of its life (43h12m of 90 days) whatever it is told.
func renewalWindow(lifetime, before time.Duration) time.Duration {
	if before >= lifetime {
		return lifetime / 2
	}
	return max(before, lifetime/emergencyShare)
}

// emergencyShare: certmagic renews a certificate with less than
// 1/emergencyShare of its lifetime left, whatever its configuration.
const emergencyShare = 50

// renewalRatio is certmagic's RenewalWindowRatio for renewalWindow; for a
// lifetime certmagic cannot read, its own default.
func renewalRatio(lifetime, before time.Duration) float64 {
	if lifetime <= 0 {
		return certmagic.DefaultRenewalWindowRatio
	}
	return float64(renewalWindow(lifetime, before)) / float64(lifetime)
}

// renewCheckInterval is how often certmagic looks for certificates to
// renew, which bounds how late after its due moment a renewal starts: a
// twentieth of renew_before, between a second and a minute (certmagic's
// 10-minute default is meant for caches of millions of certificates; a
// node's few cost nothing to look over). certmagic also renews any
// certificate with less than five intervals left, which must not come
// before renew_before.
func renewCheckInterval(before time.Duration) time.Duration {
	return min(max(before/20, time.Second), maxRenewCheck)
}

// maxRenewCheck is the longest renewCheckInterval.
const maxRenewCheck = time.Minute

// configFor is certmagic's GetConfigForCert: the Config whose ratio
// renews cert renew_before its expiry. Configs are kept by lifetime; a CA
// issues few different ones.
func (m *Manager) configFor(cert certmagic.Certificate) (*certmagic.Config, error) {
	life := cert.Lifetime()
	m.cfgMu.Lock()
	defer m.cfgMu.Unlock()
	if cfg, ok := m.configs[life]; ok {
		return cfg, nil
	}
	cfg := m.newConfig(renewalRatio(life, m.renewBefore))
	if len(m.configs) < maxConfigs {
		m.configs[life] = cfg
	}
	return cfg, nil
}

// maxConfigs bounds the Configs kept: lifetimes come from the CA.
const maxConfigs = 16

// newConfig is a Config sharing the manager's cache, storage, issuer and
// events, with the given renewal ratio.
func (m *Manager) newConfig(ratio float64) *certmagic.Config {
	cfg := certmagic.New(m.cache, certmagic.Config{
		RenewalWindowRatio: ratio,
		KeySource:          certmagic.StandardKeyGenerator{KeyType: certmagic.P256},
		Storage:            m.storage,
		Logger:             m.zlog,
		OnEvent:            m.onEvent,
	})
	if m.issuer != nil {
		cfg.Issuers = []certmagic.Issuer{quietIssuer{m.issuer}}
	}
	return cfg
}

// renewDue reports whether the certificate held for name has less than
// its renewal window left.
func (m *Manager) renewDue(name string, now time.Time) bool {
	c := m.Certificate(name)
	if c == nil || c.Leaf == nil {
		return false
	}
	expires := c.Leaf.NotAfter.Truncate(time.Second).Add(time.Second) // as certmagic counts
	life := expires.Sub(c.Leaf.NotBefore)
	return expires.Sub(now) < renewalWindow(life, m.renewBefore)
}
