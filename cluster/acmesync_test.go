package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"shoal/internal/acme"
)

// acmeNodes starts n nodes with short ACME timings, each serving a
// storage of its own.
func acmeNodes(t *testing.T, n int) ([]*testNode, []*acme.Storage) {
	t.Helper()
	nodes := startCluster(t, n)
	var stores []*acme.Storage
	for _, nd := range nodes {
		stores = append(stores, serveACME(t, nd))
	}
	return nodes, stores
}

func serveACME(t *testing.T, n *testNode) *acme.Storage {
	s := &n.c.acme
	s.lease, s.renew, s.grace = time.Minute, 100*time.Millisecond, 500*time.Millisecond
	s.ackWait, s.askWait, s.poll = time.Second, time.Second, 50*time.Millisecond
	st := acme.NewStorage(t.TempDir(), nil)
	n.c.ServeACME(st)
	return st
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestACMELockExclusive: nodes that all want one name hold it one at a
// time, and each gets it.
func TestACMELockExclusive(t *testing.T) {
	nodes, _ := acmeNodes(t, 3)
	var holding, most atomic.Int32
	var wg sync.WaitGroup
	for _, n := range nodes {
		for range 2 { // two callers per node: in-process exclusion too
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := ctxFor(t, 20*time.Second)
				for range 3 {
					if err := n.c.Lock(ctx, "issue_cert_a.test"); err != nil {
						t.Errorf("%s: lock: %v", n.name, err)
						return
					}
					now := holding.Add(1)
					for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
					}
					time.Sleep(5 * time.Millisecond) // hold it a moment: overlap would show
					holding.Add(-1)
					if err := n.c.Unlock(ctx, "issue_cert_a.test"); err != nil {
						t.Errorf("%s: unlock: %v", n.name, err)
					}
				}
			}()
		}
	}
	wg.Wait()
	if m := most.Load(); m != 1 {
		t.Fatalf("%d holders at once, want 1", m)
	}
	// Another name is independent of the first.
	ctx := ctxFor(t, 5*time.Second)
	if err := nodes[1].c.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].c.Lock(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := nodes[0].c.Lock(short, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second holder of x: %v, want a timeout", err)
	}
}

// TestACMELockReleasedOnDeath: a lock whose holder crashes is free again
// once the holder is found dead (the lease is a minute here), and a lock
// held while its granter crashes stays held under the next granter.
func TestACMELockReleasedOnDeath(t *testing.T) {
	t.Run("holder", func(t *testing.T) {
		nodes, _ := acmeNodes(t, 3)
		ctx := ctxFor(t, 20*time.Second)
		if err := nodes[1].c.Lock(ctx, "n"); err != nil {
			t.Fatal(err)
		}
		nodes[1].crash()
		start := time.Now()
		if err := nodes[2].c.Lock(ctx, "n"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Fatalf("took %v: released by the lease, not the death", d)
		}
	})
	t.Run("granter", func(t *testing.T) {
		nodes, _ := acmeNodes(t, 3)
		if owner := nodes[1].c.acmeOwner(); owner != "n0" {
			t.Fatalf("owner %s, want the oldest, n0", owner)
		}
		ctx := ctxFor(t, 20*time.Second)
		if err := nodes[1].c.Lock(ctx, "n"); err != nil {
			t.Fatal(err)
		}
		nodes[0].crash()
		eventually(t, 10*time.Second, "n0 dead", func() bool {
			return nodes[2].c.acmeOwner() == "n1" && nodes[1].c.acmeOwner() == "n1"
		})
		// n1 holds it through the takeover: n2 must not get it.
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := nodes[2].c.Lock(short, "n"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("n2 took a lock n1 holds: %v", err)
		}
		if err := nodes[1].c.Unlock(ctx, "n"); err != nil {
			t.Fatal(err)
		}
		if err := nodes[2].c.Lock(ctx, "n"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestACMEPublish: Publish returns after every peer stored the key (no
// waiting on the peers' side), deletes too, and skips a peer that does
// not answer within the bound.
func TestACMEPublish(t *testing.T) {
	nodes, stores := acmeNodes(t, 3)
	ctx := ctxFor(t, 10*time.Second)
	val := []byte("-----BEGIN EC PRIVATE KEY-----\nsecret\n")
	if err := nodes[0].c.Publish(ctx, "certificates/ca/a.test/a.test.key", val); err != nil {
		t.Fatal(err)
	}
	for i, st := range stores[1:] {
		got, err := st.Local(ctx, "certificates/ca/a.test/a.test.key")
		if err != nil || !bytes.Equal(got, val) {
			t.Fatalf("node %d after Publish: %q, %v", i+1, got, err)
		}
	}
	if err := nodes[1].c.Publish(ctx, "certificates/ca/a.test/a.test.key", nil); err != nil {
		t.Fatal(err)
	}
	for i, st := range []*acme.Storage{stores[0], stores[2]} {
		if _, err := st.Local(ctx, "certificates/ca/a.test/a.test.key"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("store %d after delete: %v", i, err)
		}
	}
	// A bad key is refused by the receiver, not written outside its folder.
	if err := nodes[0].c.Publish(ctx, "../escape", val); err != nil {
		t.Fatal(err)
	}
	// A crashed peer still counted alive is skipped after ackWait.
	nodes[2].crash()
	start := time.Now()
	if err := nodes[0].c.Publish(ctx, "k", val); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("publish with a dead peer took %v", d)
	}
	if got, _ := stores[1].Local(ctx, "k"); !bytes.Equal(got, val) {
		t.Fatalf("live peer lacks k: %q", got)
	}
}

// TestACMEFetchLateJoiner: a node that joins later gets a key from its
// peers; a key nobody has is fs.ErrNotExist.
func TestACMEFetchLateJoiner(t *testing.T) {
	nodes, _ := acmeNodes(t, 2)
	ctx := ctxFor(t, 10*time.Second)
	val := []byte("certificate")
	if err := nodes[0].c.Publish(ctx, "certificates/ca/b.test/b.test.crt", val); err != nil {
		t.Fatal(err)
	}
	late := startNode(t, "late", []string{nodes[0].c.GossipAddr()})
	serveACME(t, late)
	converged(t, append(nodes, late)...)
	got, err := late.c.Fetch(ctx, "certificates/ca/b.test/b.test.crt")
	if err != nil || !bytes.Equal(got, val) {
		t.Fatalf("fetch: %q, %v", got, err)
	}
	start := time.Now()
	if _, err := late.c.Fetch(ctx, "certificates/ca/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing key: %v, want fs.ErrNotExist", err)
	}
	if d := time.Since(start); d > time.Second/2 {
		t.Errorf("a key every peer lacks took %v: the answers were not counted", d)
	}
}

// TestACMEWaitFirstJoin: a node alone, with a peer to join, takes no
// lock before it joined (or joinWait passed).
func TestACMEWaitFirstJoin(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	a := startNode(t, "a", []string{addr})
	a.c.acme.joinWait = time.Minute
	got := make(chan error, 1)
	go func() { got <- a.c.Lock(ctxFor(t, time.Minute), "n") }()
	select {
	case err := <-got:
		t.Fatalf("locked while alone: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	startNode(t, "b", []string{a.c.GossipAddr()}, func(o *Options) { o.Bind = addr })
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no lock after the join")
	}
}

// FuzzDecodeACMEMsg: whatever a peer sends decodes without panic, and a
// decoded message encodes back to the same bytes.
func FuzzDecodeACMEMsg(f *testing.F) {
	for _, m := range []*acmeMsg{
		{Op: acmeLock, Flags: acmeFlagRenew, ID: 7, Boot: 9, From: "n1", Key: "issue_cert_a.test"},
		{Op: acmePublish, ID: 1, From: "n0", Key: "k", Value: []byte("v")},
		{Op: acmeReply, Status: acmeNotFound, ID: 1 << 40, From: "n2"},
	} {
		f.Add(m.encode()[1:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeACMEMsg(b)
		if err != nil {
			return
		}
		if m.From == "" || len(m.Value) > maxACMEValue || len(m.Key) > maxACMEKey {
			t.Fatalf("accepted %+v", m)
		}
		again, err := decodeACMEMsg(m.encode()[1:])
		if err != nil || !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip: %+v -> %+v (%v)", m, again, err)
		}
	})
}

// freeUDPPort is a loopback port free for both TCP and UDP a moment ago
// (memberlist binds both).
func freeUDPPort(t *testing.T) int {
	t.Helper()
	for {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		c.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
}

// TestACMELateRenewal: a renewal that arrives after its holder's Unlock
// does not take the lock back (it would stall the others a whole lease).
func TestACMELateRenewal(t *testing.T) {
	nodes, _ := acmeNodes(t, 2)
	ctx := ctxFor(t, 10*time.Second)
	if err := nodes[1].c.Lock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	boot := nodes[1].c.boot
	if err := nodes[1].c.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	owner := nodes[0].c
	eventually(t, 5*time.Second, "unlock reached the owner", func() bool {
		owner.acme.mu.Lock()
		defer owner.acme.mu.Unlock()
		_, held := owner.acme.grants["n"]
		return !held
	})
	if st := owner.grantLock("n", "n1", boot, 1, true, time.Now()); st != acmeBusy {
		t.Fatalf("late renewal answered %d, want busy", st)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := owner.Lock(short, "n"); err != nil {
		t.Fatalf("owner cannot take the released lock: %v", err)
	}
}

// TestACMEUnlockAfterNextLock: a node's unlock and its next lock request
// travel on streams of their own; an unlock that reaches the granter
// after the next hold was granted releases only the hold it was sent
// for, and a late renewal of the old hold is refused.
func TestACMEUnlockAfterNextLock(t *testing.T) {
	nodes, _ := acmeNodes(t, 3)
	owner := nodes[0].c
	boot := nodes[1].c.boot
	now := time.Now()
	for _, step := range []struct {
		what   string
		from   string
		hold   uint64
		renew  bool
		unlock bool
		want   byte
	}{
		{what: "n1 takes its first hold", from: "n1", hold: 1, want: acmeOK},
		{what: "n2 waits", from: "n2", hold: 7, want: acmeBusy},
		{what: "n1's next hold, its unlock of the first still on the way", from: "n1", hold: 2, want: acmeOK},
		{what: "the first hold's unlock arrives", from: "n1", hold: 1, unlock: true},
		{what: "n2 still waits", from: "n2", hold: 7, want: acmeBusy},
		{what: "a late renewal of the first hold", from: "n1", hold: 1, renew: true, want: acmeBusy},
		{what: "the second hold renews", from: "n1", hold: 2, renew: true, want: acmeOK},
		{what: "the second hold's unlock", from: "n1", hold: 2, unlock: true},
		{what: "n2 takes it", from: "n2", hold: 7, want: acmeOK},
	} {
		b := boot
		if step.from == "n2" {
			b = nodes[2].c.boot
		}
		if step.unlock {
			owner.releaseLock("n", step.from, b, step.hold)
			continue
		}
		if got := owner.grantLock("n", step.from, b, step.hold, step.renew, now); got != step.want {
			t.Fatalf("%s: answered %d, want %d", step.what, got, step.want)
		}
	}
}

// TestACMEPublishBeforeServe: a node joins a moment before its ACME
// starts; a key published in between (a challenge token) is in its
// storage once it does.
func TestACMEPublishBeforeServe(t *testing.T) {
	nodes := startCluster(t, 2)
	serveACME(t, nodes[0])
	ctx := ctxFor(t, 10*time.Second)
	if err := nodes[0].c.Publish(ctx, "acme/ca/challenge_tokens/a.test.json", []byte("token")); err != nil {
		t.Fatal(err)
	}
	st := serveACME(t, nodes[1])
	if got, err := st.Local(ctx, "acme/ca/challenge_tokens/a.test.json"); err != nil || string(got) != "token" {
		t.Fatalf("after ServeACME: %q, %v", got, err)
	}
}
