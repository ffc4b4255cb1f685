package cluster

import (
	"encoding/binary"
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
	tbl, dropped, err := c.fitSites(hashes)
	if err != nil || len(dropped) > 0 {
		t.Fatalf("fit sites: %v, dropped %v", err, dropped)
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
		c.siteView(&e, m.meta.Load())
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
	prefix := b[:len(b)-1] // without the empty sites count
	entry := func(id, h uint32) []byte {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, id), h)
	}
	cases := []struct {
		name string
		tail []byte
		ok   bool
	}{
		{"one entry", append([]byte{1}, entry(5, 6)...), true},
		{"count beyond the buffer", append([]byte{0xff, 0xff, 0x03}, entry(5, 6)...), false},
		{"short entry", []byte{1, 0, 0, 0, 5}, false},
		{"unsorted", append(append([]byte{2}, entry(9, 1)...), entry(5, 1)...), false},
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
	hashes := map[string]uint32{}
	for i := range 200 {
		hashes[string(rune('a'+i%26))+string(rune('0'+i/26))+".example"] = uint32(i)
	}
	c.mu.Lock()
	tbl, dropped, err := c.fitSites(hashes)
	c.mu.Unlock()
	if err != nil || len(dropped) == 0 || len(tbl.byName) != 200 {
		t.Fatalf("dropped %d, table %d, err %v", len(dropped), len(tbl.byName), err)
	}
	c.drift.local.Store(tbl)
	if _, err := c.selfMeta().encode(); err != nil {
		t.Fatalf("meta with the fitted sites: %v", err)
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
