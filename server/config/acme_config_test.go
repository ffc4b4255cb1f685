package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"shoal/server/config"
)

// TestACMEConfigErrors: each bad [acme] value is reported at its key's
// position, all at once.
func TestACMEConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []wantErr
	}{
		{"bad values", `[server]
https = "127.0.0.1:0"

[acme]
enabled = true
ca = "http://ca.example/dir"
ca_root = "missing.pem"
challenges = ["http-01", "dns-01"]
renew_before = "0s"
`, []wantErr{
			{6, 1, `acme.ca: must be an https URL`},
			{7, 1, `acme.ca_root: cannot read`},
			{8, 1, `acme.challenges: must be one of "http-01", "tls-alpn-01", not "dns-01"`},
			{9, 1, `acme.renew_before: must be positive`},
		}},
		{"no challenge", `[server]
https = "127.0.0.1:0"

[acme]
enabled = true
challenges = []
`, []wantErr{{6, 1, `acme.challenges: must name at least one`}}},
		{"needs https", `[acme]
enabled = true
`, []wantErr{{2, 1, `acme.enabled: needs server.https`}}},
		{"http-01 needs http", `[server]
http = ""
https = "127.0.0.1:0"

[acme]
enabled = true
challenges = ["http-01"]
`, []wantErr{{7, 1, `acme.challenges: http-01 needs server.http`}}},
		{"unknown key", `[acme]
enable = true
`, []wantErr{{2, 1, `unknown key "acme.enable"`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.src)
			_, err := loadValid(path)
			if err == nil {
				t.Fatal("config accepted")
			}
			checkErrors(t, path, err, tc.want)
		})
	}
}

// TestACMEConfigValid: defaults as SPEC says, storage relative to the
// config, ca_root read, and without an http listener the default
// challenges fall back to tls-alpn-01; [acme] needs no other certificate.
func TestACMEConfigValid(t *testing.T) {
	d := config.Defaults().ACME
	if d.Enabled || d.CA != "https://acme-v02.api.letsencrypt.org/directory" || d.Storage != ".shoal/acme" ||
		d.RenewBefore != 720*time.Hour || len(d.Challenges) != 2 {
		t.Errorf("defaults = %+v", d)
	}
	path := writeConfig(t, `[server]
http = ""
https = "127.0.0.1:0"

[acme]
enabled = true
ca_root = "ca.pem"
email = "ops@example.com"
`)
	dir := filepath.Dir(path)
	writeCA(t, filepath.Join(dir, "ca.pem"))
	cfg, err := loadValid(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, ".shoal/acme"); cfg.ACME.Storage != want {
		t.Errorf("storage = %q, want %q", cfg.ACME.Storage, want)
	}
	if len(cfg.ACME.Challenges) != 1 || cfg.ACME.Challenges[0] != "tls-alpn-01" {
		t.Errorf("challenges without http = %v, want [tls-alpn-01]", cfg.ACME.Challenges)
	}
}

// writeCA writes a fresh self-signed CA certificate as PEM.
func writeCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "acme test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}
