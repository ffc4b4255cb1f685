// Package examples holds runnable configs; its test checks each one as
// `shoal check` does, so an example never rots into an error.
package examples

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"shoal/internal/testenv"
	"shoal/server"
	"shoal/server/config"
)

// TestExamples validates every examples/*/config.toml with the loader
// `shoal check` uses, on a copy (validation may make files such as a
// self-signed certificate or a secret beside the config).
func TestExamples(t *testing.T) {
	configs, err := filepath.Glob("*/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(configs) < 4 {
		t.Fatalf("found %d example configs, want at least vhosts, https-self-signed, cgi and cluster", len(configs))
	}
	for _, cfgPath := range configs {
		name := filepath.Dir(cfgPath)
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			if err := os.CopyFS(dir, os.DirFS(name)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "config.toml")
			cfg, err := server.LoadValid(func() (*config.Config, error) { return config.Load(path) })
			if err != nil {
				t.Fatalf("shoal check -config examples/%s:\n%v", cfgPath, err)
			}
			if len(cfg.Sites) == 0 {
				t.Errorf("examples/%s defines no [[site]]", cfgPath)
			}
		})
	}
}

// TestExamplesCatchErrors makes sure the check can fail: a copy of an
// example with a misspelt key is refused.
func TestExamplesCatchErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("vhosts")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.toml")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(src, []byte("\nhttp = "), []byte("\nhtpp = "), 1)
	if bytes.Equal(bad, src) {
		t.Fatal("examples/vhosts/config.toml has no http key to misspell")
	}
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = server.LoadValid(func() (*config.Config, error) { return config.Load(path) })
	if err == nil || !strings.Contains(err.Error(), `unknown key "server.htpp"`) {
		t.Fatalf("a config with a misspelt key: got %v, want an unknown-key error", err)
	}
}

// TestExampleScripts checks that every shell script is executable and
// parses (bash -n), since they are run by hand, not by the tests.
func TestExampleScripts(t *testing.T) {
	bash := testenv.LookPath(t, "bash", "bash")
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".sh" {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", path)
		}
		if out, err := exec.Command(bash, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", path, err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
