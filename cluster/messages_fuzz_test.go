package cluster

import (
	"reflect"
	"slices"
	"testing"
)

// FuzzDecodeMeta: whatever a peer publishes, decoding never panics, a
// decoded meta re-encodes to one that decodes alike, and its site list
// is sorted (the filter's binary search depends on it).
func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []*nodeMeta{
		{Capacity: 4, PeerURL: "http://a:1", PublicURL: "http://a:1"},
		{Draining: true, Capacity: 64, Started: 1, Boot: 2, PeerURL: "http://a:1", PublicURL: "https://a", Version: "v", Config: "c",
			Sites: []siteHash{{1, 2}, {3, 4}}, More: 9},
	} {
		b, err := m.encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		if !slices.IsSortedFunc(m.Sites, func(a, b siteHash) int { return int(int64(a.ID) - int64(b.ID)) }) {
			t.Fatalf("unsorted sites accepted: %v", m.Sites)
		}
		again, err := m.encode()
		if err != nil {
			return // larger than memberlist allows: never published
		}
		m2, err := decodeMeta(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %+v -> %+v (%v)", m, m2, err)
		}
	})
}

// FuzzHandleMsg: any gossip payload is applied whole or dropped, never a
// panic, and a site list is only ever kept for a known member.
func FuzzHandleMsg(f *testing.F) {
	f.Add((&loadReport{Name: "b", Boot: 1, Seq: 1, Inflight: 2, Capacity: 4}).encode(msgLoad))
	f.Add((&siteList{Name: "b", Digest: 3, Sites: []siteHash{{1, 2}}}).appendTo([]byte{msgSites}))
	f.Add((&siteList{Name: "b", Digest: 3}).appendTo((&loadReport{Name: "b", Boot: 1, Seq: 2}).encode(msgState)))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := viewCluster(t, "least_loaded", fakePeer(peerSpec{name: "b"}))
		c.handleMsg(b)
		for name, m := range c.members {
			if l := m.more.Load(); l != nil && (l.Name != name || l.Digest == 0) {
				t.Fatalf("site list %+v kept for %s", l, name)
			}
		}
		if c.lookup("b").inflight.Load() < 0 {
			t.Fatal("negative in-flight applied")
		}
	})
}
