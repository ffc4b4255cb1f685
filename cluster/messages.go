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
	// msgState is the push/pull payload: the sender's own load report.
	msgState byte = 3
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

// decodeLoad reads a report; b starts after the kind byte.
func decodeLoad(b []byte) (*loadReport, error) {
	r := reader{b: b}
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
