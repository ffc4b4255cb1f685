package server

import (
	"testing"

	"shoal/server/config"
)

func TestConfigHash(t *testing.T) {
	base := func() *config.Config {
		c := config.Defaults()
		c.Sites = []config.Site{config.DefaultSite()}
		return c
	}
	a, b := base(), base()
	b.Server.Name, b.Server.HTTP, b.Server.Admin = "node-b", ":8081", "127.0.0.1:9181"
	b.Cluster.Gossip, b.Cluster.Join = "127.0.0.1:7947", []string{"127.0.0.1:7946"}
	if configHash(a) != configHash(b) {
		t.Error("per-node flags changed the hash: every peer would show as drift")
	}
	c := base()
	c.Sites[0].Headers = map[string]string{"X-Frame-Options": "DENY"}
	if configHash(a) == configHash(c) {
		t.Error("a changed site header did not change the hash")
	}
	d := base()
	d.Cluster.Capacity = 8
	if configHash(a) == configHash(d) {
		t.Error("a changed capacity did not change the hash")
	}
	if len(configHash(a)) != 8 {
		t.Errorf("hash %q, want 8 hex digits", configHash(a))
	}
}
