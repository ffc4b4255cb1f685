package cluster

import (
	"encoding/binary"
	"errors"
)

// Every message this package sends through memberlist starts with one kind
// byte, dispatched by handleMsg.
const (
	// msgLoad is a load report sent straight to its receiver.
	msgLoad byte = 1
	// msgLoadGossip is a load report travelling by broadcast: a receiver
	// that learns something new from it queues it again.
	msgLoadGossip byte = 2
	// msgState is the push/pull payload: the sender's own load report,
	// then the site hashes that did not fit in its meta (siteList).
	msgState byte = 3
	// msgSites is a node's siteList, sent reliably to each peer when it
	// changes and to each newcomer.
	msgSites byte = 4
)

// errBadMsg exists so garbage from a newer or broken peer is dropped with
// one log line instead of being half-applied.
var errBadMsg = errors.New("cluster: malformed message")

// loadReport is one node's load at one moment.
type loadReport struct {
	Name     string
	Boot     uint32
	Seq      uint64 // grows with every report of one boot
	Inflight int64
	Capacity int
	Draining bool
}

func (l *loadReport) encode(kind byte) []byte {
	b := make([]byte, 0, 32+len(l.Name))
	var flags byte
	if l.Draining {
		flags |= flagDraining
	}
	b = append(b, kind, flags)
	b = appendString(b, l.Name)
	b = binary.BigEndian.AppendUint32(b, l.Boot)
	b = binary.AppendUvarint(b, l.Seq)
	b = binary.AppendUvarint(b, uint64(max(l.Inflight, 0)))
	b = binary.AppendUvarint(b, uint64(l.Capacity))
	return b
}

// decodeLoad reads a report; b starts after the kind byte. Bytes after
// the report are left to the caller (decodeState).
func decodeLoad(b []byte) (*loadReport, error) {
	r := reader{b: b}
	return readLoad(&r)
}

func readLoad(r *reader) (*loadReport, error) {
	flags := r.byte()
	l := &loadReport{Draining: flags&flagDraining != 0}
	l.Name = r.string()
	l.Boot = r.uint32()
	l.Seq = r.uvarint()
	l.Inflight = int64(r.uvarint())
	l.Capacity = int(r.uvarint())
	if r.bad || l.Name == "" {
		return nil, errBadMsg
	}
	return l, nil
}

// siteList is the site hashes of one node that did not fit in its meta,
// with the digest its meta names them by (nodeMeta.More).
type siteList struct {
	Name   string
	Digest uint32
	Sites  []siteHash // sorted by ID
}

// appendTo writes the list after b (a kind byte or a load report).
func (l *siteList) appendTo(b []byte) []byte {
	b = appendString(b, l.Name)
	b = binary.BigEndian.AppendUint32(b, l.Digest)
	b = binary.AppendUvarint(b, uint64(len(l.Sites)))
	for _, h := range l.Sites {
		b = binary.BigEndian.AppendUint32(b, h.ID)
		b = binary.BigEndian.AppendUint32(b, h.Hash)
	}
	return b
}

// decodeSiteList reads a list written by appendTo.
func decodeSiteList(r *reader) (*siteList, error) {
	l := &siteList{Name: r.string(), Digest: r.uint32()}
	l.Sites = r.sites()
	if r.bad || l.Name == "" || l.Digest == 0 {
		return nil, errBadMsg
	}
	return l, nil
}

// decodeState reads a push/pull payload (after the kind byte): the load
// report, then a siteList when the sender had one.
func decodeState(b []byte) (*loadReport, *siteList, error) {
	r := reader{b: b}
	l, err := readLoad(&r)
	if err != nil {
		return nil, nil, err
	}
	if len(r.b) == 0 {
		return l, nil, nil
	}
	sites, err := decodeSiteList(&r)
	if err != nil || sites.Name != l.Name {
		return l, nil, errBadMsg
	}
	return l, sites, nil
}
