package server

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"shoal/server/config"
)

func TestClusterSecretSources(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.Path = filepath.Join(dir, "config.toml")
	key := bytes.Repeat([]byte{7}, 32)

	t.Setenv("SHOAL_SECRET", "")
	cfg.Cluster.Secret = base64.StdEncoding.EncodeToString(key)
	if got, err := clusterSecret(cfg); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("from config: %x %v", got, err)
	}

	cfg.Cluster.Secret = ""
	env := bytes.Repeat([]byte{9}, 16)
	t.Setenv("SHOAL_SECRET", base64.StdEncoding.EncodeToString(env))
	if got, err := clusterSecret(cfg); err != nil || !bytes.Equal(got, env) {
		t.Fatalf("from env: %x %v", got, err)
	}

	t.Setenv("SHOAL_SECRET", "")
	first, err := clusterSecret(cfg)
	if err != nil || len(first) != 32 {
		t.Fatalf("made: %x %v", first, err)
	}
	path := filepath.Join(dir, ".shoal", "cluster-secret")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file %v mode %v", err, st.Mode())
	}
	again, err := clusterSecret(cfg)
	if err != nil || !bytes.Equal(again, first) {
		t.Fatal("second start made a different secret")
	}

	os.WriteFile(path, []byte("not base64!"), 0o600)
	if _, err := clusterSecret(cfg); err == nil {
		t.Fatal("bad secret file accepted")
	}
	t.Setenv("SHOAL_SECRET", "c2hvcnQ=")
	if _, err := clusterSecret(cfg); err == nil {
		t.Fatal("short env secret accepted")
	}
}

func TestClusterSecretRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".shoal", "cluster-secret")
	var wg sync.WaitGroup
	keys := make([][]byte, 8)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := secretFile(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("nodes starting together got different secrets")
		}
	}
}

func TestDefaultPeerURL(t *testing.T) {
	for _, tc := range []struct {
		cc    config.Cluster
		addrs map[string]string
		want  string
	}{
		{config.Cluster{Gossip: "0.0.0.0:7946"}, map[string]string{"http": "127.0.0.1:8080"}, "http://127.0.0.1:8080"},
		{config.Cluster{Gossip: "10.1.2.3:7946"}, map[string]string{"http": "[::]:8080"}, "http://10.1.2.3:8080"},
		{config.Cluster{Gossip: "0.0.0.0:7946", Advertise: "peer.example:7946"}, map[string]string{"http": "0.0.0.0:8080"}, "http://peer.example:8080"},
		{config.Cluster{Gossip: "127.0.0.1:0"}, map[string]string{"https": "127.0.0.1:8443"}, "https://127.0.0.1:8443"},
	} {
		got, err := defaultPeerURL(tc.cc, tc.addrs)
		if err != nil || got != tc.want {
			t.Errorf("%+v %v: %q %v, want %q", tc.cc, tc.addrs, got, err, tc.want)
		}
	}
	if _, err := defaultPeerURL(config.Cluster{}, map[string]string{"admin": "127.0.0.1:9180"}); err == nil {
		t.Error("peer URL made up without an HTTP listener")
	}
}

func TestBalanced(t *testing.T) {
	for _, tc := range []struct {
		balance string
		dynamic bool
		want    bool
	}{
		{"dynamic", true, true}, {"dynamic", false, false},
		{"all", false, true}, {"none", true, false},
	} {
		if got := balanced(tc.balance, tc.dynamic); got != tc.want {
			t.Errorf("balanced(%q, %v) = %v", tc.balance, tc.dynamic, got)
		}
	}
}

func TestClusterOptionsMargin(t *testing.T) {
	cfg := config.Defaults()
	cfg.Cluster.Secret = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16))
	cfg.Cluster.Margin = 0
	o, err := clusterOptions(cfg, clusterParams{Name: "a", Addrs: map[string]string{"http": "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if o.Margin >= 0 {
		t.Errorf("margin 0 in the config became %v (the package default)", o.Margin)
	}
	if o.PeerURL != "http://127.0.0.1:1" || o.Name != "a" {
		t.Errorf("options %+v", o)
	}
}
