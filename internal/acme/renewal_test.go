package acme

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"shoal/internal/acme/acmetest"
)

// TestRenewalDueAtRenewBefore: certmagic, with the Config the manager
// picks for a certificate, finds it due exactly when less than
// renew_before of its validity remains, whatever its lifetime; one
// shorter-lived than renew_before is due at half its life.
func TestRenewalDueAtRenewBefore(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name             string
		lifetime, before time.Duration
		window           time.Duration // expected: due with less than this left
	}{
		{"90 days, 720h", 90 * day, 720 * time.Hour, 720 * time.Hour},
		{"90 days, 48h", 90 * day, 48 * time.Hour, 48 * time.Hour},
		{"90 days, 1h: certmagic's floor", 90 * day, time.Hour, 90 * day / 50},
		{"90 days, 80 days", 90 * day, 80 * day, 80 * day},
		{"6 days, 720h", 6 * day, 720 * time.Hour, 3 * day},
		{"6 days, 48h", 6 * day, 48 * time.Hour, 48 * time.Hour},
		{"40s, 20s", 40 * time.Second, 20 * time.Second, 20 * time.Second},
		{"40s, 60s", 40 * time.Second, 60 * time.Second, 20 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(Options{CA: "https://127.0.0.1:1/dir", Storage: t.TempDir(), RenewBefore: tc.before})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			const margin = 2 * time.Second // x509 times are whole seconds
			for _, left := range []time.Duration{tc.window + margin, tc.window - margin} {
				cert := certExpiringIn(tc.lifetime, left)
				cfg, err := m.configFor(cert)
				if err != nil {
					t.Fatal(err)
				}
				want := left < tc.window
				if got := cert.NeedsRenewal(cfg); got != want {
					t.Errorf("%v left of %v: certmagic says due=%v, want %v", left, tc.lifetime, got, want)
				}
				if got := renewalWindow(cert.Lifetime(), tc.before); got != tc.window {
					t.Errorf("renewalWindow = %v, want %v", got, tc.window)
				}
			}
		})
	}
}

// certExpiringIn is a certmagic certificate of the given lifetime with
// left of it remaining (as certmagic counts: NotAfter is inclusive).
func certExpiringIn(lifetime, left time.Duration) certmagic.Certificate {
	expires := time.Now().Truncate(time.Second).Add(left)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"due.shoal.test"},
		NotBefore: expires.Add(-lifetime), NotAfter: expires.Add(-time.Second)}
	return certmagic.Certificate{Certificate: tls.Certificate{Leaf: leaf}, Names: leaf.DNSNames}
}

// TestRenewCheckInterval: certmagic renews anything with less than five
// check intervals left; that must stay inside renew_before.
func TestRenewCheckInterval(t *testing.T) {
	for _, before := range []time.Duration{20 * time.Second, time.Minute, time.Hour, 720 * time.Hour} {
		iv := renewCheckInterval(before)
		if 5*iv >= before || iv < time.Second || iv > time.Minute {
			t.Errorf("renew_before %v: check interval %v", before, iv)
		}
	}
}

// TestRenewsAtRenewBefore: against Pebble issuing 30-second certificates,
// a node with renew_before 12s replaces its certificate once less than
// 12s of it remains, not earlier, and soon after.
func TestRenewsAtRenewBefore(t *testing.T) {
	const lifetime, before = 30 * time.Second, 12 * time.Second
	httpLn, tlsLn := listeners(t)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: portOf(httpLn), TLSPort: portOf(tlsLn),
		Validity: lifetime, NoARI: true})
	o := options(p, t.TempDir())
	o.RenewBefore = before
	n := startNode(t, o, httpLn, tlsLn)
	const name = "renew.shoal.test"
	n.m.Manage([]string{name})
	roots := p.IssuerRoots()
	first := n.waitIssued(t, name, roots, 60*time.Second)
	due := first.NotAfter.Add(time.Second - before)
	var second *x509.Certificate
	deadline := time.Now().Add(lifetime + 30*time.Second)
	for second == nil || second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still serving %x after its expiry", first.SerialNumber)
		}
		time.Sleep(100 * time.Millisecond) // poll interval
		second = n.waitIssued(t, name, roots, 10*time.Second)
	}
	// Pebble's NotBefore is the moment of issuance, in whole seconds.
	if second.NotBefore.Before(due.Add(-time.Second)) {
		t.Errorf("renewed at %v, before the due time %v (renew_before %v)", second.NotBefore, due, before)
	}
	// Late by a check interval (1s) and an order; not when nearly expired.
	if late := second.NotBefore.Sub(due); late > before-2*time.Second {
		t.Errorf("renewed %v after the due time", late)
	}
	if got := len(p.Issued()); got != 2 {
		t.Errorf("Pebble issued %d certificates, want 2: %v", got, p.Issued())
	}
}

// TestRestartRenewsDueCertificate: a node that starts with a stored
// certificate already inside its renewal window renews it at once, not
// at certmagic's next check (a minute here).
func TestRestartRenewsDueCertificate(t *testing.T) {
	httpLn, tlsLn := listeners(t)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: portOf(httpLn), TLSPort: portOf(tlsLn), NoARI: true})
	roots := p.IssuerRoots()
	dir := t.TempDir()
	const name = "due.shoal.test"
	n := startNode(t, options(p, dir), httpLn, tlsLn)
	n.m.Manage([]string{name})
	first := n.waitIssued(t, name, roots, 60*time.Second)
	n.stop()

	// With renew_before a second short of the 90-day lifetime, the
	// certificate is due once it is more than a second old.
	lifetime := first.NotAfter.Add(time.Second).Sub(first.NotBefore)
	for time.Since(first.NotBefore) < 2*time.Second {
		time.Sleep(50 * time.Millisecond) // the certificate ages
	}
	o := options(p, dir)
	o.RenewBefore = lifetime - time.Second
	const within = 20 * time.Second
	if iv := renewCheckInterval(o.RenewBefore); iv <= within {
		t.Fatalf("check interval %v: the test would not tell an immediate renewal", iv)
	}
	httpLn2, tlsLn2 := relisten(t, httpLn), relisten(t, tlsLn)
	n2 := startNode(t, o, httpLn2, tlsLn2)
	n2.m.Manage([]string{name})
	deadline := time.Now().Add(within)
	for n2.waitIssued(t, name, roots, 10*time.Second).SerialNumber.Cmp(first.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the due certificate was not renewed at start")
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	if got := len(p.Issued()); got != 2 {
		t.Errorf("Pebble issued %d certificates, want 2", got)
	}
}

// relisten listens again on the address of a closed listener.
func relisten(t *testing.T, old net.Listener) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", old.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
