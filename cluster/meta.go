package cluster

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
)

// metaVersion is the layout of nodeMeta on the wire. Newer layouts only
// append fields, so an older node decodes the prefix it knows and ignores
// the rest; the version byte says which fields are there at least.
const metaVersion = 2

// nodeMeta is what a node publishes in its memberlist meta: facts that
// change rarely (the in-flight count travels in load messages instead,
// because every meta change is a full alive broadcast).
type nodeMeta struct {
	Draining  bool
	Capacity  int
	Started   int64  // unix milliseconds
	Boot      uint32 // random per start: tells a restart from the old process
	PeerURL   string
	PublicURL string
	Version   string
	Config    string
	// Sites (layout 2 on) are the node's site hashes, sorted by ID; nil
	// from an older node, which then agrees on no site (drift.go).
	Sites []siteHash
	// More, when not zero, is the digest of the sites that did not fit
	// in the meta; they travel in msgSites and the state exchange.
	More uint32
}

const flagDraining = 1

// errMetaShort exists so a truncated or foreign meta is refused instead of
// half-read.
var errMetaShort = errors.New("cluster: node meta truncated")

func (m *nodeMeta) encode() ([]byte, error) {
	b := make([]byte, 0, 64+len(m.PeerURL)+len(m.PublicURL)+len(m.Version)+len(m.Config)+siteEntryBytes*len(m.Sites))
	var flags byte
	if m.Draining {
		flags |= flagDraining
	}
	b = append(b, metaVersion, flags)
	b = binary.AppendUvarint(b, uint64(m.Capacity))
	b = binary.AppendVarint(b, m.Started)
	b = binary.BigEndian.AppendUint32(b, m.Boot)
	for _, s := range []string{m.PeerURL, m.PublicURL, m.Version, m.Config} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Sites)))
	for _, h := range m.Sites {
		b = binary.BigEndian.AppendUint32(b, h.ID)
		b = binary.BigEndian.AppendUint32(b, h.Hash)
	}
	b = binary.BigEndian.AppendUint32(b, m.More)
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("cluster: node meta is %d bytes, memberlist allows %d: shorten peer_url or public_url", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

func decodeMeta(b []byte) (*nodeMeta, error) {
	if len(b) < 2 || b[0] < 1 {
		return nil, errMetaShort
	}
	m := &nodeMeta{Draining: b[1]&flagDraining != 0}
	r := reader{b: b[2:]}
	m.Capacity = int(r.uvarint())
	m.Started = r.varint()
	m.Boot = r.uint32()
	m.PeerURL = r.string()
	m.PublicURL = r.string()
	m.Version = r.string()
	m.Config = r.string()
	if b[0] >= 2 {
		m.Sites = r.sites()
		m.More = r.uint32()
	}
	if r.bad {
		return nil, errMetaShort
	}
	return m, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes the varint layouts; the first error sticks in bad so a
// decoder checks once at the end.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uint32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// sites reads a count and that many siteHash entries, refusing a count
// the buffer cannot hold before allocating for it.
func (r *reader) sites() []siteHash {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)/siteEntryBytes) {
		r.bad = true
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]siteHash, n)
	for i := range out {
		out[i] = siteHash{ID: r.uint32(), Hash: r.uint32()}
	}
	if !slices.IsSortedFunc(out, func(a, b siteHash) int { return cmp.Compare(a.ID, b.ID) }) {
		r.bad = true // binary search needs the order
		return nil
	}
	return out
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return ""
	}
	s := string(r.b[:n]) // copies: the buffer belongs to memberlist
	r.b = r.b[n:]
	return s
}
