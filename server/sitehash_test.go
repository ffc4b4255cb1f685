package server

import (
	"crypto/sha256"
	"hash"
	"os"
	"path/filepath"
	"testing"
	"time"

	"shoal/server/config"
)

// siteCfg is a one-site config whose root is a fresh folder holding
// index.html, a page and a CGI folder inside the root.
func siteCfg(t *testing.T) (*config.Config, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "www")
	for name, body := range map[string]string{
		"index.html":       "hello",
		"about.tmpl":       "{{.Node.Name}}",
		"cgi-bin/run.sh":   "#!/bin/sh\n",
		"assets/app.css":   "body{}",
		".git/HEAD":        "ref: main",
		"assets/.DS_Store": "x",
	} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Defaults()
	cfg.Dir = dir
	sc := config.DefaultSite()
	sc.Root = root
	sc.CGI = []config.CGI{{Prefix: "/cgi-bin/", Dir: filepath.Join(root, "cgi-bin")}}
	cfg.Sites = []config.Site{sc}
	return cfg, root
}

func TestSiteHashFollowsNamesAndSizes(t *testing.T) {
	write := func(p, body string) func(*testing.T, *config.Config, string) {
		return func(t *testing.T, _ *config.Config, root string) {
			if err := os.WriteFile(filepath.Join(root, p), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name    string
		change  func(t *testing.T, cfg *config.Config, root string)
		differs bool
	}{
		{"nothing", func(*testing.T, *config.Config, string) {}, false},
		{"file added", write("new.html", "x"), true},
		{"file resized", write("index.html", "hello, world"), true},
		{"page added", write("contact.tmpl", "x"), true},
		{"file removed", func(t *testing.T, _ *config.Config, root string) { os.Remove(filepath.Join(root, "assets/app.css")) }, true},
		{"file renamed", func(t *testing.T, _ *config.Config, root string) {
			os.Rename(filepath.Join(root, "index.html"), filepath.Join(root, "index.htm"))
		}, true},
		{"cgi script added", write("cgi-bin/other.sh", "x"), true},
		{"site config changed", func(_ *testing.T, cfg *config.Config, _ string) { cfg.Sites[0].Browse = true }, true},
		{"same size, new content", write("index.html", "HELLO"), false},
		{"touched", func(t *testing.T, _ *config.Config, root string) {
			os.Chtimes(filepath.Join(root, "index.html"), time.Now(), time.Now().Add(-time.Hour))
		}, false},
		{"dotfile changed", write(".git/HEAD", "ref: another-branch"), false},
		{"root moved", func(t *testing.T, cfg *config.Config, root string) {
			moved := root + "-elsewhere"
			if err := os.Rename(root, moved); err != nil {
				t.Fatal(err)
			}
			cfg.Sites[0].Root = moved
			cfg.Sites[0].CGI[0].Dir = filepath.Join(moved, "cgi-bin")
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, root := siteCfg(t)
			before := siteHashes(cfg)["default"]
			tc.change(t, cfg, root)
			after := siteHashes(cfg)["default"]
			if (before != after) != tc.differs {
				t.Errorf("hash %08x -> %08x, want differs=%v", before, after, tc.differs)
			}
		})
	}
}

func TestSiteHashPerSite(t *testing.T) {
	cfg, root := siteCfg(t)
	other := config.DefaultSite()
	other.Hosts = []string{"blog.example"}
	other.Root = t.TempDir()
	cfg.Sites = append(cfg.Sites, other)
	before := siteHashes(cfg)
	if len(before) != 2 || before["default"] == before["blog.example"] {
		t.Fatalf("hashes %v", before)
	}
	if err := os.WriteFile(filepath.Join(root, "new.html"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	after := siteHashes(cfg)
	if after["default"] == before["default"] || after["blog.example"] != before["blog.example"] {
		t.Errorf("a file under one root changed %v -> %v", before, after)
	}
}

func TestSiteHashWalkBounded(t *testing.T) {
	root := t.TempDir()
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(root, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h1, h2 := newSum(), newSum()
	budget := 10
	hashTree(h1, "root", root, &budget)
	if budget >= 0 {
		t.Fatalf("budget %d: the walk did not stop at the bound", budget)
	}
	budget = 10
	hashTree(h2, "root", root, &budget)
	if string(h1.Sum(nil)) != string(h2.Sum(nil)) {
		t.Error("a bounded walk is not repeatable")
	}
}

func newSum() hash.Hash { return sha256.New() }
