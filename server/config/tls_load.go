package config

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

// CertSource is one cert/key pair the config names: tls.cert/tls.key or a
// site's cert/key. Paths are already resolved by Validate.
type CertSource struct {
	Prefix    string // config key prefix: "tls" or "site.N"
	Cert, Key string
	Site      int      // index into the sites, -1 for tls.cert
	Hosts     []string // the site's hosts; nil for tls.cert
}

// CertError is a problem with one certificate file, tied to the config key
// that names the file so that `shoal check` can place it.
type CertError struct {
	Key string // e.g. "tls.cert", "site.1.key"
	Msg string // starts with Key and names the file
}

func (e *CertError) Error() string { return e.Msg }

func certFail(key, format string, args ...any) *CertError {
	return &CertError{Key: key, Msg: key + ": " + fmt.Sprintf(format, args...)}
}

// CertSources lists the configured pairs: the default first, then the sites
// in order. Half-set pairs are left out (Validate reports them).
func CertSources(t TLS, sites []Site) []CertSource {
	var out []CertSource
	if t.Cert != "" && t.Key != "" {
		out = append(out, CertSource{Prefix: "tls", Cert: t.Cert, Key: t.Key, Site: -1})
	}
	for i, s := range sites {
		if s.Cert != "" && s.Key != "" {
			out = append(out, CertSource{Prefix: fmt.Sprintf("site.%d", i), Cert: s.Cert, Key: s.Key, Site: i, Hosts: s.Hosts})
		}
	}
	return out
}

// LoadPair reads and checks one pair: both files readable, the cert PEM
// parses, the key matches it, and the leaf has not expired at now.
func LoadPair(src CertSource, now time.Time) (*tls.Certificate, *CertError) {
	certKey, keyKey := src.Prefix+".cert", src.Prefix+".key"
	certPEM, err := os.ReadFile(src.Cert)
	if err != nil {
		return nil, certFail(certKey, "cannot read %s: %v", src.Cert, unwrapPathErr(err))
	}
	keyPEM, err := os.ReadFile(src.Key)
	if err != nil {
		return nil, certFail(keyKey, "cannot read %s: %v", src.Key, unwrapPathErr(err))
	}
	leaf, err := parseLeaf(certPEM)
	if err != nil {
		return nil, certFail(certKey, "%s: %v", src.Cert, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The cert already parsed, so whatever fails now is about the key.
		if strings.Contains(err.Error(), "does not match") {
			return nil, certFail(keyKey, "%s does not match the certificate in %s", src.Key, src.Cert)
		}
		return nil, certFail(keyKey, "%s: %v", src.Key, strings.TrimPrefix(err.Error(), "tls: "))
	}
	if now.After(leaf.NotAfter) {
		return nil, certFail(certKey, "certificate in %s expired on %s", src.Cert, leaf.NotAfter.UTC().Format(time.RFC3339))
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

// checkCerts loads every certificate the config names and reports unreadable
// files, keys that do not match their cert and expired certs as Errors
// placed at the key that names the file (file:line:col). Validate calls it
// once paths are resolved and every file exists, so `shoal check`, start
// and reload all refuse broken certificates; a missing file or half a pair
// is left to Validate's own checks so it is reported once.
func checkCerts(cfg *Config) error {
	var errs Errors
	now := time.Now()
	for _, src := range CertSources(cfg.TLS, cfg.Sites) {
		if missing(src.Cert) || missing(src.Key) {
			continue
		}
		if _, cerr := LoadPair(src, now); cerr != nil {
			errs = append(errs, cfg.errAt(cerr.Key, cerr.Msg))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	errs.Sort()
	return errs
}

func missing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}
