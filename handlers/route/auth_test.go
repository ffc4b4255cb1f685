package route

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func writeHtpasswd(t *testing.T, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# made by the test\n\n")
	for u, p := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(u + ":" + string(h) + "\n")
	}
	f := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAuthVerdicts(t *testing.T) {
	g := NewGuard()
	a, err := LoadAuth(writeHtpasswd(t, map[string]string{"alice": "s3cret"}), "office", g)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	client := netip.MustParseAddr("192.0.2.1")
	if v := a.Check(ctx, "alice", "s3cret", client); v != Granted {
		t.Fatalf("good password: %v", v)
	}
	if v := a.Check(ctx, "alice", "s3cret", client); v != Granted || g.Hashes() != 1 {
		t.Fatalf("second good check: %v after %d hashes, want granted from cache after 1", v, g.Hashes())
	}
	if v := a.Check(ctx, "alice", "wrong", client); v != Denied {
		t.Fatalf("wrong password: %v", v)
	}
	if v := a.Check(ctx, "mallory", "s3cret", client); v != Denied || g.Hashes() != 3 {
		t.Fatalf("unknown user: %v after %d hashes, want denied after a decoy hash", v, g.Hashes())
	}
	if got := a.Challenge(); got != `Basic realm="office", charset="UTF-8"` {
		t.Errorf("challenge %q", got)
	}
}

// A password-guessing loop costs at most the failure allowance in bcrypt
// runs; the rest are throttled without a hash, and another client and
// cached identities are unaffected.
func TestAuthGuessingIsBounded(t *testing.T) {
	g := NewGuard()
	a, err := LoadAuth(writeHtpasswd(t, map[string]string{"alice": "s3cret"}), "r", g)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	attacker := netip.MustParseAddr("203.0.113.9")
	start := time.Now()
	throttled := 0
	for i := 0; i < 500; i++ {
		if a.Check(ctx, "alice", "guess", attacker) == Throttled {
			throttled++
		}
	}
	allowance := failureBurst + int(time.Since(start).Seconds()*failureRate) + 1
	if h := g.Hashes(); h > int64(allowance) {
		t.Fatalf("%d bcrypt runs for 500 guesses, want at most %d", h, allowance)
	}
	if throttled < 500-allowance {
		t.Fatalf("only %d of 500 guesses throttled", throttled)
	}
	if v := a.Check(ctx, "alice", "s3cret", netip.MustParseAddr("192.0.2.1")); v != Granted {
		t.Fatalf("another client: %v", v)
	}
	before := g.Hashes()
	for i := 0; i < 100; i++ {
		if v := a.Check(ctx, "alice", "s3cret", netip.MustParseAddr("192.0.2.1")); v != Granted {
			t.Fatalf("cached identity: %v", v)
		}
	}
	if g.Hashes() != before {
		t.Fatalf("a cached identity ran %d more hashes", g.Hashes()-before)
	}
}

func TestAuthChangedPasswordNotCached(t *testing.T) {
	g := NewGuard()
	a1, _ := LoadAuth(writeHtpasswd(t, map[string]string{"alice": "old"}), "r", g)
	client := netip.MustParseAddr("192.0.2.1")
	if a1.Check(context.Background(), "alice", "old", client) != Granted {
		t.Fatal("old password refused")
	}
	a2, _ := LoadAuth(writeHtpasswd(t, map[string]string{"alice": "new"}), "r", g)
	a2.file = a1.file // the same file, reloaded with a new hash
	if v := a2.Check(context.Background(), "alice", "old", client); v != Denied {
		t.Fatalf("old password after the change: %v, want denied", v)
	}
}

func TestAuthWaitEndsWithContext(t *testing.T) {
	g := NewGuard()
	a, _ := LoadAuth(writeHtpasswd(t, map[string]string{"alice": "x"}), "r", g)
	for i := 0; i < cap(g.slots); i++ {
		g.slots <- struct{}{} // every slot busy
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if v := a.Check(ctx, "alice", "x", netip.MustParseAddr("192.0.2.1")); v != Denied || g.Hashes() != 0 {
		t.Fatalf("check with all slots busy and the client gone: %v, %d hashes", v, g.Hashes())
	}
}

func TestLoadAuthErrors(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"md5":   "bob:$apr1$abc$def\n",
		"sha":   "bob:{SHA}abcdef=\n",
		"nocol": "bob\n",
		"empty": "# nobody\n",
	} {
		f := filepath.Join(dir, name)
		os.WriteFile(f, []byte(content), 0o600)
		if _, err := LoadAuth(f, "r", NewGuard()); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}
