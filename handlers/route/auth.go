package route

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Verdict is the outcome of a Basic auth check.
type Verdict uint8

// The verdicts: Granted lets the request on; Denied is a 401 with the
// realm; Throttled is a 429: the client failed too often lately and no
// hash is computed for it.
const (
	Denied Verdict = iota
	Granted
	Throttled
)

// Auth is one htpasswd file of bcrypt hashes behind a realm.
type Auth struct {
	Realm string
	file  string
	users map[string][]byte
	guard *Guard
}

// LoadAuth reads an htpasswd file: "user:hash" lines, hashes made by
// `htpasswd -B` (bcrypt; Apache's MD5, SHA1 and crypt are refused, so a
// weak hash is found at load rather than at the first login).
func LoadAuth(file, realm string, g *Guard) (*Auth, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("htpasswd file: %w", err)
	}
	a := &Auth{Realm: realm, file: file, users: map[string][]byte{}, guard: g}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%s:%d: want \"user:bcrypt-hash\"", file, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("%s:%d: user %q: only bcrypt hashes are accepted (htpasswd -B): %v", file, n, user, err)
		}
		a.users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd file %s: %w", file, err)
	}
	if len(a.users) == 0 {
		return nil, fmt.Errorf("htpasswd file %s has no users", file)
	}
	return a, nil
}

// Challenge is the WWW-Authenticate value of a 401.
func (a *Auth) Challenge() string {
	return `Basic realm="` + strings.NewReplacer(`"`, `'`, "\\", "/").Replace(a.Realm) + `", charset="UTF-8"`
}

// Check verifies user and password for a request from client. A recent
// good answer is taken from the guard's cache; otherwise one bcrypt
// comparison runs, waiting for one of the guard's few slots (ctx ends the
// wait). A client past its failure allowance is Throttled before any hash.
func (a *Auth) Check(ctx context.Context, user, pass string, client netip.Addr) Verdict {
	g := a.guard
	key := a.cacheKey(user, pass)
	now := time.Now()
	if g.cached(key, now) {
		return Granted
	}
	if !g.failures.peek(client.String(), now) {
		return Throttled
	}
	hash, known := a.users[user]
	if !known {
		// Compare anyway, so a missing user takes as long as a wrong
		// password and names cannot be probed by timing.
		hash = g.decoy
	}
	ok, err := g.compare(ctx, hash, pass)
	if err != nil {
		return Denied
	}
	if ok && known {
		g.remember(key, now)
		return Granted
	}
	g.failures.take(client.String(), now)
	return Denied
}

// cacheKey binds the credentials to this file's hash for the user, so a
// password changed in the file (and reloaded) is not granted from cache.
func (a *Auth) cacheKey(user, pass string) [32]byte {
	h := sha256.New()
	h.Write([]byte(a.file))
	h.Write([]byte{0})
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(pass))
	h.Write([]byte{0})
	h.Write(a.users[user])
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// Guard is the node's defence around bcrypt, shared by every Auth: a
// short-lived cache of good answers, a bound on concurrent comparisons,
// and a per-client allowance of failures.
type Guard struct {
	// TTL is how long a good answer is kept; MaxEntries bounds the cache.
	TTL        time.Duration
	MaxEntries int

	slots chan struct{}
	decoy []byte
	// hashes counts bcrypt comparisons run, for metrics and tests.
	hashes atomic.Int64

	failures *buckets

	// mu guards good.
	mu   sync.Mutex
	good map[[32]byte]time.Time
}

// Failure allowance per client: a burst of 10 wrong passwords, then one
// more every 6 s (10 a minute), past which attempts are answered 429
// without computing a hash.
const (
	failureBurst = 10
	failureRate  = 1.0 / 6
)

// NewGuard returns a guard with a 2-minute cache of 4096 answers and at
// most half the CPUs (at least one) comparing at once.
func NewGuard() *Guard {
	n := runtime.GOMAXPROCS(0) / 2
	if n < 1 {
		n = 1
	}
	decoy, _ := bcrypt.GenerateFromPassword([]byte("shoal decoy password"), bcrypt.MinCost)
	return &Guard{
		TTL:        2 * time.Minute,
		MaxEntries: 4096,
		slots:      make(chan struct{}, n),
		decoy:      decoy,
		failures:   newBuckets(failureRate, failureBurst),
		good:       map[[32]byte]time.Time{},
	}
}

// Hashes is how many bcrypt comparisons the guard has run.
func (g *Guard) Hashes() int64 { return g.hashes.Load() }

var errBusy = errors.New("route: auth check abandoned")

func (g *Guard) compare(ctx context.Context, hash []byte, pass string) (bool, error) {
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return false, errBusy
	}
	defer func() { <-g.slots }()
	g.hashes.Add(1)
	return bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil, nil
}

func (g *Guard) cached(key [32]byte, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	exp, ok := g.good[key]
	if ok && now.After(exp) {
		delete(g.good, key)
		return false
	}
	return ok
}

func (g *Guard) remember(key [32]byte, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.good) >= g.MaxEntries {
		g.evict(now)
	}
	g.good[key] = now.Add(g.TTL)
}

// evict drops expired answers, and if that frees nothing, half of the
// rest (map order is random, so the choice is too).
func (g *Guard) evict(now time.Time) {
	for k, exp := range g.good {
		if now.After(exp) {
			delete(g.good, k)
		}
	}
	for k := range g.good {
		if len(g.good) < g.MaxEntries/2 {
			return
		}
		delete(g.good, k)
	}
}
