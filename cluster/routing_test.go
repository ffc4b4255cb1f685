package cluster

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBalancesWhenFull(t *testing.T) {
	nodes := startCluster(t, 3, func(o *Options) { o.Capacity = 2 })
	a := nodes[0]
	var mu sync.Mutex
	served := map[string]int{}
	var failed atomic.Int64
	var wg sync.WaitGroup
	const workers, each = 6, 6
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				res, err := testClient.Get(a.url + "/work?sleep=100")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					failed.Add(1)
				}
				mu.Lock()
				served[res.Header.Get("X-Node")]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	for _, n := range nodes {
		if served[n.name] < workers*each/5 {
			t.Fatalf("served %v: %s got under 20%%", served, n.name)
		}
	}
	t.Logf("served %v", served)
}

// full makes a the only full node, seen as such by everyone, so it
// proxies every covered request.
func full(t *testing.T, nodes []*testNode, a *testNode) {
	occupy(t, a, 100)
	seesLoad(t, nodes, a, 100)
}

func TestProxyHeaders(t *testing.T) {
	nodes := startCluster(t, 2, func(o *Options) {
		o.ClientIP = func(r *http.Request) string {
			if v := r.Header.Get("X-Test-Client"); v != "" {
				return v
			}
			return hostOnly(r.RemoteAddr)
		}
	})
	a, b := nodes[0], nodes[1]
	full(t, nodes, a)
	res, body := get(t, a.url+"/x", "X-Test-Client", "203.0.113.9",
		"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil", "X-Shoal-Load", "forged", "X-Real-Ip", "6.6.6.6")
	if res.StatusCode != 200 || body != b.name {
		t.Fatalf("got %d %q, want proxied to %s", res.StatusCode, body, b.name)
	}
	if got := res.Header.Get("X-Seen-XFF"); got != "203.0.113.9" {
		t.Errorf("peer saw X-Forwarded-For %q", got)
	}
	if got := res.Header.Get("X-Seen-Via"); got != "1.1 "+a.name {
		t.Errorf("peer saw Via %q", got)
	}
	if got := res.Header.Get("X-Seen-Remote"); !strings.HasPrefix(got, "203.0.113.9:") {
		t.Errorf("peer saw RemoteAddr %q, want the client's", got)
	}
	if got := res.Header.Get("X-Seen-Hop"); got != "" {
		t.Errorf("hop header reached the handler: %q", got)
	}
	if got := res.Header.Get(loadHeader); got != "" {
		t.Errorf("load header reached the client: %q", got)
	}
	if got := b.lastReq.Load().Header.Get("X-Real-Ip"); got != "" {
		t.Errorf("a client's X-Real-Ip reached the peer: %q", got)
	}
	if b.lastReq.Load().Header.Get("X-Shoal-Load") != "" || b.lastReq.Load().Header.Get("X-Forwarded-Host") != "127.0.0.1:"+portOf(a.url) {
		t.Errorf("peer saw headers %v", b.lastReq.Load().Header)
	}
}

func portOf(u string) string {
	pu, _ := url.Parse(u)
	return pu.Port()
}

func TestForgedHopIgnored(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	full(t, nodes, a)
	other := deriveKeys([]byte("ffffffffffffffffffffffffffffffff"))
	now := time.Now()
	host := "127.0.0.1:" + portOf(a.url)
	for name, hop := range map[string]string{
		"garbage":      "1.2.3.4",
		"other secret": other.hopValue("GET", host, "/x", a.name, b.name, "1.1.1.1:1", now),
		"expired":      a.c.keys.hopValue("GET", host, "/x", a.name, b.name, "1.1.1.1:1", now.Add(-time.Hour)),
		"other path":   a.c.keys.hopValue("GET", host, "/y", a.name, b.name, "1.1.1.1:1", now),
		"other query":  a.c.keys.hopValue("GET", host, "/x?q=1", a.name, b.name, "1.1.1.1:1", now),
		"other node":   a.c.keys.hopValue("GET", host, "/x", b.name, b.name, "1.1.1.1:1", now),
	} {
		res, body := get(t, a.url+"/x", hopHeader, hop)
		if body != b.name {
			t.Errorf("%s: forged hop made full node serve locally (%d %q)", name, res.StatusCode, body)
		}
		if res.Header.Get("X-Seen-Hop") != "" {
			t.Errorf("%s: hop header reached the handler", name)
		}
	}
	// A genuine hop is served where it lands, however full that node;
	// once only: the same header again is a replay.
	valid := b.c.keys.hopValue("GET", host, "/x", a.name, b.name, "1.1.1.1:1", now)
	if _, body := get(t, a.url+"/x", hopHeader, valid); body != a.name {
		t.Errorf("valid hop was forwarded again, served by %q", body)
	}
	if res, body := get(t, a.url+"/x", hopHeader, valid); body != b.name || res.Header.Get(loadHeader) != "" {
		t.Errorf("replayed hop accepted: served by %q", body)
	}
}

func TestNeverTwoHops(t *testing.T) {
	nodes := startCluster(t, 3, func(o *Options) { o.Capacity = 1 })
	// Everybody is full and each thinks the others less loaded: without
	// the hop rule requests would bounce.
	for _, n := range nodes {
		occupy(t, n, 50)
	}
	for _, n := range nodes {
		seesLoad(t, nodes, n, 50)
	}
	for _, n := range nodes[1:] {
		m := nodes[0].c.lookup(n.name)
		m.inflight.Store(0) // a's stale view: peers look idle
	}
	for i := 0; i < 20; i++ {
		res, _ := get(t, nodes[0].url+"/x")
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		if via := res.Header.Get("X-Seen-Via"); strings.Count(via, "1.1") > 1 {
			t.Fatalf("request took %d hops (Via %q)", strings.Count(via, "1.1"), via)
		}
	}
}

func TestLoadHeaderRefreshesView(t *testing.T) {
	nodes := startCluster(t, 2, func(o *Options) { o.Timings.Heartbeat = time.Hour; o.Timings.LoadInterval = time.Hour })
	a, b := nodes[0], nodes[1]
	a.c.inflight.Add(100)
	defer a.c.inflight.Add(-100)
	b.c.inflight.Add(7)
	defer b.c.inflight.Add(-7)
	mb := a.c.lookup(b.name)
	mb.inflight.Store(0)
	if _, body := get(t, a.url+"/x"); body != b.name {
		t.Fatalf("served by %q", body)
	}
	// b reported 7 others plus the one it was serving.
	if got := mb.inflight.Load(); got != 8 {
		t.Fatalf("a sees b in-flight %d after a proxied reply, want 8", got)
	}
}

func TestRetryOnDeadPeerFailsNoGET(t *testing.T) {
	var mu sync.Mutex
	failedPeers := map[string]int{}
	nodes := startCluster(t, 3, func(o *Options) {
		o.Capacity = 1
		o.Observe = func(r *http.Request, rt Route) {
			mu.Lock()
			for _, p := range rt.FailedPeers {
				failedPeers[p]++
			}
			mu.Unlock()
		}
	})
	a, c := nodes[0], nodes[2]
	full(t, nodes, a)
	c.srv.Close() // HTTP gone, gossip still says alive: only passive health can tell
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				res, err := testClient.Get(a.url + "/x")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d GETs failed", failed.Load())
	}
	if m, _ := memberOf(a.c, c.name); m.Healthy {
		t.Fatal("dead peer still healthy")
	}
	mu.Lock()
	defer mu.Unlock()
	for p, n := range failedPeers {
		if p != c.name {
			t.Errorf("%s reported as failed %d times; only %s is down", p, n, c.name)
		}
	}
}

func TestNonIdempotentNotRetried(t *testing.T) {
	nodes := startCluster(t, 2, func(o *Options) { o.Capacity = 1 })
	a, b := nodes[0], nodes[1]
	full(t, nodes, a)
	b.srv.Close()
	res, err := testClient.Post(a.url+"/x", "text/plain", strings.NewReader("pay once"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway {
		t.Fatalf("POST to a dead peer: %d, want 502", res.StatusCode)
	}
	if a.served.Load() != 0 {
		t.Fatal("POST ran locally after being sent to a peer")
	}
	// The same GET is retried here.
	if res, body := get(t, a.url+"/x"); res.StatusCode != 200 || body != a.name {
		t.Fatalf("GET: %d %q", res.StatusCode, body)
	}
}

func TestRedirectNeverTwice(t *testing.T) {
	nodes := startCluster(t, 2, func(o *Options) { o.Mode = "redirect"; o.Capacity = 1 })
	a, b := nodes[0], nodes[1]
	full(t, nodes, a)
	res, _ := get(t, a.url+"/page?q=1")
	if res.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("status %d, want 307", res.StatusCode)
	}
	loc := res.Header.Get("Location")
	if !strings.HasPrefix(loc, b.url+"/page?q=1&_shoal=") {
		t.Fatalf("Location %q", loc)
	}
	// Now b is overloaded too, and a's load is stale-low in b's view:
	// b would bounce the client straight back, were it not for the marker.
	occupy(t, b, 200)
	b.c.lookup(a.name).inflight.Store(0)
	if res, _ := get(t, b.url+"/page?q=1"); res.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("unmarked request at overloaded b: %d, want 307 (test setup)", res.StatusCode)
	}
	res, body := get(t, loc)
	if res.StatusCode != 200 || body != b.name {
		t.Fatalf("redirected client: %d %q, want served by b", res.StatusCode, body)
	}
	if q := b.lastReq.Load().URL.RawQuery; q != "q=1" {
		t.Fatalf("handler saw query %q, want the marker stripped", q)
	}
	// A marker is bound to its target.
	forged, _ := http.NewRequest("GET", strings.Replace(loc, b.url, a.url, 1), nil)
	forged.RequestURI = forged.URL.RequestURI()
	if _, in := a.c.inspect(forged, false); in.marked {
		t.Fatal("marker for b honoured by a")
	}
}

func TestStickyFollowsNodeThenMoves(t *testing.T) {
	nodes := startCluster(t, 3, func(o *Options) { o.Sticky = true; o.Policy = "round_robin" })
	a := nodes[0]
	var cookie *http.Cookie
	var home string
	for i := 0; i < 3 && (cookie == nil || home == a.name); i++ {
		res, body := get(t, a.url+"/x")
		for _, ck := range res.Cookies() {
			if ck.Name == stickyCookie {
				cookie, home = ck, body
			}
		}
	}
	if cookie == nil || home == a.name {
		t.Fatalf("no affinity cookie to a peer (home %q)", home)
	}
	for i := 0; i < 10; i++ {
		res, body := get(t, a.url+"/x", "Cookie", cookie.String())
		if body != home {
			t.Fatalf("request %d served by %s, want %s", i, body, home)
		}
		if len(res.Cookies()) != 0 {
			t.Fatalf("cookie re-sent although unchanged")
		}
	}
	for _, n := range nodes {
		if n.name == home {
			n.crash()
		}
	}
	res, body := get(t, a.url+"/x", "Cookie", cookie.String())
	if res.StatusCode != 200 || body == home {
		t.Fatalf("after %s died: %d %q", home, res.StatusCode, body)
	}
	var moved bool
	for _, ck := range res.Cookies() {
		if ck.Name == stickyCookie {
			name, ok := a.c.keys.checkSticky(ck.Value)
			moved = ok && name == body
		}
	}
	if !moved {
		t.Fatalf("cookie not moved to %s: %v", body, res.Header["Set-Cookie"])
	}
}

func TestLocationRewritten(t *testing.T) {
	nodes := startCluster(t, 2)
	a := nodes[0]
	full(t, nodes, a)
	res, _ := get(t, a.url+"/loc")
	if got, want := res.Header.Get("Location"), a.url+"/elsewhere?x=1"; got != want {
		t.Fatalf("Location %q, want %q", got, want)
	}
}

func TestBrokenBodyAborts(t *testing.T) {
	nodes := startCluster(t, 2)
	a := nodes[0]
	full(t, nodes, a)
	res, err := testClient.Get(a.url + "/partial")
	if err != nil {
		return // cut before the headers left this node: also not complete
	}
	defer res.Body.Close()
	if _, err := io.ReadAll(res.Body); err == nil {
		t.Fatal("a body cut short at the peer looked complete to the client")
	}
}

func TestStreamingFlushes(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	full(t, nodes, a)
	res, err := testClient.Get(a.url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || line != "first\n" || res.Header.Get("X-Node") != b.name {
		t.Fatalf("first chunk %q %v from %s", line, err, res.Header.Get("X-Node"))
	}
	b.release()
}

func TestUpgradePassesThrough(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	full(t, nodes, a)
	conn, err := net.Dial("tcp", strings.TrimPrefix(a.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 101 || res.Header.Get("X-Node") != b.name {
		t.Fatalf("upgrade: %d from %q", res.StatusCode, res.Header.Get("X-Node"))
	}
	fmt.Fprint(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo %q %v", line, err)
	}
}

func TestObserveReportsRoutes(t *testing.T) {
	var mu sync.Mutex
	var routes []Route
	nodes := startCluster(t, 2, func(o *Options) {
		o.Observe = func(r *http.Request, rt Route) {
			mu.Lock()
			routes = append(routes, rt)
			mu.Unlock()
		}
	})
	a, b := nodes[0], nodes[1]
	get(t, a.url+"/x")
	full(t, nodes, a)
	get(t, a.url+"/x")
	mu.Lock()
	defer mu.Unlock()
	// a local; then b's local serve of the hop, reported before a's
	// proxying, which is reported once the reply is through.
	want := []Route{{Kind: Local}, {Kind: Local}, {Kind: Proxied, Peer: b.name}}
	if fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Fatalf("routes %v, want %v", routes, want)
	}
}

func TestProxyKeepsEncodingAsAsked(t *testing.T) {
	nodes := startCluster(t, 2)
	a := nodes[0]
	full(t, nodes, a)
	req, _ := http.NewRequest("GET", a.url+"/x", nil)
	res, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := nodes[1].lastReq.Load().Header.Get("Accept-Encoding"); got != "" {
		t.Fatalf("peer was asked for Accept-Encoding %q the client never sent", got)
	}
}
