package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// certSource is one cert/key pair the config names: tls.cert/tls.key or a
// site's cert/key. Paths are already resolved by Validate.
type certSource struct {
	prefix    string // config key prefix: "tls" or "site.N"
	cert, key string
	site      int      // index into the sites, -1 for tls.cert
	hosts     []string // the site's hosts; nil for tls.cert
}

// certError is a problem with one certificate file, tied to the config key
// that names the file so that `shoal check` can place it.
type certError struct {
	Key string // e.g. "tls.cert", "site.1.key"
	Msg string // starts with Key and names the file
}

func (e *certError) Error() string { return e.Msg }

func certFail(key, format string, args ...any) *certError {
	return &certError{Key: key, Msg: key + ": " + fmt.Sprintf(format, args...)}
}

// certSources lists the configured pairs: the default first, then the sites
// in order. Half-set pairs are left out (Validate reports them).
func certSources(t TLSConfig, sites []SiteConfig) []certSource {
	var out []certSource
	if t.Cert != "" && t.Key != "" {
		out = append(out, certSource{prefix: "tls", cert: t.Cert, key: t.Key, site: -1})
	}
	for i, s := range sites {
		if s.Cert != "" && s.Key != "" {
			out = append(out, certSource{prefix: fmt.Sprintf("site.%d", i), cert: s.Cert, key: s.Key, site: i, hosts: s.Hosts})
		}
	}
	return out
}

// loadPair reads and checks one pair: both files readable, the cert PEM
// parses, the key matches it, and the leaf has not expired at now.
func loadPair(src certSource, now time.Time) (*tls.Certificate, *certError) {
	certKey, keyKey := src.prefix+".cert", src.prefix+".key"
	certPEM, err := os.ReadFile(src.cert)
	if err != nil {
		return nil, certFail(certKey, "cannot read %s: %v", src.cert, unwrapPathErr(err))
	}
	keyPEM, err := os.ReadFile(src.key)
	if err != nil {
		return nil, certFail(keyKey, "cannot read %s: %v", src.key, unwrapPathErr(err))
	}
	leaf, err := parseLeaf(certPEM)
	if err != nil {
		return nil, certFail(certKey, "%s: %v", src.cert, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The cert already parsed, so whatever fails now is about the key.
		if strings.Contains(err.Error(), "does not match") {
			return nil, certFail(keyKey, "%s does not match the certificate in %s", src.key, src.cert)
		}
		return nil, certFail(keyKey, "%s: %v", src.key, strings.TrimPrefix(err.Error(), "tls: "))
	}
	if now.After(leaf.NotAfter) {
		return nil, certFail(certKey, "certificate in %s expired on %s", src.cert, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	pair.Leaf = leaf
	return &pair, nil
}

// parseLeaf returns the first certificate in a PEM file (the leaf; the rest
// is the chain).
func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	rest := certPEM
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("bad certificate: %w", err)
		}
		return leaf, nil
	}
}

// checkTLS loads every certificate the config names and reports unreadable
// files, keys that do not match their cert and expired certs as ConfigErrors
// placed at the key that names the file (file:line:col). Validate calls it
// once paths are resolved and every file exists, so `shoal check`, start
// and reload all refuse broken certificates; a missing file or half a pair
// is left to Validate's own checks so it is reported once.
func checkTLS(cfg *Config) error {
	var errs ConfigErrors
	now := time.Now()
	for _, src := range certSources(cfg.TLS, cfg.Sites) {
		if missing(src.cert) || missing(src.key) {
			continue
		}
		if _, cerr := loadPair(src, now); cerr != nil {
			errs = append(errs, cfg.errAt(cerr.Key, cerr.Msg))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	errs.sort()
	return errs
}

func missing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}
