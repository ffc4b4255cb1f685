package acme

import (
	"context"
	"errors"
	"io/fs"
	"testing"
)

// TestStorageReceive: keys from peers are stored, deleted by a nil value,
// and refused when they would leave the storage folder.
func TestStorageReceive(t *testing.T) {
	s := NewStorage(t.TempDir(), nil)
	ctx := context.Background()
	for _, key := range []string{"", "/etc/passwd", "../x", "a/../../x", "a//b", "a\\b", "./a"} {
		if err := s.Receive(key, []byte("x")); err == nil {
			t.Errorf("Receive(%q) accepted", key)
		}
		if _, err := s.Local(ctx, key); err == nil {
			t.Errorf("Local(%q) answered", key)
		}
	}
	if err := s.Receive("certificates/ca/a.test/a.test.crt", []byte("pem")); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Load(ctx, "certificates/ca/a.test/a.test.crt"); err != nil || string(b) != "pem" {
		t.Fatalf("Load = %q, %v", b, err)
	}
	if err := s.Receive("certificates/ca/a.test/a.test.crt", nil); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/a.test/a.test.crt") {
		t.Error("a nil value did not delete the key")
	}
	if err := s.Receive("never/stored", nil); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
}

// TestStorageFetch: a missing key is fetched from the peers and kept,
// except challenge tokens, which any client can make a node look up.
func TestStorageFetch(t *testing.T) {
	net := newFakeNet()
	a, b := net.join("a"), net.join("b")
	sa, sb := NewStorage(t.TempDir(), a), NewStorage(t.TempDir(), b)
	a.attach(sa)
	ctx := context.Background()
	for _, key := range []string{"certificates/ca/x.test/x.test.crt", "acme/ca/challenge_tokens/x.test.json"} {
		if err := sa.local.Store(ctx, key, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := sb.Load(ctx, "certificates/ca/x.test/x.test.crt"); err != nil || string(got) != "v" {
		t.Fatalf("fetched %q, %v", got, err)
	}
	if !sb.local.Exists(ctx, "certificates/ca/x.test/x.test.crt") {
		t.Error("a fetched key was not kept")
	}
	if _, err := sb.Load(ctx, "acme/ca/challenge_tokens/x.test.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("challenge token fetched from a peer: %v", err)
	}
}
