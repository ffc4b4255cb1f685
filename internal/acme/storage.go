package acme

import (
	"context"
	"errors"
	"io/fs"
	"strings"

	"github.com/caddyserver/certmagic"
)

// Cluster is what a cluster transport must provide so that every node
// shares one ACME state without a shared disk: a lock that only one node
// holds at a time, and a replicated key/value space. The values are ACME
// account keys, certificate private keys and challenge tokens, so the
// transport must be encrypted and authenticated (memberlist's encrypted
// TCP or peer_tls), never plain gossip.
type Cluster interface {
	// Lock blocks until this node holds the cluster-wide lock name, or ctx
	// ends. A lock whose holder leaves or is declared dead is released, so
	// another node can finish an order the dead one began.
	Lock(ctx context.Context, name string) error
	// Unlock releases a lock this node holds.
	Unlock(ctx context.Context, name string) error
	// Publish hands key=value (value nil: delete key) to every live peer
	// and returns once each has passed it to its Storage.Receive: a
	// challenge token must be answerable on every node before the CA is
	// asked to validate it.
	Publish(ctx context.Context, key string, value []byte) error
	// Fetch asks the peers for a key this node lacks (a node that joined
	// late); fs.ErrNotExist when none has it.
	Fetch(ctx context.Context, key string) ([]byte, error)
}

// Storage is certmagic's Storage for one node: keys live in files (0600,
// folders 0700) so they outlast a restart; with a Cluster every write is
// also published to the peers, a missing key is fetched from them, and
// locks are the cluster's, so one node orders a name at a time.
type Storage struct {
	local   *certmagic.FileStorage
	cluster Cluster // nil: this node alone, file locks
}

var _ certmagic.Storage = (*Storage)(nil)

// NewStorage keeps keys under dir; cluster may be nil.
func NewStorage(dir string, cluster Cluster) *Storage {
	return &Storage{local: &certmagic.FileStorage{Path: dir}, cluster: cluster}
}

// Receive stores a key a peer published (value nil: deletes it). The
// cluster transport calls it for every Publish it receives.
func (s *Storage) Receive(key string, value []byte) error {
	if !validKey(key) {
		return fs.ErrInvalid
	}
	if value == nil {
		err := s.local.Delete(context.Background(), key)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return s.local.Store(context.Background(), key, value)
}

// Local returns this node's copy of key, for the transport answering a
// peer's Fetch.
func (s *Storage) Local(ctx context.Context, key string) ([]byte, error) {
	if !validKey(key) {
		return nil, fs.ErrInvalid
	}
	return s.local.Load(ctx, key)
}

// validKey refuses keys that would leave the storage folder: keys come
// from peers, which are trusted but may be buggy.
func validKey(key string) bool {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return false
	}
	for _, part := range strings.Split(key, "/") {
		if part == ".." || part == "." || part == "" {
			return false
		}
	}
	return true
}

func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	if err := s.local.Store(ctx, key, value); err != nil {
		return err
	}
	if s.cluster != nil {
		return s.cluster.Publish(ctx, key, value)
	}
	return nil
}

func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	b, err := s.local.Load(ctx, key)
	if err == nil || s.cluster == nil || !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	return s.fetch(ctx, key)
}

// fetch gets key from the peers and keeps a copy. Challenge tokens are
// never fetched: they are published before the CA is asked, and any
// client can make a node look one up (a GET of
// /.well-known/acme-challenge/x with any Host), which must not turn into
// a question to every peer.
func (s *Storage) fetch(ctx context.Context, key string) ([]byte, error) {
	if strings.Contains(key, "/challenge_tokens/") {
		return nil, fs.ErrNotExist
	}
	b, err := s.cluster.Fetch(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := s.local.Store(ctx, key, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (s *Storage) Delete(ctx context.Context, key string) error {
	err := s.local.Delete(ctx, key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if s.cluster != nil {
		return s.cluster.Publish(ctx, key, nil)
	}
	return err
}

func (s *Storage) Exists(ctx context.Context, key string) bool {
	if s.local.Exists(ctx, key) {
		return true
	}
	if s.cluster == nil {
		return false
	}
	_, err := s.fetch(ctx, key)
	return err == nil
}

func (s *Storage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	return s.local.List(ctx, prefix, recursive)
}

func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	info, err := s.local.Stat(ctx, key)
	if err == nil || s.cluster == nil || !errors.Is(err, fs.ErrNotExist) {
		return info, err
	}
	if _, ferr := s.fetch(ctx, key); ferr != nil {
		return info, err
	}
	return s.local.Stat(ctx, key)
}

func (s *Storage) Lock(ctx context.Context, name string) error {
	if s.cluster != nil {
		return s.cluster.Lock(ctx, name)
	}
	return s.local.Lock(ctx, name)
}

func (s *Storage) Unlock(ctx context.Context, name string) error {
	if s.cluster != nil {
		return s.cluster.Unlock(ctx, name)
	}
	return s.local.Unlock(ctx, name)
}

func (s *Storage) String() string { return "shoal:" + s.local.Path }
