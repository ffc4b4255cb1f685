package cluster

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Drift: every node publishes, per site, a short hash of what the site
// answers with (its config and the names and sizes of its files; the
// server computes it). A site's requests go only to peers whose hash for
// that site equals this node's, so during a rolling change no client gets
// answers from two versions of a site.
//
// In the meta a site is 8 bytes: a 32-bit hash of its name (so names,
// which may be long host names, never travel) and the first 32 bits of
// its content hash. memberlist's 512-byte meta leaves room for about 45
// sites; the rest go, with a digest the meta names them by, in a msgSites
// message sent reliably to every peer when they change and to each
// newcomer, and in the state exchange (push/pull) for repair. A peer uses
// such a list only while its digest is the one the sender's meta names,
// and until it has one, a site in it counts as drifted: the safe side.

// siteHash is one site as published: both halves are 32-bit hashes.
type siteHash struct {
	ID   uint32 // siteID of the site's name
	Hash uint32 // the site's content hash
}

// siteEntryBytes is the size of one siteHash in the meta.
const siteEntryBytes = 8

// metaSlack is meta room left free when sites are fitted in.
const metaSlack = 16

// siteID names a site on the wire.
func siteID(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32()
}

// siteTable is this node's own hashes, never changed once stored.
type siteTable struct {
	byName    map[string]siteHash
	published []siteHash // what fits in the meta, sorted by ID
	more      *siteList  // the rest, or nil
}

// driftState is the Cluster's share of drift checking; its zero value is
// "no hashes yet", under which nothing is filtered.
type driftState struct {
	local atomic.Pointer[siteTable]
	watch atomic.Pointer[siteWatch]
}

// siteWatch is the loop WatchSites started.
type siteWatch struct {
	kick      chan struct{}
	newcomers chan string // peers to send this node's siteList to
}

// siteKey is the context key under which WithSite names a request's site.
type siteKey struct{}

// WithSite returns r marked as a request for the site called name (the
// name given in the map to SetSites), so the policy considers only peers
// whose hash for that site equals this node's. A request with no site is
// balanced over every available peer.
func WithSite(r *http.Request, name string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), siteKey{}, name))
}

// siteFilter is one request's drift check: when on, only peers that
// published hash h for the site qualify. A value, so the request path
// allocates nothing for it.
type siteFilter struct {
	h  siteHash
	on bool
}

// siteOf returns the filter for r: off when r names no site or this node
// has no hash for it (nothing to compare).
func (c *Cluster) siteOf(r *http.Request) siteFilter {
	name, ok := r.Context().Value(siteKey{}).(string)
	if !ok {
		return siteFilter{}
	}
	return c.siteNamed(name)
}

// siteNamed is the filter for a request of the site called name.
func (c *Cluster) siteNamed(name string) siteFilter {
	t := c.drift.local.Load()
	if t == nil {
		return siteFilter{}
	}
	h, ok := t.byName[name]
	return siteFilter{h: h, on: ok}
}

// agrees reports whether m published the same hash for the filter's
// site as this node. A peer that published no hash for it (an older
// version, a node still starting, a site it lacks) does not agree.
func (m *member) agrees(f siteFilter) bool {
	if !f.on {
		return true
	}
	h, ok := m.siteHash(m.meta.Load(), f.h.ID)
	return ok && h == f.h.Hash
}

// siteHash returns the hash m published for the site with id: in meta,
// else in the siteList that meta names.
func (m *member) siteHash(meta *nodeMeta, id uint32) (uint32, bool) {
	if meta == nil {
		return 0, false
	}
	if h, ok := findSite(meta.Sites, id); ok {
		return h, true
	}
	if meta.More == 0 {
		return 0, false
	}
	if l := m.more.Load(); l != nil && l.Digest == meta.More {
		return findSite(l.Sites, id)
	}
	return 0, false
}

// findSite looks id up in a list sorted by ID.
func findSite(list []siteHash, id uint32) (uint32, bool) {
	i, ok := slices.BinarySearchFunc(list, id, func(s siteHash, id uint32) int { return cmp.Compare(s.ID, id) })
	if !ok {
		return 0, false
	}
	return list[i].Hash, true
}

// SetSites publishes this node's hash of each site by name, replacing the
// previous set; peers see it within a gossip round. It returns whether
// anything changed. It may block up to a second while the news goes out;
// it must not be called from a memberlist callback.
func (c *Cluster) SetSites(hashes map[string]uint32) (bool, error) {
	c.tuneMu.Lock() // orders meta publishing with Retune
	defer c.tuneMu.Unlock()
	if old := c.drift.local.Load(); old != nil && sameHashes(old.byName, hashes) {
		return false, nil
	}
	c.mu.Lock()
	t, dropped, err := c.fitSites(hashes)
	if err != nil {
		c.mu.Unlock()
		return false, err
	}
	c.drift.local.Store(t)
	meta, err := c.selfMeta().encode()
	if err == nil {
		c.meta = meta
	}
	c.mu.Unlock()
	if err != nil {
		return false, err
	}
	if dropped > 0 {
		c.log.Info("more sites than the node meta holds: the rest travel by message", "in_meta", len(t.published), "by_message", dropped)
	}
	if t.more != nil {
		// First, so a peer that sees the new digest has the list already.
		c.sendSites(t.more, *c.peers.Load())
	}
	if err := c.ml.UpdateNode(time.Second); err != nil {
		c.log.Warn("publish site hashes; peers learn them at the next state exchange", "err", err)
	}
	return true, nil
}

// sendSites sends l to each of peers over the reliable channel.
func (c *Cluster) sendSites(l *siteList, peers []*member) {
	msg := l.appendTo([]byte{msgSites})
	for _, m := range peers {
		n := m.node.Load()
		if n == nil {
			continue
		}
		if err := c.ml.SendReliable(n, msg); err != nil {
			c.log.Debug("send site hashes", "to", m.name, "err", err)
		}
	}
}

// offerSites queues this node's siteList for a newcomer; called from a
// memberlist callback, so it never blocks and never calls memberlist. A
// full queue drops the offer: the next state exchange repairs it.
func (c *Cluster) offerSites(name string) {
	w, t := c.drift.watch.Load(), c.drift.local.Load()
	if w == nil || t == nil || t.more == nil {
		return
	}
	select {
	case w.newcomers <- name:
	default:
	}
}

// handleSites keeps a peer's siteList; agrees uses it while the peer's
// meta names its digest.
func (c *Cluster) handleSites(l *siteList) {
	if l.Name == c.opts.Name {
		return
	}
	if m := c.lookup(l.Name); m != nil {
		m.more.Store(l)
	}
}

// fitSites builds the table for hashes: as many sites as the meta has
// room for in the meta (by name order), the rest in a siteList. mu must
// be held.
func (c *Cluster) fitSites(hashes map[string]uint32) (*siteTable, int, error) {
	base := c.selfMeta()
	base.Sites, base.More = nil, 0
	b, err := base.encode()
	if err != nil {
		return nil, 0, err
	}
	// 3 bytes for the count's varint; metaSlack so a later Retune (a
	// longer capacity varint, a config hash) still fits.
	room := (memberlist.MetaMaxSize - len(b) - 3 - metaSlack) / siteEntryBytes
	names := make([]string, 0, len(hashes))
	for name := range hashes {
		names = append(names, name)
	}
	slices.Sort(names)
	t := &siteTable{byName: make(map[string]siteHash, len(hashes))}
	var rest []siteHash
	for _, name := range names {
		h := siteHash{ID: siteID(name), Hash: hashes[name]}
		t.byName[name] = h
		if len(t.published) < room {
			t.published = append(t.published, h)
		} else {
			rest = append(rest, h)
		}
	}
	byID := func(a, b siteHash) int { return cmp.Compare(a.ID, b.ID) }
	slices.SortFunc(t.published, byID)
	if len(rest) > 0 {
		slices.SortFunc(rest, byID)
		t.more = &siteList{Name: c.opts.Name, Digest: digestSites(rest), Sites: rest}
	}
	return t, len(rest), nil
}

// digestSites names a siteList in the meta; never 0, which means none.
func digestSites(list []siteHash) uint32 {
	h := fnv.New32a()
	var b [siteEntryBytes]byte
	for _, s := range list {
		binary.BigEndian.PutUint32(b[:4], s.ID)
		binary.BigEndian.PutUint32(b[4:], s.Hash)
		h.Write(b[:])
	}
	return h.Sum32() | 1
}

func sameHashes(old map[string]siteHash, next map[string]uint32) bool {
	if len(old) != len(next) {
		return false
	}
	for name, h := range next {
		if o, ok := old[name]; !ok || o.Hash != h {
			return false
		}
	}
	return true
}

// publishedSites is what selfMeta puts in the meta: the sites that fit
// and the digest of the rest (0: none).
func (c *Cluster) publishedSites() ([]siteHash, uint32) {
	t := c.drift.local.Load()
	switch {
	case t == nil:
		return nil, 0
	case t.more == nil:
		return t.published, 0
	}
	return t.published, t.more.Digest
}

// moreSites is this node's siteList for the state exchange, or nil.
func (c *Cluster) moreSites() *siteList {
	if t := c.drift.local.Load(); t != nil {
		return t.more
	}
	return nil
}

// WatchSites publishes compute's hashes now and then every interval (at
// most a minute, as SPEC asks) and at each RefreshSites, until Shutdown.
// compute walks the sites' files, so it runs on the watcher's goroutine,
// never on a request's. Call it once.
func (c *Cluster) WatchSites(interval time.Duration, compute func() map[string]uint32) {
	if interval <= 0 || interval > time.Minute {
		interval = time.Minute
	}
	w := &siteWatch{kick: make(chan struct{}, 1), newcomers: make(chan string, 64)}
	if !c.drift.watch.CompareAndSwap(nil, w) {
		return
	}
	c.publishSites(compute)
	c.wg.Add(1)
	go c.watchSites(w, interval, compute)
}

// RefreshSites asks the watcher to compute and publish again soon (after
// a reload); it never blocks.
func (c *Cluster) RefreshSites() {
	if w := c.drift.watch.Load(); w != nil {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

func (c *Cluster) watchSites(w *siteWatch, interval time.Duration, compute func() map[string]uint32) {
	defer c.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case name := <-w.newcomers:
			if l := c.moreSites(); l != nil {
				if m := c.peer(name); m != nil {
					c.sendSites(l, []*member{m})
				}
			}
			continue
		case <-tick.C:
		case <-w.kick:
		}
		c.publishSites(compute)
	}
}

func (c *Cluster) publishSites(compute func() map[string]uint32) {
	changed, err := c.SetSites(compute())
	switch {
	case err != nil:
		c.log.Error("publish site hashes", "err", err)
	case changed:
		c.log.Debug("site hashes published")
	}
}

// siteView fills a Member's Sites (by this node's site names) and Drift
// (this node's sites whose hash the member lacks or differs in); m nil
// means e is this node itself.
func (c *Cluster) siteView(e *Member, m *member) {
	t := c.drift.local.Load()
	if t == nil {
		return
	}
	e.Sites = make(map[string]string, len(t.byName))
	var meta *nodeMeta
	if m != nil {
		meta = m.meta.Load()
	}
	for name, own := range t.byName {
		if m == nil {
			e.Sites[name] = fmt.Sprintf("%08x", own.Hash)
			continue
		}
		h, ok := m.siteHash(meta, own.ID)
		if ok {
			e.Sites[name] = fmt.Sprintf("%08x", h)
		}
		if !ok || h != own.Hash {
			e.Drift = append(e.Drift, name)
		}
	}
	slices.Sort(e.Drift)
}
