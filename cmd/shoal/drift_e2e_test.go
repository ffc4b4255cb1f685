package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// driftConfig has two sites: the default one, whose root each node gets
// by -root (www-a, www-b, www-c), and two.test, whose root www2 all nodes
// share. round_robin makes every available node take a turn, so a node
// left out of a site's turns is left out by the drift filter alone.
const driftConfig = `[server]
drain_delay = "100ms"
shutdown_grace = "5s"

[log]
access = "off"

[[site]]
root = "www"

[[site]]
hosts = ["two.test"]
root = "www2"

[cluster]
enabled = true
policy = "round_robin"
`

const whoPage = "node={{.Node.Name}}\n"

// TestE2EDriftedNodeGetsNoneOfTheSite starts a, b and c where c's copy of
// the default site has one file more: a and b never send that site's
// requests to c, while two.test, alike everywhere, still goes to c.
func TestE2EDriftedNodeGetsNoneOfTheSite(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.toml"), driftConfig)
	writePage(t, filepath.Join(dir, "www2", "who.tmpl"))
	cl := &ccluster{t: t, dir: dir, nodes: map[string]*cnode{}}
	var seed string
	for _, name := range []string{"a", "b", "c"} {
		writePage(t, filepath.Join(dir, "www-"+name, "who.tmpl"))
		if name == "c" {
			writeFile(t, filepath.Join(dir, "www-c", "extra.html"), "deployed on c only\n")
		}
		node := &cnode{name: name, dir: dir, http: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t), join: seed, t: t}
		cl.nodes[name] = node
		node.startFresh()
		if seed == "" {
			seed = node.gossip
		}
	}
	cl.converged()
	a, b, c := cl.nodes["a"], cl.nodes["b"], cl.nodes["c"]

	pollFor(t, "drift of c's default site seen by a and b", func() bool {
		for _, n := range []*cnode{a, b} {
			ms := n.members()
			if !slices.Equal(ms["c"].Drift, []string{"default"}) || len(ms["a"].Drift)+len(ms["b"].Drift) != 0 ||
				ms["c"].Sites["two.test"] == "" || ms["c"].Sites["two.test"] != ms[n.name].Sites["two.test"] {
				return false
			}
		}
		return true
	})

	for _, at := range []*cnode{a, b} {
		served := servedBy(t, at, "", 30)
		if served["c"] > 0 {
			t.Errorf("default site at %s: drifted c served %d of 30: %v", at.name, served["c"], served)
		}
		if len(served) < 2 {
			t.Errorf("default site at %s: not balanced over a and b: %v", at.name, served)
		}
	}
	if served := servedBy(t, a, "two.test", 30); served["c"] == 0 {
		t.Errorf("two.test at a: c never served, though its copy is alike: %v", served)
	}
	// c sees everyone else drift from it: it keeps the default site.
	if served := servedBy(t, c, "", 20); served["c"] != 20 {
		t.Errorf("default site at c: %v, want all 20 served by c", served)
	}

	code, out, errOut := runShoal(t, dir, "members", "-admin", a.admin)
	if code != 0 {
		t.Fatalf("shoal members: exit %d: %s", code, errOut)
	}
	rows := map[string][]string{}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	header := strings.Fields(lines[0])
	col := slices.Index(header, "Drift")
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		rows[f[0]] = f
	}
	if col < 0 || rows["c"][col] != "default" || rows["b"][col] != "-" || rows["a"][col] != "-" {
		t.Errorf("shoal members:\n%s", out)
	}
	// c is brought in line and reloaded: its hash follows at once (no
	// minute's wait), and the default site balances to it again.
	if err := os.Remove(filepath.Join(dir, "www-c", "extra.html")); err != nil {
		t.Fatal(err)
	}
	res, err := http.Post("http://"+c.admin+"/api/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("POST /api/reload at c: %s", res.Status)
	}
	pollFor(t, "c's default site back in line at a", func() bool {
		ms := a.members()
		return len(ms["c"].Drift) == 0 && ms["c"].Sites["default"] == ms["a"].Sites["default"]
	})
	if served := servedBy(t, a, "", 30); served["c"] == 0 {
		t.Errorf("default site at a after c's reload: c never served: %v", served)
	}
}

func writePage(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, whoPage)
}

// servedBy sends k GET /who to node at for host ("" for the default
// site) one after another, and counts which node rendered each.
func servedBy(t *testing.T, at *cnode, host string, k int) map[string]int {
	t.Helper()
	served := map[string]int{}
	for range k {
		req, err := http.NewRequest("GET", "http://"+at.http+"/who", nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		res, err := e2eClient.Do(req)
		if err != nil {
			t.Fatalf("GET /who at %s: %v", at.name, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("GET /who (host %q) at %s: %s %s", host, at.name, res.Status, body)
		}
		served[strings.TrimPrefix(strings.TrimSpace(string(body)), "node=")]++
	}
	return served
}
