package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"shoal/internal/acme/acmetest"
	"shoal/internal/testenv"
)

// acmeDomains are the names every node of the ACME cluster test serves;
// Pebble's DNS resolves all of them to 127.0.0.1.
var acmeDomains = []string{"a.shoal.test", "b.shoal.test", "c.shoal.test"}

const acmeClusterConfig = `[server]
name = %q
http = %q
https = %q
admin = %q
drain_delay = "0s"

[log]
access = "off"

[acme]
enabled = true
ca = %q
ca_root = %q
storage = "acme-state"
challenges = %s
renew_before = %q

[cluster]
enabled = true
gossip = %q
join = [%q]
secret = %q

[[site]]
hosts = %s
root = "www"
`

// acmeNodeConfig is what differs between the nodes and tests of the ACME
// cluster tests; zero fields take the defaults of acmeConfig.
type acmeNodeConfig struct {
	name, http, https, gossip, join, secret string
	hosts, challenges                       []string // default acmeDomains, both challenges
	renewBefore                             string   // default 720h
}

// tomlList writes a TOML array of strings.
func tomlList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// anode is one shoal process of the ACME cluster test, in a folder of
// its own (so nothing but the cluster carries certificates between
// nodes).
type anode struct {
	t                          *testing.T
	name, dir                  string
	http, https, admin, gossip string
	cmd                        *exec.Cmd
	out                        *testenv.Buffer
	exited                     chan struct{}
}

func startACMENode(t *testing.T, name, httpAddr, httpsAddr, gossip, join, secret string, p *acmetest.Pebble) *anode {
	t.Helper()
	return startACMENodeWith(t, acmeNodeConfig{name: name, http: httpAddr, https: httpsAddr,
		gossip: gossip, join: join, secret: secret}, p)
}

func startACMENodeWith(t *testing.T, c acmeNodeConfig, p *acmetest.Pebble) *anode {
	t.Helper()
	if c.hosts == nil {
		c.hosts = acmeDomains
	}
	if c.challenges == nil {
		c.challenges = []string{"http-01", "tls-alpn-01"}
	}
	if c.renewBefore == "" {
		c.renewBefore = "720h"
	}
	name := c.name
	n := &anode{t: t, name: name, dir: t.TempDir(), http: c.http, https: c.https, admin: freeAddr(t), gossip: c.gossip}
	if err := os.MkdirAll(filepath.Join(n.dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(n.dir, "www", "index.html"), "node "+name+"\n")
	writeFile(t, filepath.Join(n.dir, "config.toml"), fmt.Sprintf(acmeClusterConfig,
		name, n.http, n.https, n.admin, p.Directory(), p.CAPath(), tomlList(c.challenges), c.renewBefore,
		n.gossip, c.join, c.secret, tomlList(c.hosts)))
	n.out, n.exited = &testenv.Buffer{}, make(chan struct{})
	cmd := exec.Command(shoalBin, "serve", "-config", "config.toml")
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = n.out, n.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd = cmd
	go func() { _ = cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("node %s output:\n%s", name, n.out)
		}
	})
	c2 := &http.Client{Timeout: time.Second}
	pollFor(t, "node "+name+" up", func() bool {
		select {
		case <-n.exited:
			t.Fatalf("node %s exited:\n%s", name, n.out)
		default:
		}
		res, err := c2.Get("http://" + n.admin + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	return n
}

// kill ends the node with SIGKILL (no leave message, no cleanup) and
// waits for it.
func (n *anode) kill() {
	select {
	case <-n.exited:
	default:
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
}

// serial is the serial of the certificate the node serves for name when
// it chains to roots; "" while it serves another.
func (n *anode) serial(name string, roots *x509.CertPool) string {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", n.https, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return ""
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// orderedBy maps each ACME name to the node /api/certificates says
// ordered it.
func (n *anode) orderedBy() map[string]string {
	out := map[string]string{}
	res, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + n.admin + "/api/certificates")
	if err != nil {
		return out
	}
	defer res.Body.Close()
	var body struct {
		Certificates []struct {
			Names     []string `json:"names"`
			Source    string   `json:"source"`
			OrderedBy string   `json:"ordered_by"`
		} `json:"certificates"`
	}
	if json.NewDecoder(res.Body).Decode(&body) != nil {
		return out
	}
	for _, c := range body.Certificates {
		if c.Source == "acme" && len(c.Names) == 1 {
			out[c.Names[0]] = c.OrderedBy
		}
	}
	return out
}

func (n *anode) orders() int { return strings.Count(n.out.String(), "acme: certificate obtained") }

// TestE2EACMEClusterOrdersOnce: three shoal processes in folders of their
// own serve the same three names from Pebble. Pebble validates every
// challenge on node a's ports only, and a starts last: an order placed by
// b or c succeeds only if its challenge reached a through the cluster.
// Every node ends up serving the same certificate for every name, each
// name was ordered once, and a fourth node joining later serves the same
// serials without ordering.
func TestE2EACMEClusterOrdersOnce(t *testing.T) {
	ports := acmetest.FreePorts(t, 2)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: ports[0], TLSPort: ports[1]})
	roots := p.IssuerRoots()
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i*7 + 3)
	}
	secret := base64.StdEncoding.EncodeToString(key)

	// b and c wait (a bounded while) for their first join before they
	// take a lock; a, whose ports Pebble validates on, joins them.
	aGossip := freeAddr(t)
	b := startACMENode(t, "b", freeAddr(t), freeAddr(t), freeAddr(t), aGossip, secret, p)
	c := startACMENode(t, "c", freeAddr(t), freeAddr(t), freeAddr(t), aGossip, secret, p)
	a := startACMENode(t, "a", "127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1]), aGossip, b.gossip, secret, p)
	nodes := []*anode{a, b, c}

	serials := waitSameSerials(t, nodes, acmeDomains, roots)
	total := 0
	for _, n := range nodes {
		total += n.orders()
	}
	if total != len(acmeDomains) {
		t.Errorf("%d orders for %d names", total, len(acmeDomains))
	}
	by := a.orderedBy()
	t.Logf("ordered by: %v", by)
	remote := 0
	for _, d := range acmeDomains {
		if by[d] == "" {
			t.Errorf("%s: no orderer on /api/certificates: %v", d, by)
		}
		if by[d] != "a" {
			remote++
		}
	}
	if remote == 0 {
		t.Errorf("node a ordered every name (%v): the challenges' travel to a was not exercised", by)
	}

	d := startACMENode(t, "d", freeAddr(t), freeAddr(t), freeAddr(t), a.gossip, secret, p)
	got := waitSameSerials(t, []*anode{d}, acmeDomains, roots)
	for _, name := range acmeDomains {
		if got[name] != serials[name] {
			t.Errorf("%s: late node serves serial %s, the cluster %s", name, got[name], serials[name])
		}
	}
	if n := d.orders(); n != 0 {
		t.Errorf("late node ordered %d certificates", n)
	}
}

// waitSameSerials waits until every node serves, for every name, a
// certificate chaining to Pebble's roots, and returns the serials,
// failing when two nodes serve different ones.
func waitSameSerials(t *testing.T, nodes []*anode, names []string, roots *x509.CertPool) map[string]string {
	t.Helper()
	out := map[string]string{}
	deadline := time.Now().Add(120 * time.Second)
	for _, name := range names {
		for _, n := range nodes {
			var s string
			for s = n.serial(name, roots); s == ""; s = n.serial(name, roots) {
				if time.Now().After(deadline) {
					t.Fatalf("node %s serves no certificate for %s chaining to Pebble", n.name, name)
				}
				time.Sleep(100 * time.Millisecond) // poll interval
			}
			if out[name] == "" {
				out[name] = s
			} else if s != out[name] {
				t.Errorf("%s: node %s serves serial %s, another node %s", name, n.name, s, out[name])
			}
		}
	}
	return out
}
