package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"shoal/server/config"
)

// startClusterNode runs a one-node cluster serving www/x.txt with the
// given cluster.balance.
func startClusterNode(t *testing.T, name, balance string) *Node {
	return startClusterNodeWith(t, name, "x\n", `balance = "`+balance+`"`)
}

// startClusterNodeWith runs a cluster node whose www/x.txt holds body,
// with more [cluster] keys.
func startClusterNodeWith(t *testing.T, name, body, clusterKeys string) *Node {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "x.txt"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "shoal.toml")
	src := `[log]
access = "off"
[server]
name = "` + name + `"
http = "127.0.0.1:0"
admin = ""
drain_delay = "0s"
[cluster]
enabled = true
gossip = "127.0.0.1:0"
secret = "` + retuneSecret + `"
` + clusterKeys + `
[[site]]
root = "www"
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return runNode(t, path)
}

// runNode starts a node on the config file at path, waits until it is
// ready and stops it when the test ends.
func runNode(t testing.TB, path string) *Node {
	t.Helper()
	return runNodeLogged(t, path, io.Discard)
}

// runNodeLogged is runNode with the node's log written to log.
func runNodeLogged(t testing.TB, path string, log io.Writer) *Node {
	t.Helper()
	n, err := New(func() (*config.Config, error) { return config.Load(path) },
		Options{Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("node did not stop")
		}
	})
	select {
	case <-n.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	return n
}

// TestFastPathInCluster: with the cluster on, a static file the balance
// setting leaves local is still answered by the fast path and counted in
// the node's load while it is served (back to 0 after), and so is one
// balance = "all" covers when the cluster keeps it here; a request with a
// hop header that does not check out, or forwarding headers, takes the
// full chain.
func TestFastPathInCluster(t *testing.T) {
	cases := []struct {
		balance string
		hdr     []string
		fast    bool
	}{
		{"dynamic", nil, true},
		{"none", nil, true},
		{"dynamic", []string{"X-Shoal-Hop", "forged"}, false},
		{"dynamic", []string{"X-Forwarded-For", "192.0.2.1"}, false},
		{"all", nil, true},
		{"all", []string{"X-Forwarded-For", "192.0.2.1"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.balance+"/"+map[bool]string{true: "fast", false: "full"}[tc.fast], func(t *testing.T) {
			n := startClusterNode(t, "fast-"+tc.balance, tc.balance)
			url := "http://" + n.Addrs()["http"]
			before := n.fastAnswered()
			req, _ := http.NewRequest("GET", url+"/x.txt", nil)
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			c := &http.Client{Timeout: 10 * time.Second}
			defer c.CloseIdleConnections()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "x\n" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if got := n.fastAnswered() - before; got != map[bool]int64{true: 1, false: 0}[tc.fast] {
				t.Errorf("fast path answered %d", got)
			}
			inflight := func() int64 {
				for _, m := range n.cl.get().Members() {
					if m.Self {
						return m.Inflight // what peers are told
					}
				}
				t.Fatal("no entry for this node")
				return 0
			}
			deadline := time.Now().Add(5 * time.Second)
			for inflight() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := inflight(); got != 0 {
				t.Errorf("in flight after the response: %d", got)
			}
		})
	}
}

// TestFastPathServesHops: a request a peer proxied here (a valid hop
// header) is answered by the fast path, with this node's signed load in
// the response for the proxying peer. B's peer_url points at a relay that
// records what B sends back to A.
func TestFastPathServesHops(t *testing.T) {
	relay := newRelay(t)
	keys := "balance = \"all\"\npolicy = \"round_robin\"\npeer_tls = false" // the relay reads the hop in the clear
	a := startClusterNodeWith(t, "hop-a", "A", keys)
	b := startClusterNodeWith(t, "hop-b", "B", keys+"\npeer_url = \"http://"+relay.addr()+"\"\njoin = [\""+a.cl.get().GossipAddr()+"\"]")
	relay.target.Store(b.Addrs()["http"])
	deadline := time.Now().Add(10 * time.Second)
	for len(a.cl.get().Members()) < 2 || len(b.cl.get().Members()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("nodes did not see each other")
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := b.fastAnswered()
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	served := map[string]int{}
	for range 40 {
		resp, err := c.Get("http://" + a.Addrs()["http"] + "/x.txt")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Shoal-Load") != "" {
			t.Fatalf("status %d, load header %q", resp.StatusCode, resp.Header.Get("X-Shoal-Load"))
		}
		served[string(body)]++
	}
	if served["B"] == 0 {
		t.Fatalf("no request reached the peer: %v", served)
	}
	if got := b.fastAnswered() - before; got != int64(served["B"]) {
		t.Errorf("peer answered %d hops on the fast path, want all %d", got, served["B"])
	}
	if got := strings.Count(relay.received(), "\r\nX-Shoal-Load: "); got != served["B"] {
		t.Errorf("%d of the peer's %d responses carry its load", got, served["B"])
	}
}

// relay is a TCP relay that records the bytes its target sends back.
type relay struct {
	ln     net.Listener
	target atomic.Value // string: host:port
	mu     sync.Mutex
	back   bytes.Buffer
}

func newRelay(t *testing.T) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) serve(c net.Conn) {
	defer c.Close()
	target, _ := r.target.Load().(string)
	if target == "" {
		return
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	go io.Copy(up, c)
	io.Copy(io.MultiWriter(r, c), up) // recorded before A can see it
}

func (r *relay) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.back.Write(p)
}

func (r *relay) received() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.back.String()
}
