package server

import (
	"slices"
	"testing"

	"shoal/server/config"
)

// TestACMENames: hosts of sites without a cert of their own, lower-cased,
// without wildcards, IPs or localhost, each once; a host first named by a
// site with its own cert stays with that cert.
func TestACMENames(t *testing.T) {
	sites := []config.Site{
		{Hosts: []string{"Own.Example.com", "shared.example.com"}, Cert: "own.pem", Key: "own.key"},
		{Hosts: []string{"www.example.com.", "*.example.com", "192.0.2.1", "::1", "localhost", "dev.localhost", "shared.example.com"}},
		{Hosts: []string{"WWW.example.com", "api.example.net"}},
		{},
	}
	got := acmeNames(sites)
	want := []string{"api.example.net", "www.example.com"}
	if !slices.Equal(got, want) {
		t.Errorf("acmeNames = %v, want %v", got, want)
	}
}
