package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"shoal/cluster"
)

// The cluster hop under attack and failure, with real shoal processes:
// a peer frozen by SIGSTOP while GETs are in flight, and a hop header
// captured from real traffic replayed to every node.

const hopConfig = `[server]
drain_delay = "300ms"
shutdown_grace = "5s"

[log]
access = "off"

[[site]]
root = "www"

[cluster]
enabled = true
policy = "round_robin"
balance = "all"
retries = 1
%s
`

// newHopCluster starts n nodes (a, b, ...) from one folder with the
// [cluster] keys extra, and waits until they see each other.
func newHopCluster(t *testing.T, n int, extra string) *ccluster {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.toml"), fmt.Sprintf(hopConfig, extra))
	cl := &ccluster{t: t, dir: dir, nodes: map[string]*cnode{}}
	var seed string
	for i := 0; i < n; i++ {
		name := string(rune('a' + i))
		node := &cnode{name: name, dir: dir, http: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t), join: seed, t: t}
		www := filepath.Join(dir, "www-"+name)
		if err := os.MkdirAll(www, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(www, "who.txt"), "node="+name+"\n")
		cl.nodes[name] = node
		node.startFresh()
		if i == 0 {
			seed = node.gossip
		}
	}
	cl.converged()
	return cl
}

// A peer stopped by SIGSTOP while GETs are in flight, and after: every
// attempt at it ends within peer_timeout (or sooner, when it turns
// suspect) and is retried elsewhere. No GET fails and no client waits
// longer than peer_timeout plus a margin.
func TestE2EClusterFrozenPeer(t *testing.T) {
	const peerTimeout = time.Second
	const margin = 2 * time.Second // a busy test machine's scheduling, the retry itself
	cl := newHopCluster(t, 3, `peer_timeout = "1s"`)
	a, b, c := cl.nodes["a"], cl.nodes["b"], cl.nodes["c"]
	t.Cleanup(func() { c.cmd.Process.Signal(syscall.SIGCONT) })
	waitServed(t, a, "/who.txt", "c")
	waitServed(t, b, "/who.txt", "c")

	client := &http.Client{
		Timeout:   peerTimeout + margin + 10*time.Second, // a hang shows as a long wait, not a stall
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
	}
	var mu sync.Mutex
	var waits []time.Duration
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		at := []*cnode{a, b}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				res, _, err := at.do("/who.txt", client)
				took := time.Since(start)
				mu.Lock()
				waits = append(waits, took)
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case res.StatusCode != 200:
					failures = append(failures, res.Status)
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // load before the freeze, not synchronisation
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	pollFor(t, "c seen suspect or dead by a", func() bool {
		st := a.members()["c"].State
		return st == "suspect" || st == "dead"
	})
	time.Sleep(time.Second) // and load after it, not synchronisation
	close(stop)
	wg.Wait()
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	slices.Sort(waits)
	longest := waits[len(waits)-1]
	t.Logf("%d GETs, longest wait %v, median %v", len(waits), longest, waits[len(waits)/2])
	if len(failures) > 0 {
		t.Errorf("%d GETs failed around the freeze: %v", len(failures), failures[:min(5, len(failures))])
	}
	if longest > peerTimeout+margin {
		t.Errorf("a client waited %v, want at most peer_timeout %v plus %v", longest, peerTimeout, margin)
	}
}

// A hop header captured from real traffic is refused by every node it is
// replayed to: by the node it was meant for (its nonce was spent), by the
// others (it names another target node), and with peer TLS by anyone it
// reaches outside a peer TLS connection. The capture comes from a
// recording peer that holds the secret and joins like a node.
func TestE2EClusterHopReplayRefused(t *testing.T) {
	for _, peerTLS := range []bool{true, false} {
		t.Run(fmt.Sprintf("peer_tls=%v", peerTLS), func(t *testing.T) {
			cl := newHopCluster(t, 2, fmt.Sprintf("peer_tls = %v", peerTLS))
			a, b := cl.nodes["a"], cl.nodes["b"]
			rec := startRecorder(t, cl, peerTLS)
			pollFor(t, "the recorder alive at a", func() bool { return a.members()["rec"].State == "alive" })

			// Real traffic through a until one request is proxied to the
			// recorder.
			var got captured
			pollFor(t, "a request proxied to the recorder", func() bool {
				a.do("/who.txt?q=1", nil)
				var ok bool
				got, ok = rec.first()
				return ok
			})
			if !got.accepted {
				t.Fatal("the recorder refused the genuine hop: the capture proves nothing")
			}

			peerClient := &http.Client{Timeout: 5 * time.Second}
			if cfg := rec.c.PeerClientConfig(); cfg != nil {
				peerClient.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					var d net.Dialer
					raw, err := d.DialContext(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					tc := tls.Client(raw, cfg)
					if err := tc.HandshakeContext(ctx); err != nil {
						raw.Close()
						return nil, err
					}
					return tc, nil
				}}
			}
			targets := []struct{ name, addr string }{{"a", a.http}, {"b", b.http}, {"rec", rec.addr}}
			for _, to := range targets {
				clients := map[string]*http.Client{"plain": {Timeout: 5 * time.Second}}
				if peerTLS {
					clients["peer TLS"] = peerClient
				}
				if to.name == "rec" && peerTLS {
					delete(clients, "plain") // the recorder listens for peers only
				}
				for how, c := range clients {
					req, _ := http.NewRequest(got.method, "http://"+to.addr+got.target, nil)
					req.Host = got.host
					req.Header.Set("X-Shoal-Hop", got.hop)
					res, err := c.Do(req)
					if err != nil {
						t.Fatalf("replay to %s (%s): %v", to.name, how, err)
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					// A node that takes a hop answers with its signed load for
					// the sender; a refused one is a client's request.
					if res.Header.Get("X-Shoal-Load") != "" {
						t.Errorf("replayed hop accepted by %s (%s)", to.name, how)
					}
				}
			}
		})
	}
}

// captured is one hop request as the recorder received it.
type captured struct {
	method, host, target, hop string
	accepted                  bool // the recorder's own cluster took it as a hop
}

// recorder is a test-only peer: an in-process cluster member with the
// cluster's secret that records the first hop it is sent.
type recorder struct {
	c    *cluster.Cluster
	addr string
	mu   sync.Mutex
	hops []captured
}

func (r *recorder) first() (captured, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.hops) == 0 {
		return captured{}, false
	}
	return r.hops[0], true
}

func startRecorder(t *testing.T, cl *ccluster, peerTLS bool) *recorder {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(cl.dir, ".shoal", "cluster-secret"))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{addr: ln.Addr().String()}
	r.c, err = cluster.New(cluster.Options{
		Name: "rec", Bind: "127.0.0.1:0", Join: []string{cl.nodes["a"].gossip}, Secret: secret,
		PeerURL: "http://" + r.addr, PeerTLS: peerTLS,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	// The recorder publishes the nodes' site hashes: a member whose sites
	// differ gets none of their requests (drift).
	hashes := map[string]uint32{}
	for site, h := range cl.nodes["a"].members()["a"].Sites {
		v, err := strconv.ParseUint(h, 16, 32)
		if err != nil {
			t.Fatalf("site hash %q: %v", h, err)
		}
		hashes[site] = uint32(v)
	}
	r.c.WatchSites(time.Minute, func() map[string]uint32 { return hashes })
	inner := r.c.Guard(r.c.Middleware(nil)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "node=rec\n")
	})))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		hop := req.Header.Get("X-Shoal-Hop")
		inner.ServeHTTP(w, req)
		if hop == "" {
			return
		}
		r.mu.Lock()
		r.hops = append(r.hops, captured{method: req.Method, host: req.Host, target: req.RequestURI, hop: hop,
			accepted: w.Header().Get("X-Shoal-Load") != ""})
		r.mu.Unlock()
	})}
	serveLn := ln
	if cfg := r.c.PeerServerConfig(); cfg != nil {
		serveLn = tls.NewListener(ln, cfg)
	}
	go srv.Serve(serveLn)
	t.Cleanup(func() {
		r.c.Shutdown()
		srv.Close()
	})
	return r
}
