package server

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"shoal/server/config"
)

// Session tickets let a returning client skip the full handshake. Go
// rotates its own ticket key daily but accepts tickets for 7 days; a stolen
// key then decrypts a week of TLS 1.2 resumptions. shoal makes a new key
// every hour and forgets it after a day.
const (
	ticketRotation = time.Hour
	ticketKeysKept = 24
)

// ticketKeyRing encrypts and decrypts session tickets with keys it rotates
// itself. Its wrap/unwrap are installed as WrapSession/UnwrapSession, so
// every clone of the listener's tls.Config (net/http and quic-go make them)
// follows the rotation.
type ticketKeyRing struct {
	// keys holds the ring's keys and is used only for Encrypt/DecryptTicket,
	// which take its lock themselves.
	keys *tls.Config
	kept int

	// mu guards current, secret and epoch.
	mu      sync.Mutex
	current [][32]byte // newest first
	// secret, when set, makes the keys a function of it and the clock
	// (derivedTicketKeys), so every node sharing it holds the same ring
	// without exchanging anything; nil: random keys, this node only.
	secret []byte
	epoch  int64 // of current, when derived

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// newTicketKeyRing makes the first key and rotates every period (0: never,
// for tests that rotate by hand), keeping kept keys.
func newTicketKeyRing(period time.Duration, kept int) (*ticketKeyRing, error) {
	k := &ticketKeyRing{keys: &tls.Config{}, kept: kept, stop: make(chan struct{}), done: make(chan struct{})}
	if err := k.rotate(); err != nil {
		return nil, err
	}
	if period <= 0 {
		close(k.done)
		return k, nil
	}
	go k.run(period)
	return k, nil
}

func (k *ticketKeyRing) run(period time.Duration) {
	defer close(k.done)
	for {
		t := time.NewTimer(k.nextRotation(period, time.Now()))
		select {
		case <-k.stop:
			t.Stop()
			return
		case <-t.C:
			// Rotation only fails when the system's randomness does; the
			// previous keys stay in use, which is safe.
			_ = k.rotate()
		}
	}
}

// nextRotation is period for random keys; for derived ones, the start of
// the next epoch, so nodes rotate together.
func (k *ticketKeyRing) nextRotation(period time.Duration, now time.Time) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.secret == nil {
		return period
	}
	next := time.Unix((ticketEpoch(now)+1)*int64(ticketRotation/time.Second), 0)
	return next.Sub(now) + 100*time.Millisecond
}

// ticketEpoch numbers the ticketRotation-long periods since 1970.
func ticketEpoch(now time.Time) int64 { return now.Unix() / int64(ticketRotation/time.Second) }

// share makes the ring a function of secret (the cluster secret) and the
// clock from now on; nil goes back to random keys. Nodes with one secret
// then seal and open each other's tickets, so a client resumes on any
// node, and their keys rotate at the same epoch boundaries.
func (k *ticketKeyRing) share(secret []byte) error {
	k.mu.Lock()
	k.secret = secret
	k.mu.Unlock()
	if secret == nil {
		return nil
	}
	return k.setEpoch(ticketEpoch(time.Now()))
}

// setEpoch installs the derived keys of epoch.
func (k *ticketKeyRing) setEpoch(epoch int64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	keys, err := derivedTicketKeys(k.secret, epoch, k.kept)
	if err != nil {
		return err
	}
	k.current, k.epoch = keys, epoch
	k.keys.SetSessionTicketKeys(k.current)
	return nil
}

// derivedTicketKeys is the ring of epoch: its own key first (it seals),
// then the next epoch's (a peer whose clock is a little ahead seals with
// it), then kept-1 earlier ones. Each is HKDF-SHA256 of the secret with
// the epoch number, so a key reveals neither the secret nor another key.
func derivedTicketKeys(secret []byte, epoch int64, kept int) ([][32]byte, error) {
	keys := make([][32]byte, 0, kept+1)
	for _, e := range append([]int64{epoch, epoch + 1}, epochsBefore(epoch, kept-1)...) {
		var info [8]byte
		binary.BigEndian.PutUint64(info[:], uint64(e))
		b, err := hkdf.Key(sha256.New, secret, []byte("shoal tls session ticket key"), string(info[:]), 32)
		if err != nil {
			return nil, fmt.Errorf("tls: session ticket key: %w", err)
		}
		keys = append(keys, [32]byte(b))
	}
	return keys, nil
}

func epochsBefore(epoch int64, n int) []int64 {
	out := make([]int64, 0, n)
	for i := int64(1); i <= int64(n); i++ {
		out = append(out, epoch-i)
	}
	return out
}

// rotate moves to the next key: the clock's epoch for derived keys (the
// next epoch when the clock has not moved, as tests rotate by hand), else
// a fresh random key in front, dropping the oldest beyond kept.
func (k *ticketKeyRing) rotate() error {
	k.mu.Lock()
	shared, epoch := k.secret != nil, max(ticketEpoch(time.Now()), k.epoch+1)
	k.mu.Unlock()
	if shared {
		return k.setEpoch(epoch)
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("tls: session ticket key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.current = append([][32]byte{key}, k.current...)
	if len(k.current) > k.kept {
		k.current = k.current[:k.kept]
	}
	k.keys.SetSessionTicketKeys(k.current)
	return nil
}

func (k *ticketKeyRing) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	return k.keys.EncryptTicket(cs, ss)
}

func (k *ticketKeyRing) unwrap(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	return k.keys.DecryptTicket(identity, cs)
}

func (k *ticketKeyRing) close() {
	k.closeOnce.Do(func() { close(k.stop) })
	<-k.done
}

// shareTickets derives the session ticket keys from the cluster secret
// when the cluster is on or a secret is set (as the session keys are), so
// every node of the cluster opens every node's tickets.
func (n *Node) shareTickets(cfg *config.Config) error {
	if !cfg.Cluster.Enabled && cfg.Cluster.Secret == "" {
		return n.certs.tickets.share(nil)
	}
	secret, err := clusterSecret(cfg)
	if err != nil {
		return err
	}
	return n.certs.tickets.share(secret)
}
