package session

import (
	"bytes"
	"encoding/base64"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestKeysConfigured(t *testing.T) {
	h, b := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16)
	keys, err := Keys([]string{base64.StdEncoding.EncodeToString(h), base64.RawURLEncoding.EncodeToString(b)}, []byte("secret"), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !bytes.Equal(keys[0], h) || !bytes.Equal(keys[1], b) {
		t.Errorf("configured keys not used as given: %x", keys)
	}
	for name, cfg := range map[string][]string{
		"odd":        {base64.StdEncoding.EncodeToString(h)},
		"not base64": {"!!!", base64.StdEncoding.EncodeToString(b)},
		"short":      {base64.StdEncoding.EncodeToString(b), base64.StdEncoding.EncodeToString(b)},
	} {
		if _, err := Keys(cfg, nil, ""); err == nil || !strings.Contains(err.Error(), "session.keys") {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func TestKeysFromSecret(t *testing.T) {
	a1, err := Keys(nil, []byte("0123456789abcdef"), "")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := Keys(nil, []byte("0123456789abcdef"), "")
	b, _ := Keys(nil, []byte("fedcba9876543210"), "")
	if len(a1) != 2 || !bytes.Equal(a1[0], a2[0]) || !bytes.Equal(a1[1], a2[1]) {
		t.Errorf("HKDF keys differ between calls with one secret")
	}
	if bytes.Equal(a1[0], b[0]) || bytes.Equal(a1[0][:32], a1[1]) {
		t.Errorf("HKDF keys not distinct")
	}
	if _, err := NewStore(Options{Keys: a1}); err != nil {
		t.Errorf("derived keys rejected: %v", err)
	}
}

func TestKeysFile(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, ".shoal", "session-keys")

	first, err := Keys(nil, nil, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(keyFile)); di.Mode().Perm()&0o077 != 0 {
		t.Errorf("key folder mode %04o", di.Mode().Perm())
	}
	before, _ := os.ReadFile(keyFile)

	// A restart reads the same pair: sessions survive.
	second, err := Keys(nil, nil, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(keyFile)
	if !bytes.Equal(before, after) || !bytes.Equal(first[0], second[0]) || !bytes.Equal(first[1], second[1]) {
		t.Fatalf("key file not reused")
	}
	s1, err := NewStore(Options{Keys: first})
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := NewStore(Options{Keys: second})
	rec := httptest.NewRecorder()
	s1.Replace(rec, httptest.NewRequest("GET", "/", nil), "k=v")
	if got := s2.Encoded(requestWithCookie(rec.Result().Cookies()[0])); got != "k=v" {
		t.Errorf("session across restart: %q", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(keyFile))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	// Open to others: refused rather than used.
	os.Chmod(keyFile, 0o644)
	if _, err := Keys(nil, nil, keyFile); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("0644 key file: err %v", err)
	}
}

// TestKeysFileRace: peers started at once from one folder agree.
func TestKeysFileRace(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "k", "session-keys")
	const n = 8
	results := make([][][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Keys(nil, nil, keyFile)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !bytes.Equal(results[i][0], results[0][0]) {
			t.Errorf("caller %d got a different pair", i)
		}
	}
}

func TestKeysNone(t *testing.T) {
	if _, err := Keys(nil, nil, ""); err == nil {
		t.Error("no source of keys accepted")
	}
}
