package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"shoal/internal/forward"
)

// withHops gives a view cluster the lean path's pools.
func withHops(t *testing.T, c *Cluster) *Cluster {
	c.hops = newHopPools(newTransport(time.Second, nil), time.Second)
	t.Cleanup(c.hops.close)
	return c
}

// TestPickAsChoose: Pick, routing without an *http.Request, picks the
// node choose picks for the same client and site (policy and drift
// check shared), reserves nothing once it returns, and leaves what only
// the full chain routes (sticky, redirect mode) to it.
func TestPickAsChoose(t *testing.T) {
	own := map[string]uint32{"shop.example": 1}
	c := withHops(t, viewCluster(t, "ip_hash",
		sitePeer("a", own), sitePeer("b", own), sitePeer("drifted", map[string]uint32{"shop.example": 2})))
	setSites(t, c, own)
	picked := map[string]int{}
	for i := range 200 {
		client := fmt.Sprintf("198.51.100.%d", i)
		for _, site := range []string{"shop.example", "other.example"} {
			r := WithSite(mustReqNoT(), site)
			r.RemoteAddr = client + ":4321"
			want := routedTo(c, r)
			ch, ok := c.Pick(client, site)
			got := ch.Peer()
			if ch.Here() {
				got = "self"
			}
			if !ok || got != want {
				t.Fatalf("client %s, site %s: Pick %q (ok %v), choose %q", client, site, got, ok, want)
			}
			if site == "shop.example" {
				picked[got]++
			}
		}
	}
	if picked["drifted"] != 0 || picked["a"] == 0 || picked["b"] == 0 || picked["self"] == 0 {
		t.Errorf("shop.example went to %v", picked)
	}
	if in, _ := c.Accounting(); in != 0 {
		t.Errorf("%d in flight after Pick", in)
	}
	for _, tn := range []Tunables{{Policy: "ip_hash", Sticky: true}, {Policy: "ip_hash", Mode: "redirect"}} {
		c.tune.Store(newTuning(tn, nil))
		if _, ok := c.Pick("198.51.100.1", "shop.example"); ok {
			t.Errorf("Pick routed under %+v", tn)
		}
	}
}

// TestRelay: Relay sends what the full chain's hop sends (the signed hop
// header the peer accepts, forwarding fields, Via, the caller's request
// ID in place of the client's, no client cluster field) and fixes the
// answer as fixResponse does: the peer's signed load applied and kept
// from the client, a Location to the peer's address pointed back at the
// client's. A peer that does not answer leaves dst untouched and is
// marked failed.
func TestRelay(t *testing.T) {
	var got atomic.Pointer[http.Request]
	var c atomic.Pointer[Cluster]
	var self atomic.Value // the peer's URL
	peerSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r)
		w.Header().Set(loadHeader, c.Load().keys.loadValue(&loadReport{Name: "peer", Boot: 1, Seq: 1, Inflight: 3, Capacity: 4}, time.Now()))
		w.Header().Set("Location", self.Load().(string)+"/next")
		w.WriteHeader(http.StatusFound)
		fmt.Fprint(w, "moved")
	}))
	defer peerSrv.Close()
	self.Store(peerSrv.URL)
	peer := fakePeer(peerSpec{name: "peer"})
	peer.setMeta(&nodeMeta{Capacity: 4, PeerURL: peerSrv.URL, PublicURL: peerSrv.URL})
	c.Store(withHops(t, viewCluster(t, "round_robin", peer)))
	cl := c.Load()
	ch := Choice{m: peer, pool: cl.hops.get(canonicalAddr(peer.peerURL.Load()))}
	req := &HopRequest{Method: "GET", Target: "/x?y=1", Host: "shop.example",
		Lines:  "Accept: */*\r\nX-Request-Id: client-id\r\nX-Shoal-Load: forged\r\nConnection: keep-alive\r\n",
		Remote: "203.0.113.7:5555", Client: "203.0.113.7", Scheme: "https", Via: "1.0 corp", RequestID: "node-id"}
	var out bytes.Buffer
	sink := &forward.WireSink{W: &out}
	wrote, err := cl.Relay(context.Background(), ch, req, sink)
	if !wrote || err != nil {
		t.Fatalf("Relay: wrote %v, %v", wrote, err)
	}
	r := got.Load()
	for k, want := range map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
		"X-Forwarded-Host": "shop.example", "Via": "1.0 corp, 1.1 self", "X-Request-Id": "node-id", "Accept": "*/*"} {
		if v := strings.Join(r.Header.Values(k), "|"); v != want {
			t.Errorf("peer got %s %q, want %q", k, v, want)
		}
	}
	if r.Header.Get(loadHeader) != "" {
		t.Errorf("the client's %s reached the peer", loadHeader)
	}
	h, ok := cl.keys.checkHop(r.Header.Get(hopHeader), "GET", "shop.example", "/x?y=1", "peer", time.Minute, time.Now())
	if !ok || h.from != "self" || h.client != "203.0.113.7:5555" {
		t.Errorf("hop header %q: ok %v, %+v", r.Header.Get(hopHeader), ok, h)
	}
	resp := out.String()
	if strings.Contains(resp, loadHeader) || !strings.Contains(resp, "\r\nLocation: https://shop.example/next\r\n") ||
		!strings.HasSuffix(resp, "moved") || sink.Status != http.StatusFound {
		t.Errorf("client got %q", resp)
	}
	if peer.inflight.Load() != 3 {
		t.Errorf("peer's load not applied: in flight %d", peer.inflight.Load())
	}

	peerSrv.Close() // its port refuses now
	out.Reset()
	if wrote, err := cl.Relay(context.Background(), ch, req, sink); wrote || err == nil || out.Len() != 0 {
		t.Fatalf("to a closed peer: wrote %v, %v, %q", wrote, err, out.String())
	}
	if peer.healthy(time.Now().UnixNano()) {
		t.Error("the failed peer is not marked")
	}
}
