package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// fastGossip gives memberlist millisecond timings so tests converge fast.
func fastGossip(cfg *memberlist.Config) {
	cfg.GossipInterval = 20 * time.Millisecond
	cfg.ProbeInterval = 200 * time.Millisecond
	cfg.ProbeTimeout = 100 * time.Millisecond
	cfg.PushPullInterval = time.Second
	cfg.SuspicionMult = 2
	cfg.TCPTimeout = time.Second
	cfg.GossipToTheDeadTime = time.Second
}

var fastTimings = Timings{
	LoadInterval: 10 * time.Millisecond,
	Heartbeat:    100 * time.Millisecond,
	StaleAfter:   time.Second,
	JoinBackoff:  50 * time.Millisecond,
	Rejoin:       300 * time.Millisecond,
	Unhealthy:    time.Second,
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("CLUSTER_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("t", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testNode is one cluster member with its own HTTP server whose backend
// answers with the node name, optionally after ?sleep=ms or blocking on
// ?hold=1 until release is closed.
type testNode struct {
	name    string
	c       *Cluster
	srv     *http.Server
	ln      net.Listener
	url     string
	served  atomic.Int64
	hold    chan struct{}
	lastReq atomic.Pointer[http.Request]
	stopped atomic.Bool
}

type nodeOpt func(*Options)

func startNode(t testing.TB, name string, join []string, opts ...nodeOpt) *testNode {
	t.Helper()
	n, err := tryStartNode(t, name, "127.0.0.1:0", join, opts...)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return n
}

func tryStartNode(t testing.TB, name, bind string, join []string, opts ...nodeOpt) (*testNode, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{name: name, ln: ln, url: "http://" + ln.Addr().String(), hold: make(chan struct{})}
	o := Options{
		Name:     name,
		Bind:     bind,
		Join:     join,
		Secret:   testSecret,
		PeerURL:  n.url,
		Capacity: 4,
		Retries:  1,
		Logger:   testLogger(t),
		Timings:  fastTimings,
		Tune:     fastGossip,
	}
	for _, f := range opts {
		f(&o)
	}
	c, err := New(o)
	if err != nil {
		ln.Close()
		return nil, err
	}
	n.c = c
	n.srv = &http.Server{Handler: c.Guard(c.Middleware(nil)(http.HandlerFunc(n.backend)))}
	go n.srv.Serve(peerListener(ln, c))
	t.Cleanup(n.stop)
	return n, nil
}

func (n *testNode) backend(w http.ResponseWriter, r *http.Request) {
	n.served.Add(1)
	n.lastReq.Store(r)
	if ms, _ := strconv.Atoi(r.URL.Query().Get("sleep")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	switch r.URL.Path {
	case "/loc":
		http.Redirect(w, r, n.url+"/elsewhere?x=1", http.StatusFound)
		return
	case "/partial":
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("only ten b"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	case "/stream":
		w.Header().Set("X-Node", n.name)
		fmt.Fprintln(w, "first")
		w.(http.Flusher).Flush()
		<-n.hold
		fmt.Fprintln(w, "second")
		return
	case "/upgrade":
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nX-Node: " + n.name + "\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
		return
	}
	if r.URL.Query().Get("hold") != "" {
		select {
		case <-n.hold:
		case <-r.Context().Done():
		}
	}
	w.Header().Set("X-Node", n.name)
	w.Header().Set("X-Seen-Via", strings.Join(r.Header.Values("Via"), ","))
	w.Header().Set("X-Seen-Hop", r.Header.Get(hopHeader))
	w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
	w.Header().Set("X-Seen-Remote", r.RemoteAddr)
	fmt.Fprintln(w, n.name)
}

// crash stops the node without leaving: gossip and HTTP simply vanish.
func (n *testNode) crash() {
	if n.stopped.Swap(true) {
		return
	}
	n.srv.Close()
	n.c.Shutdown()
}

func (n *testNode) stop() {
	if n.stopped.Swap(true) {
		return
	}
	n.c.Leave(100 * time.Millisecond)
	n.c.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n.srv.Shutdown(ctx)
	n.srv.Close()
}

func (n *testNode) release() {
	select {
	case <-n.hold:
	default:
		close(n.hold)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func memberOf(c *Cluster, name string) (Member, bool) {
	for _, m := range c.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func stateOf(c *Cluster, name string) string {
	m, ok := memberOf(c, name)
	if !ok {
		return ""
	}
	return m.State
}

// converged waits until every node sees every other alive.
func converged(t testing.TB, nodes ...*testNode) {
	t.Helper()
	eventually(t, 10*time.Second, "cluster converged", func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if stateOf(a.c, b.name) != StateAlive {
					return false
				}
			}
		}
		return true
	})
}

func startCluster(t testing.TB, n int, opts ...nodeOpt) []*testNode {
	t.Helper()
	first := startNode(t, "n0", nil, opts...)
	nodes := []*testNode{first}
	for i := 1; i < n; i++ {
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i), []string{first.c.GossipAddr()}, opts...))
	}
	converged(t, nodes...)
	return nodes
}

var testClient = &http.Client{
	Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
	Timeout: 20 * time.Second,
}

func get(t testing.TB, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, strings.TrimSpace(string(b))
}

// holdRequests starts k requests at node that block in a backend until
// that backend's release; it returns once node counts them in flight.
func holdRequests(t testing.TB, at *testNode, k int) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	before := at.c.inflight.Load()
	for i := 0; i < k; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := testClient.Get(at.url + "/hold?hold=1")
			if err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}()
	}
	eventually(t, 5*time.Second, "requests held", func() bool { return at.c.inflight.Load() >= before+int64(k) })
	return &wg
}

func mustReq(t testing.TB) *http.Request {
	r, err := http.NewRequest("GET", "http://example/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RemoteAddr = "192.0.2.1:1234"
	return r
}

// occupy makes node count k more requests in flight, as if serving them.
func occupy(t testing.TB, n *testNode, k int64) {
	n.c.inflight.Add(k)
	n.c.kickLoad()
	t.Cleanup(func() { n.c.inflight.Add(-k); n.c.kickLoad() })
}

// seesLoad waits until every other node sees n's in-flight at want.
func seesLoad(t testing.TB, nodes []*testNode, n *testNode, want int64) {
	t.Helper()
	eventually(t, 2*time.Second, n.name+" load seen", func() bool {
		for _, o := range nodes {
			if o == n {
				continue
			}
			if m, _ := memberOf(o.c, n.name); m.Inflight != want {
				return false
			}
		}
		return true
	})
}

func mustReqNoT() *http.Request {
	r, _ := http.NewRequest("GET", "http://example/x", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	return r
}
