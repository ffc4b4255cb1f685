package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"slices"
	"time"
)

// peerALPN marks a peer's TLS ClientHello, so a client-facing TLS listener
// can pick the peer configuration for it (IsPeerHello). The protocol then
// negotiated is plain "http/1.1".
const peerALPN = "shoal-peer"

// peerCAName is the issuer of every peer certificate. Every node derives
// the same CA key from the secret, so the name only has to be the same.
const peerCAName = "shoal cluster CA"

// Errors a peer's TLS handshake fails with; the handshake is the only
// place a stranger without the secret ever reaches.
var (
	// errNoPeerCert: the other side showed no certificate at all.
	errNoPeerCert = errors.New("cluster: peer TLS: no certificate")
	// errStrangerCert: a certificate not signed by the cluster's CA key,
	// so its owner does not hold the secret.
	errStrangerCert = errors.New("cluster: peer TLS: certificate not signed by this cluster's secret")
)

// peerTLS is mutual TLS between nodes with no CA to run: every node
// derives one Ed25519 CA key from the secret (HKDF, then
// ed25519.NewKeyFromSeed, which is deterministic) and signs a fresh P-256
// leaf of its own with it; each side accepts a peer whose leaf that CA key
// signed. Server names play no part.
type peerTLS struct {
	caPub  ed25519.PublicKey
	server *tls.Config // for connections peers open to this node
	client *tls.Config // for connections this node opens to peers
}

func newPeerTLS(secret []byte, name string) (*peerTLS, error) {
	seed, err := hkdf.Key(sha256.New, secret, nil, "shoal/peer-tls-ca", ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("cluster: peer TLS: %w", err)
	}
	caKey := ed25519.NewKeyFromSeed(seed)
	leaf, err := peerLeaf(caKey, name)
	if err != nil {
		return nil, err
	}
	p := &peerTLS{caPub: caKey.Public().(ed25519.PublicKey)}
	verify := func(cs tls.ConnectionState) error { return p.check(cs.PeerCertificates, time.Now()) }
	p.server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{leaf},
		// Any certificate is asked for, and VerifyConnection (which also
		// runs on resumed sessions) accepts only the cluster's.
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: verify,
		NextProtos:       []string{"http/1.1"},
		// Small first records help a browser's first paint; a peer
		// wants whole responses in as few records as possible.
		DynamicRecordSizingDisabled: true,
	}
	p.client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{leaf},
		// The chain is checked by VerifyConnection against the CA key,
		// not by name against system roots: peers are known by the key.
		InsecureSkipVerify: true,
		VerifyConnection:   verify,
		NextProtos:         []string{peerALPN, "http/1.1"},
		// A new connection to a peer resumes a session (no certificate
		// signatures) instead of a full handshake.
		ClientSessionCache:          tls.NewLRUClientSessionCache(1024),
		DynamicRecordSizingDisabled: true,
	}
	return p, nil
}

// peerLeaf makes this process's certificate: a new P-256 key, signed by
// the cluster CA key.
func peerLeaf(caKey ed25519.PrivateKey, name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster: peer TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster: peer TLS serial: %w", err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: peerCAName},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour), // peers' clocks may lag
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster: peer TLS certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster: peer TLS certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// check accepts a chain whose first certificate the cluster CA key signed
// and that is valid now. TLS itself has checked that the other side holds
// that certificate's key.
func (p *peerTLS) check(chain []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return errNoPeerCert
	}
	leaf := chain[0]
	if leaf.SignatureAlgorithm != x509.PureEd25519 || !ed25519.Verify(p.caPub, leaf.RawTBSCertificate, leaf.Signature) {
		return errStrangerCert
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return fmt.Errorf("cluster: peer TLS: certificate of %q outside its validity", leaf.Subject.CommonName)
	}
	return nil
}

// OverPeerTLS reports whether r came over a peer TLS connection: its own
// (the handshake verified the certificate; the issuer name suffices here
// because shoal's client-facing TLS never asks clients for certificates,
// so any certificate on a connection came through the peer configuration),
// or one a server marked with ContextFromPeer. The hop's HMAC and nonce
// are checked on top.
func OverPeerTLS(r *http.Request) bool {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 &&
		r.TLS.PeerCertificates[0].Issuer.CommonName == peerCAName {
		return true
	}
	_, ok := r.Context().Value(peerConnKey{}).(bool)
	return ok
}

type peerConnKey struct{}

// ContextFromPeer marks ctx as a connection's that a peer opened over peer
// TLS and whose handshake PeerServerConfig verified, for a server that
// reads such a connection through something other than a *tls.Conn (its
// requests then have no TLS state). Never use it for another connection.
func ContextFromPeer(ctx context.Context) context.Context {
	return context.WithValue(ctx, peerConnKey{}, true)
}

// dial opens a TLS connection to a peer and completes the handshake
// within ctx.
func (p *peerTLS) dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, p.client)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("cluster: peer TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// PeerServerConfig is the TLS configuration for a connection a peer opened
// to this node (on a plain-HTTP listener, one whose first byte is a TLS
// handshake record), or nil when Options.PeerTLS is off. The negotiated
// protocol is HTTP/1.1.
func (c *Cluster) PeerServerConfig() *tls.Config {
	if c.peerTLS == nil {
		return nil
	}
	return c.peerTLS.server
}

// PeerClientConfig is the TLS configuration this node dials peers with,
// or nil when Options.PeerTLS is off.
func (c *Cluster) PeerClientConfig() *tls.Config {
	if c.peerTLS == nil {
		return nil
	}
	return c.peerTLS.client
}

// IsPeerHello reports whether a ClientHello on a client-facing TLS
// listener is a peer's: such a listener's GetConfigForClient should answer
// it with PeerServerConfig.
func IsPeerHello(h *tls.ClientHelloInfo) bool {
	return slices.Contains(h.SupportedProtos, peerALPN)
}
