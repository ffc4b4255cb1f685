package cluster

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// setSites gives a view cluster its own site hashes without a network.
func setSites(t testing.TB, c *Cluster, hashes map[string]uint32) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	tbl, _, err := c.fitSites(hashes)
	if err != nil {
		t.Fatalf("fit sites: %v", err)
	}
	c.drift.local.Store(tbl)
}

// sitePeer is a live peer publishing hashes by site name (nil: an older
// node that publishes none).
func sitePeer(name string, hashes map[string]uint32) *member {
	m := fakePeer(peerSpec{name: name})
	meta := *m.meta.Load()
	for site, h := range hashes {
		meta.Sites = append(meta.Sites, siteHash{ID: siteID(site), Hash: h})
	}
	slices.SortFunc(meta.Sites, func(a, b siteHash) int { return int(int64(a.ID) - int64(b.ID)) })
	m.setMeta(&meta)
	return m
}

func TestDriftFilterKeepsSiteOnAgreeingPeers(t *testing.T) {
	own := map[string]uint32{"shop.example": 1, "blog.example": 2}
	same := sitePeer("same", own)
	drifted := sitePeer("drifted", map[string]uint32{"shop.example": 99, "blog.example": 2})
	lacking := sitePeer("lacking", map[string]uint32{"blog.example": 2})
	old := sitePeer("old", nil)
	c := viewCluster(t, "round_robin", same, drifted, lacking, old)
	setSites(t, c, own)

	cases := []struct {
		site string // "" sends no site: every peer qualifies
		want []string
	}{
		{"shop.example", []string{"same", "self"}},
		{"blog.example", []string{"drifted", "lacking", "same", "self"}},
		{"unknown.example", []string{"drifted", "lacking", "old", "same", "self"}}, // no own hash: nothing to compare
		{"", []string{"drifted", "lacking", "old", "same", "self"}},
	}
	for _, tc := range cases {
		seen := map[string]bool{}
		for range 50 {
			r := mustReqNoT()
			if tc.site != "" {
				r = WithSite(r, tc.site)
			}
			seen[routedTo(c, r)] = true
		}
		var got []string
		for name := range seen {
			got = append(got, name)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("site %q went to %v, want %v", tc.site, got, tc.want)
		}
	}
}

// routedTo is where c sends r.
func routedTo(c *Cluster, r *http.Request) string {
	if m := c.choose(c.tune.Load(), r, 0, nil); m != nil {
		return m.name
	}
	return "self"
}

func TestDriftShownPerMember(t *testing.T) {
	own := map[string]uint32{"shop.example": 1, "blog.example": 2}
	c := viewCluster(t, "least_loaded",
		sitePeer("n10", own),
		sitePeer("n2", map[string]uint32{"shop.example": 99, "blog.example": 2}),
		sitePeer("n3", nil))
	setSites(t, c, own)
	want := map[string][]string{"n10": nil, "n2": {"shop.example"}, "n3": {"blog.example", "shop.example"}}
	for name, m := range c.members {
		var e Member
		c.siteView(&e, m)
		if !slices.Equal(e.Drift, want[name]) {
			t.Errorf("%s: drift %v, want %v", name, e.Drift, want[name])
		}
		if name == "n2" && (e.Sites["shop.example"] != "00000063" || e.Sites["blog.example"] != "00000002") {
			t.Errorf("n2: sites %v", e.Sites)
		}
	}
	var self Member
	c.siteView(&self, nil)
	if self.Sites["shop.example"] != "00000001" || len(self.Drift) != 0 {
		t.Errorf("self: sites %v drift %v", self.Sites, self.Drift)
	}
}

func TestMetaSitesDecodeRefusesLies(t *testing.T) {
	base := &nodeMeta{Capacity: 1, PeerURL: "http://a:1", PublicURL: "http://a:1"}
	b, err := base.encode()
	if err != nil {
		t.Fatal(err)
	}
	prefix := b[:len(b)-5] // without the empty sites count and the digest
	entry := func(id, h uint32) []byte {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, id), h)
	}
	cases := []struct {
		name string
		tail []byte
		ok   bool
	}{
		{"one entry", append(append([]byte{1}, entry(5, 6)...), 0, 0, 0, 0), true},
		{"no digest", append([]byte{1}, entry(5, 6)...), false},
		{"count beyond the buffer", append([]byte{0xff, 0xff, 0x03}, entry(5, 6)...), false},
		{"short entry", []byte{1, 0, 0, 0, 5}, false},
		{"unsorted", append(append(append([]byte{2}, entry(9, 1)...), entry(5, 1)...), 0, 0, 0, 0), false},
	}
	for _, tc := range cases {
		_, err := decodeMeta(append(slices.Clone(prefix), tc.tail...))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
	v1 := slices.Clone(prefix)
	v1[0] = 1
	if m, err := decodeMeta(v1); err != nil || m.Sites != nil {
		t.Errorf("layout 1 meta: %+v %v", m, err)
	}
}

func TestTooManySitesForMeta(t *testing.T) {
	c := viewCluster(t, "least_loaded")
	c.opts.PeerURL = "http://10.0.0.1:8080"
	hashes := manySites(200, 0)
	c.mu.Lock()
	tbl, rest, err := c.fitSites(hashes)
	c.mu.Unlock()
	if err != nil || rest == 0 || len(tbl.byName) != 200 || len(tbl.published)+len(tbl.more.Sites) != 200 {
		t.Fatalf("rest %d, table %d, err %v", rest, len(tbl.byName), err)
	}
	c.drift.local.Store(tbl)
	meta := c.selfMeta()
	if meta.More != tbl.more.Digest || meta.More == 0 {
		t.Fatalf("meta names digest %x, want %x", meta.More, tbl.more.Digest)
	}
	if _, err := meta.encode(); err != nil {
		t.Fatalf("meta with the fitted sites: %v", err)
	}
}

// manySites is n sites whose hashes start at base.
func manySites(n int, base uint32) map[string]uint32 {
	out := map[string]uint32{}
	for i := range n {
		out[fmt.Sprintf("site%03d.example", i)] = base + uint32(i)
	}
	return out
}

func TestSitesBeyondMetaAgreeByMessage(t *testing.T) {
	own := manySites(120, 0)
	c := viewCluster(t, "round_robin")
	setSites(t, c, own)
	tbl := c.drift.local.Load()
	if tbl.more == nil {
		t.Fatal("120 sites fit in the meta: the test needs some beyond it")
	}
	last := "site119.example" // in the list, by name order

	// A peer with the same 120 sites: its meta names the list's digest.
	peer := fakePeer(peerSpec{name: "p"})
	meta := *peer.meta.Load()
	meta.Sites, meta.More = tbl.published, tbl.more.Digest
	peer.setMeta(&meta)
	c.members["p"] = peer
	c.mu.Lock()
	c.rebuildPeers()
	c.mu.Unlock()

	f := siteFilter{h: tbl.byName[last], on: true}
	if peer.agrees(f) {
		t.Fatal("agreed before the list arrived")
	}
	list := *tbl.more
	list.Name = "p"
	c.handleMsg(list.appendTo([]byte{msgSites}))
	if !peer.agrees(f) {
		t.Fatal("no agreement after the list arrived")
	}
	var e Member
	c.siteView(&e, peer)
	if len(e.Drift) != 0 || len(e.Sites) != 120 {
		t.Fatalf("drift %v, %d sites", e.Drift, len(e.Sites))
	}

	// The peer's meta moves on to another list: the old one no longer counts.
	meta.More ^= 2
	peer.setMeta(&meta)
	if peer.agrees(f) {
		t.Fatal("a list with a stale digest still counts")
	}

	// The state exchange carries the list too.
	state := (&loadReport{Name: "p", Boot: 1, Seq: 1, Capacity: 4}).encode(msgState)
	list.Digest = meta.More
	c.handleMsg(list.appendTo(state))
	if !peer.agrees(f) {
		t.Fatal("list in the state exchange not taken")
	}
	// Junk after a state's report is dropped, the report still counts.
	c.handleMsg(append((&loadReport{Name: "p", Boot: 1, Seq: 2, Inflight: 3, Capacity: 4}).encode(msgState), 1, 'p', 0))
	if peer.inflight.Load() != 3 {
		t.Fatal("a state with a broken site list lost its load report")
	}
}

// peerSiteHash is the hash b holds for a's site, as /api/cluster shows it.
func peerSiteHash(b *testNode, a, site string) string {
	m, _ := memberOf(b.c, a)
	return m.Sites[site]
}

func TestSiteHashesRepublished(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	var v atomic.Uint32
	v.Store(1)
	compute := func() map[string]uint32 { return map[string]uint32{"shop.example": v.Load()} }
	// b needs its own hash of the site for /api/cluster to name it.
	b.c.WatchSites(time.Minute, func() map[string]uint32 { return map[string]uint32{"shop.example": 1} })
	a.c.WatchSites(time.Minute, compute)
	eventually(t, 5*time.Second, "b sees a's first hash", func() bool { return peerSiteHash(b, "n0", "shop.example") == "00000001" })

	v.Store(2)
	a.c.RefreshSites() // as a reload does
	eventually(t, 5*time.Second, "b sees a's hash after a refresh", func() bool { return peerSiteHash(b, "n0", "shop.example") == "00000002" })
	if m, _ := memberOf(b.c, "n0"); !slices.Equal(m.Drift, []string{"shop.example"}) {
		t.Errorf("b's drift for a: %v", m.Drift)
	}
}

func TestSiteHashesRecomputedByTicker(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	var v atomic.Uint32
	v.Store(1)
	b.c.WatchSites(time.Minute, func() map[string]uint32 { return map[string]uint32{"s": 1} })
	a.c.WatchSites(50*time.Millisecond, func() map[string]uint32 { return map[string]uint32{"s": v.Load()} })
	eventually(t, 5*time.Second, "b sees a's first hash", func() bool { return peerSiteHash(b, "n0", "s") == "00000001" })
	v.Store(3) // a file changed: no reload, the ticker finds it
	eventually(t, 5*time.Second, "b sees a's recomputed hash", func() bool { return peerSiteHash(b, "n0", "s") == "00000003" })
}

func TestSitesBeyondMetaBetweenRealNodes(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	var changed atomic.Bool
	aSites := func() map[string]uint32 {
		m := manySites(150, 0)
		if changed.Load() {
			m["site149.example"] = 7777 // beyond the meta, by name order
		}
		return m
	}
	b.c.WatchSites(time.Minute, func() map[string]uint32 { return manySites(150, 0) })
	a.c.WatchSites(time.Minute, aSites)
	drift := func() []string { m, _ := memberOf(b.c, "n0"); return m.Drift }
	eventually(t, 5*time.Second, "b agrees with a on all 150 sites", func() bool {
		m, _ := memberOf(b.c, "n0")
		return len(m.Sites) == 150 && len(m.Drift) == 0
	})
	changed.Store(true)
	a.c.RefreshSites()
	eventually(t, 5*time.Second, "b sees a's site149 drift", func() bool {
		return slices.Equal(drift(), []string{"site149.example"})
	})

	// A newcomer with the same sites learns a's list as it joins.
	c := startNode(t, "n2", []string{a.c.GossipAddr()})
	c.c.WatchSites(time.Minute, aSites)
	converged(t, a, b, c)
	eventually(t, 5*time.Second, "the newcomer agrees with a on all 150 sites", func() bool {
		m, _ := memberOf(c.c, "n0")
		return len(m.Sites) == 150 && len(m.Drift) == 0
	})
}
