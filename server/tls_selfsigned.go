package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"time"

	"shoal/server/config"
)

// selfSignedValidity is long enough that a development node never outlives
// its certificate; browsers ask the user to accept it anyway.
const selfSignedValidity = 365 * 24 * time.Hour

// selfSigned is the in-memory certificate of tls.self_signed.
type selfSigned struct {
	cert  *tls.Certificate
	names []string // sorted DNS names and IPs it was made for
	key   *ecdsa.PrivateKey
}

// selfSignedNames lists who the certificate is for: every site host
// (wildcards included) plus the local names, minus any name a real certificate covers, so a
// host with real files never gets the self-signed one.
func selfSignedNames(sites []config.Site, coveredByReal func(string) bool) []string {
	seen := map[string]bool{}
	var names []string
	add := func(h string) {
		h = normalizeHost(h)
		// A wildcard host goes in as such (*.example.test, RFC 6125):
		// every name under it is a site host the certificate is for.
		if h == "" || h == "*" || seen[h] || coveredByReal(h) {
			return
		}
		seen[h] = true
		names = append(names, h)
	}
	for _, s := range sites {
		for _, h := range s.Hosts {
			add(h)
		}
	}
	// A developer reaches a local node by these whatever the site hosts say.
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		add(h)
	}
	slices.Sort(names)
	return names
}

// makeSelfSigned issues a certificate for names signed by its own key. It
// reuses prev when the names are unchanged, so a reload does not make a
// browser ask again, and prev's key otherwise.
func makeSelfSigned(names []string, prev *selfSigned, now time.Time) (*selfSigned, error) {
	if prev != nil && slices.Equal(prev.names, names) && now.Before(prev.cert.Leaf.NotAfter.Add(-24*time.Hour)) {
		return prev, nil
	}
	var key *ecdsa.PrivateKey
	if prev != nil {
		key = prev.key
	} else {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("tls: self-signed key: %w", err)
		}
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tls: self-signed serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"shoal self-signed"}, CommonName: names[0]},
		NotBefore:             now.Add(-time.Hour), // tolerate a client clock that is a little behind
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tls: self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tls: self-signed certificate: %w", err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return &selfSigned{cert: cert, names: names, key: key}, nil
}

// fingerprint is the SHA-256 of a certificate, written as browsers and
// `openssl x509 -fingerprint -sha256` show it.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}
