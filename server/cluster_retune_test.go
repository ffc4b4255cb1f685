package server

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"shoal/cluster"
	"shoal/internal/testenv"
	"shoal/server/config"
)

var retuneSecret = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))

func TestClusterTunablesMapping(t *testing.T) {
	for _, tc := range []struct {
		name string
		cc   config.Cluster
		want cluster.Tunables
	}{
		{"defaults", config.Defaults().Cluster, cluster.Tunables{Mode: "proxy", Policy: "least_loaded", Capacity: 64, Margin: 0.1, Retries: 1, ConfigHash: "h1"}},
		{"margin 0 means no margin", config.Cluster{Mode: "redirect", Policy: "ip_hash", Capacity: 3, Margin: 0, Sticky: true, Retries: 0},
			cluster.Tunables{Mode: "redirect", Policy: "ip_hash", Capacity: 3, Margin: -1, Sticky: true, Retries: 0, ConfigHash: "h1"}},
		{"every field", config.Cluster{Mode: "proxy", Policy: "round_robin", Capacity: 128, Margin: 0.25, Sticky: true, Retries: 4},
			cluster.Tunables{Mode: "proxy", Policy: "round_robin", Capacity: 128, Margin: 0.25, Sticky: true, Retries: 4, ConfigHash: "h1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := clusterTunables(tc.cc, "h1"); got != tc.want {
				t.Errorf("clusterTunables = %+v, want %+v", got, tc.want)
			}
			// The start maps the same way as a reload.
			cfg := config.Defaults()
			cfg.Cluster = tc.cc
			cfg.Cluster.Secret = retuneSecret
			o, err := clusterOptions(cfg, clusterParams{Name: "a", ConfigHash: "h1", Addrs: map[string]string{"http": "127.0.0.1:1"}})
			if err != nil {
				t.Fatal(err)
			}
			got := cluster.Tunables{Mode: o.Mode, Policy: o.Policy, Capacity: o.Capacity, Margin: o.Margin,
				Sticky: o.Sticky, Retries: o.Retries, ConfigHash: o.ConfigHash}
			if got != tc.want {
				t.Errorf("clusterOptions tunables = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRestartOnly(t *testing.T) {
	base := func() *config.Config {
		cfg := config.Defaults()
		cfg.Cluster.Enabled = true
		cfg.Cluster.Join = []string{"10.0.0.1:7946"}
		return cfg
	}
	for _, tc := range []struct {
		name string
		edit func(*config.Config)
		want []string
	}{
		{"tunables only", func(c *config.Config) {
			c.Cluster.Mode, c.Cluster.Policy, c.Cluster.Capacity = "redirect", "random", 5
			c.Cluster.Margin, c.Cluster.Sticky, c.Cluster.Retries, c.Cluster.Balance = 0, true, 3, "all"
		}, nil},
		{"gossip", func(c *config.Config) { c.Cluster.Gossip = "127.0.0.1:7000" }, []string{"cluster.gossip"}},
		{"advertise", func(c *config.Config) { c.Cluster.Advertise = "10.0.0.9" }, []string{"cluster.advertise"}},
		{"join", func(c *config.Config) { c.Cluster.Join = append(c.Cluster.Join, "10.0.0.2:7946") }, []string{"cluster.join"}},
		{"secret", func(c *config.Config) { c.Cluster.Secret = retuneSecret }, []string{"cluster.secret"}},
		{"name", func(c *config.Config) { c.Server.Name = "other" }, []string{"server.name"}},
		{"public_url", func(c *config.Config) { c.Cluster.PublicURL = "https://example.com" }, []string{"cluster.public_url"}},
		{"listener moves under a derived peer_url", func(c *config.Config) { c.Server.HTTP = ":9090" },
			[]string{"cluster.peer_url (derived from server.http/https)"}},
		{"peer_url set", func(c *config.Config) { c.Cluster.PeerURL = "http://10.0.0.5:8080" }, []string{"cluster.peer_url"}},
		{"trusted proxies", func(c *config.Config) { c.Server.TrustedProxies = []string{"10.0.0.0/8"} },
			[]string{"server.trusted_proxies (for cluster routing)"}},
		{"enabled", func(c *config.Config) { c.Cluster.Enabled = false }, []string{"cluster.enabled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.edit(cfg)
			if got := restartOnly(cfg, base()); !slices.Equal(got, tc.want) {
				t.Errorf("restartOnly = %q, want %q", got, tc.want)
			}
		})
	}
	off := config.Defaults()
	off2 := config.Defaults()
	off2.Cluster.Gossip = "127.0.0.1:1"
	if got := restartOnly(off2, off); got != nil {
		t.Errorf("cluster off both times: %q, want nothing", got)
	}
}

func TestRetuneAppliesToRunningCluster(t *testing.T) {
	old := config.Defaults()
	old.Cluster.Enabled = true
	old.Cluster.Gossip = "127.0.0.1:0"
	old.Cluster.Secret = retuneSecret
	c, err := startCluster(old, clusterParams{Name: "retune-a", ConfigHash: configHash(old),
		Addrs: map[string]string{"http": "127.0.0.1:1"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })
	var cr clusterRef
	cr.p.Store(c)

	cfg := *old
	cfg.Cluster.Policy, cfg.Cluster.Capacity, cfg.Cluster.Margin = "round_robin", 7, 0
	cfg.Cluster.Sticky, cfg.Cluster.Retries = true, 3
	cfg.Cluster.Gossip = "127.0.0.1:7999" // needs a restart: warned, not applied
	var logs testenv.Buffer
	cr.retune(&cfg, old, slog.New(slog.NewTextHandler(&logs, nil)))

	want := cluster.Tunables{Mode: "proxy", Policy: "round_robin", Capacity: 7, Margin: -1, Sticky: true, Retries: 3, ConfigHash: configHash(&cfg)}
	if got := c.Tunables(); got != want {
		t.Fatalf("tunables %+v, want %+v", got, want)
	}
	if want.ConfigHash == configHash(old) {
		t.Fatal("test setup: config hash did not change")
	}
	for _, m := range c.Members() {
		if m.Self && (m.Capacity != 7 || m.Config != want.ConfigHash) {
			t.Errorf("own entry capacity %d config %q, want 7 %q", m.Capacity, m.Config, want.ConfigHash)
		}
	}
	out := logs.String()
	for _, s := range []string{"cluster retuned", "policy=least_loaded->round_robin", "capacity=64->7", "cluster.gossip", "next restart"} {
		if !strings.Contains(out, s) {
			t.Errorf("log lacks %q:\n%s", s, out)
		}
	}

	// A value Validate would refuse, reaching retune anyway, changes nothing.
	bad := cfg
	bad.Cluster.Policy = "fastest"
	logs = testenv.Buffer{}
	cr.retune(&bad, &cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if got := c.Tunables(); got != want {
		t.Fatalf("invalid retune changed tunables to %+v", got)
	}
	if !strings.Contains(logs.String(), "kept") {
		t.Errorf("invalid retune not logged:\n%s", logs.String())
	}
}

// TestReloadRetunesNode: a reload of a running node changes the capacity
// and config hash the admin API shows for it, with no restart.
func TestReloadRetunesNode(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "shoal.toml")
	write := func(capacity string) {
		t.Helper()
		src := `[log]
access = "off"
[server]
name = "retune-node"
http = "127.0.0.1:0"
admin = ""
drain_delay = "0s"
[cluster]
enabled = true
gossip = "127.0.0.1:0"
secret = "` + retuneSecret + `"
capacity = ` + capacity + `
[[site]]
root = "www"
`
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10")
	n := runNode(t, path)
	self := func() (int, string) {
		for _, m := range n.clusterView().Members() {
			if m.Name == "retune-node" {
				return m.Capacity, m.Config
			}
		}
		t.Fatal("no entry for this node")
		return 0, ""
	}
	capacity, hash := self()
	if capacity != 10 || hash == "" {
		t.Fatalf("before reload: capacity %d config %q", capacity, hash)
	}
	write("20")
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	capacity, hash2 := self()
	if capacity != 20 || hash2 == hash {
		t.Fatalf("after reload: capacity %d config %q (was %q)", capacity, hash2, hash)
	}
	// What peers are told follows too.
	c := n.cl.get()
	if c == nil {
		t.Fatal("no cluster running")
	}
	if got := c.Tunables(); got.Capacity != 20 || got.ConfigHash != hash2 {
		t.Fatalf("cluster tunables %+v, want capacity 20 config %q", got, hash2)
	}
}
