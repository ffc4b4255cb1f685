package acme

import (
	"context"
	"fmt"
	"io/fs"
	"sync"
)

// fakeNet is an in-memory cluster for tests: what the real transport must
// do (a lock released when its holder dies, publish to every live node
// before returning, fetch from any live node), with no network.
type fakeNet struct {
	// mu guards nodes, holders and changed.
	mu      sync.Mutex
	nodes   []*fakeNode
	holders map[string]*fakeNode
	changed chan struct{} // closed and replaced at every lock change
}

func newFakeNet() *fakeNet {
	return &fakeNet{holders: map[string]*fakeNode{}, changed: make(chan struct{})}
}

type fakeNode struct {
	net     *fakeNet
	name    string
	dead    bool
	storage *Storage // set once its Manager exists
}

// join adds a node; attach its storage before it publishes or is asked.
func (n *fakeNet) join(name string) *fakeNode {
	n.mu.Lock()
	defer n.mu.Unlock()
	fn := &fakeNode{net: n, name: name}
	n.nodes = append(n.nodes, fn)
	return fn
}

func (fn *fakeNode) attach(s *Storage) {
	fn.net.mu.Lock()
	defer fn.net.mu.Unlock()
	fn.storage = s
}

// kill makes a node dead: its locks are released, it no longer receives.
func (n *fakeNet) kill(fn *fakeNode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fn.dead = true
	for name, h := range n.holders {
		if h == fn {
			delete(n.holders, name)
		}
	}
	n.notifyLocked()
}

func (n *fakeNet) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

func (fn *fakeNode) Lock(ctx context.Context, name string) error {
	n := fn.net
	for {
		n.mu.Lock()
		if fn.dead {
			n.mu.Unlock()
			return fmt.Errorf("fake: %s is dead", fn.name)
		}
		if h := n.holders[name]; h == nil {
			n.holders[name] = fn
			n.mu.Unlock()
			return nil
		}
		wait := n.changed
		n.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wait:
		}
	}
}

func (fn *fakeNode) Unlock(_ context.Context, name string) error {
	n := fn.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.holders[name] != fn {
		return fmt.Errorf("fake: %s does not hold %s", fn.name, name)
	}
	delete(n.holders, name)
	n.notifyLocked()
	return nil
}

// peers are the other live nodes with a storage.
func (fn *fakeNode) peers() []*fakeNode {
	n := fn.net
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*fakeNode
	for _, p := range n.nodes {
		if p != fn && !p.dead && p.storage != nil {
			out = append(out, p)
		}
	}
	return out
}

func (fn *fakeNode) Publish(_ context.Context, key string, value []byte) error {
	for _, p := range fn.peers() {
		if err := p.storage.Receive(key, value); err != nil {
			return fmt.Errorf("fake: %s: %w", p.name, err)
		}
	}
	return nil
}

func (fn *fakeNode) Fetch(ctx context.Context, key string) ([]byte, error) {
	for _, p := range fn.peers() {
		if b, err := p.storage.Local(ctx, key); err == nil {
			return b, nil
		}
	}
	return nil, fs.ErrNotExist
}

var _ Cluster = (*fakeNode)(nil)
