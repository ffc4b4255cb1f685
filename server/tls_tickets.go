package server

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"sync"
	"time"
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

	// mu guards current.
	mu      sync.Mutex
	current [][32]byte // newest first

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
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
			// Rotation only fails when the system's randomness does; the
			// previous keys stay in use, which is safe.
			_ = k.rotate()
		}
	}
}

// rotate puts a fresh key in front and drops the oldest beyond kept.
func (k *ticketKeyRing) rotate() error {
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
