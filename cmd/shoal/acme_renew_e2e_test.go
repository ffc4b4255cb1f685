package main

import (
	"encoding/base64"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/internal/acme/acmetest"
)

// acmeSecret is the cluster secret of the ACME cluster tests.
func acmeSecret() string {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i*7 + 3)
	}
	return base64.StdEncoding.EncodeToString(key)
}

// startACMETrio starts nodes b and c, which wait (a bounded while) for
// their first join before they take a lock, then a, which joins them: the
// three are one cluster before anyone orders, b the oldest, so it grants
// the locks. base gives what they share; perNode, when not nil, changes
// a node's config.
func startACMETrio(t *testing.T, p *acmetest.Pebble, base acmeNodeConfig, perNode func(*acmeNodeConfig),
	aHTTP, aHTTPS string) []*anode {
	t.Helper()
	aGossip := freeAddr(t)
	node := func(name, httpAddr, httpsAddr, gossip, join string) *anode {
		c := base
		c.name, c.http, c.https, c.gossip, c.join, c.secret = name, httpAddr, httpsAddr, gossip, join, acmeSecret()
		if perNode != nil {
			perNode(&c)
		}
		return startACMENodeWith(t, c, p)
	}
	b := node("b", freeAddr(t), freeAddr(t), freeAddr(t), aGossip)
	c := node("c", freeAddr(t), freeAddr(t), freeAddr(t), aGossip)
	a := node("a", aHTTP, aHTTPS, aGossip, b.gossip)
	return []*anode{a, b, c}
}

// sameSerial reports whether two hex serials (Pebble's log, a node's
// certificate) are one number.
func sameSerial(a, b string) bool {
	x, ok1 := new(big.Int).SetString(a, 16)
	y, ok2 := new(big.Int).SetString(b, 16)
	return ok1 && ok2 && x.Cmp(y) == 0
}

func totalOrders(nodes []*anode) int {
	total := 0
	for _, n := range nodes {
		total += n.orders()
	}
	return total
}

// TestE2EACMEClusterRenewsOnce: three shoal processes serve a name whose
// certificates Pebble issues for 40s, with a renew_before (60s) longer
// than that, so each is renewed at half its life. When the certificate is
// due, all three see it due; one renews it (Pebble issues exactly one
// more) and every node then serves the new serial.
func TestE2EACMEClusterRenewsOnce(t *testing.T) {
	const lifetime = 40 * time.Second
	ports := acmetest.FreePorts(t, 2)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: ports[0], TLSPort: ports[1], Validity: lifetime, NoARI: true})
	roots := p.IssuerRoots()
	names := []string{"renew.shoal.test"}
	nodes := startACMETrio(t, p, acmeNodeConfig{hosts: names, renewBefore: "60s"}, nil,
		"127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1]))

	first := waitSameSerials(t, nodes, names, roots)[names[0]]
	if got := p.Issued(); len(got) != 1 {
		t.Fatalf("Pebble issued %v before any renewal, want one certificate", got)
	}
	// Renewal is due 20s after issuance, the next one 20s after that: by
	// then every node must serve the second certificate.
	deadline := time.Now().Add(lifetime + 20*time.Second)
	var second string
	for {
		s := map[string]bool{}
		for _, n := range nodes {
			s[n.serial(names[0], roots)] = true
		}
		if len(s) == 1 && !s[first] && !s[""] {
			for k := range s {
				second = k
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes serve %v, want one renewed serial (first %s; Pebble issued %v)", s, first, p.Issued())
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	issued := p.Issued()
	if len(issued) != 2 || !sameSerial(issued[1], second) {
		t.Errorf("Pebble issued %v, want the first certificate and one renewal (%s)", issued, second)
	}
	if got := totalOrders(nodes); got != 2 {
		t.Errorf("nodes logged %d obtained certificates, want 2", got)
	}
}

// gate stands where Pebble validates http-01 and holds the CA's
// connections until released; then it passes them, and every later one,
// to a node's http listener. An order whose validation is held stays
// pending at the CA.
type gate struct {
	ln      net.Listener
	mu      sync.Mutex
	held    int
	target  string
	release chan struct{}
}

func newGate(t *testing.T, ln net.Listener) *gate {
	g := &gate{ln: ln, release: make(chan struct{})}
	go g.serve()
	t.Cleanup(func() { ln.Close() })
	return g
}

func (g *gate) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		g.held++
		g.mu.Unlock()
		go g.pass(c)
	}
}

func (g *gate) pass(c net.Conn) {
	defer c.Close()
	<-g.release
	g.mu.Lock()
	target := g.target
	g.mu.Unlock()
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(up, c) }()
	_, _ = io.Copy(c, up)
}

func (g *gate) connections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// open passes held and later connections to target.
func (g *gate) open(target string) {
	g.mu.Lock()
	g.target = target
	g.mu.Unlock()
	close(g.release)
}

// TestE2EACMEOrdererKilled: three shoal processes; the CA validates
// through a gate that holds its requests, so the first order stays
// pending. The node holding the order's lock is killed with SIGKILL; once
// the others see it dead one of them takes the lock and completes an
// order, and the survivors that serve the name serve the certificate.
// Node b grants the locks: when it manages the name too it takes the
// lock first and its death hands the granting to the next oldest; when
// it serves no ACME name, a or c holds the order and b must see it dead.
func TestE2EACMEOrdererKilled(t *testing.T) {
	names := []string{"killed.shoal.test"}
	for _, tc := range []struct {
		name    string
		perNode func(*acmeNodeConfig)
	}{
		{"the lock granter orders", nil},
		{"another node orders", func(c *acmeNodeConfig) {
			if c.name == "b" {
				c.hosts = []string{"localhost"} // no ACME name: b only grants
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testOrdererKilled(t, names, tc.perNode) })
	}
}

// holdsOrderLock reports whether the node holds an order's lock now: it
// logged taking one more often than releasing one (an earlier attempt may
// have taken and released it).
func (n *anode) holdsOrderLock() bool {
	out := n.out.String()
	return strings.Count(out, "certmagic: lock acquired") > strings.Count(out, "certmagic: releasing lock")
}

func testOrdererKilled(t *testing.T, names []string, perNode func(*acmeNodeConfig)) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := acmetest.FreePorts(t, 1)[0] // tls-alpn-01 is off: nothing answers there
	p := acmetest.Start(t, acmetest.Options{HTTPPort: ln.Addr().(*net.TCPAddr).Port, TLSPort: dead})
	g := newGate(t, ln)
	roots := p.IssuerRoots()
	base := acmeNodeConfig{hosts: names, challenges: []string{"http-01"}}
	nodes := startACMETrio(t, p, base, perNode, freeAddr(t), freeAddr(t))

	deadline := time.Now().Add(90 * time.Second)
	for g.connections() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the CA never came to validate")
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	// The holder's log line was written before the CA came; it may still
	// be on its way through the pipe.
	var holders []*anode
	for until := time.Now().Add(10 * time.Second); ; {
		holders = holders[:0]
		for _, n := range nodes {
			if n.holdsOrderLock() {
				holders = append(holders, n)
			}
		}
		if len(holders) == 1 || time.Now().After(until) {
			break
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	if len(holders) != 1 {
		t.Fatalf("%d nodes hold the order lock while the order is pending, want 1", len(holders))
	}
	holder := holders[0]
	t.Logf("killing %s, which holds the order", holder.name)
	holder.kill()
	var survivors, serving []*anode
	for _, n := range nodes {
		if n == holder {
			continue
		}
		survivors = append(survivors, n)
		if perNode == nil || n.name != "b" {
			serving = append(serving, n)
		}
	}
	g.open(survivors[0].http) // every node has every order's token

	serial := waitSameSerials(t, serving, names, roots)[names[0]]
	if got := p.Issued(); len(got) != 1 || !sameSerial(got[0], serial) {
		t.Errorf("Pebble issued %v, want one certificate (%s)", got, serial)
	}
	if got := totalOrders(survivors); got != 1 {
		t.Errorf("survivors logged %d obtained certificates, want 1", got)
	}
	for _, n := range serving {
		if by := n.orderedBy()[names[0]]; by == holder.name || by == "" {
			t.Errorf("node %s: ordered_by %q, want a survivor", n.name, by)
		}
	}
}
