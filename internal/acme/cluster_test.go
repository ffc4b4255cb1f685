package acme

import (
	"crypto/x509"
	"net"
	"testing"
	"time"

	"shoal/internal/acme/acmetest"
)

// fakeCluster is Pebble plus nodes joined through a fakeNet; Pebble
// validates every challenge on the first node's ports only, so an order
// placed by another node passes only if its token reached the first.
type fakeCluster struct {
	t     *testing.T
	net   *fakeNet
	p     *acmetest.Pebble
	roots *x509.CertPool
	nodes []*testNode
	fakes []*fakeNode
	// first node's listeners, opened before Pebble needs their ports
	httpLn, tlsLn net.Listener
}

func newFakeCluster(t *testing.T) *fakeCluster {
	c := &fakeCluster{t: t, net: newFakeNet()}
	c.httpLn, c.tlsLn = listeners(t)
	c.p = acmetest.Start(t, acmetest.Options{HTTPPort: portOf(c.httpLn), TLSPort: portOf(c.tlsLn)})
	c.roots = c.p.IssuerRoots()
	return c
}

// add starts a node; the first one gets the listeners Pebble validates on.
func (c *fakeCluster) add(name string) *testNode {
	httpLn, tlsLn := c.httpLn, c.tlsLn
	if len(c.nodes) > 0 {
		httpLn, tlsLn = listeners(c.t)
	}
	fn := c.net.join(name)
	o := options(c.p, c.t.TempDir())
	o.Node, o.Cluster = name, fn
	n := startNode(c.t, o, httpLn, tlsLn)
	fn.attach(n.m.Storage())
	c.nodes, c.fakes = append(c.nodes, n), append(c.fakes, fn)
	return n
}

func (c *fakeCluster) orders() int {
	total := 0
	for _, n := range c.nodes {
		total += n.logs.get("acme: certificate obtained")
	}
	return total
}

// serials waits until every node serves a valid certificate for every
// name and returns the serial each name has, failing if nodes disagree.
func (c *fakeCluster) serials(nodes []*testNode, names []string) map[string]string {
	c.t.Helper()
	out := map[string]string{}
	for _, name := range names {
		for i, n := range nodes {
			s := n.waitIssued(c.t, name, c.roots, 60*time.Second).SerialNumber.Text(16)
			if i == 0 {
				out[name] = s
			} else if s != out[name] {
				c.t.Errorf("%s: node %d serves serial %s, node 0 serves %s", name, i, s, out[name])
			}
		}
	}
	return out
}

// TestClusterOrdersOnce: three nodes manage the same three names; each
// name is ordered once, every node serves the same certificate, and a
// node that joins later serves them too without ordering.
func TestClusterOrdersOnce(t *testing.T) {
	c := newFakeCluster(t)
	names := []string{"a.shoal.test", "b.shoal.test", "c.shoal.test"}
	for _, name := range []string{"node-0", "node-1", "node-2"} {
		c.add(name)
	}
	for _, n := range c.nodes {
		n.m.Manage(names)
	}
	before := c.serials(c.nodes, names)
	if got := c.orders(); got != len(names) {
		t.Fatalf("orders = %d, want %d (one per name)", got, len(names))
	}
	late := c.add("node-3")
	late.m.Manage(names)
	after := c.serials([]*testNode{c.nodes[0], late}, names)
	for _, name := range names {
		if before[name] != after[name] {
			t.Errorf("%s: late joiner serves %s, cluster serves %s", name, after[name], before[name])
		}
	}
	if got := late.logs.get("acme: certificate obtained"); got != 0 {
		t.Errorf("late joiner ordered %d certificates, want 0", got)
	}
	for _, name := range names {
		infos := late.m.Certificates()
		found := false
		for _, in := range infos {
			if in.Names[0] == name && in.OrderedBy != "" && in.OrderedBy != "node-3" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: late joiner's Certificates() = %+v, want one ordered by an older node", name, infos)
		}
	}
}

// TestClusterLockHolderDies: while a node holds a name's order lock the
// others wait; when it dies its lock is released and one of them orders.
func TestClusterLockHolderDies(t *testing.T) {
	c := newFakeCluster(t)
	answerer := c.add("node-0") // Pebble's ports; never holds the lock
	holder := c.add("node-1")
	waiter := c.add("node-2")
	const name = "held.shoal.test"
	if err := c.fakes[1].Lock(t.Context(), "issue_cert_"+name); err != nil {
		t.Fatal(err)
	}
	answerer.m.Manage([]string{name})
	waiter.m.Manage([]string{name})
	// While the lock is held nobody orders (bounded look, not a sync).
	time.Sleep(500 * time.Millisecond)
	if got := c.orders(); got != 0 {
		t.Fatalf("%d orders while another node held the lock", got)
	}
	c.net.kill(c.fakes[1])
	_ = holder
	c.serials([]*testNode{answerer, waiter}, []string{name})
	if got := c.orders(); got != 1 {
		t.Errorf("orders = %d, want 1", got)
	}
}
