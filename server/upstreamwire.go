package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The upstream messages nodes exchange (upstreamsync.go), each one UDP
// packet on its own cluster channel. Both start with a version byte so a
// node of a later release can change them without a peer misreading.
//
//	health: version, state (0 up, 1 down), remaining skip in ms (uvarint),
//	        upstream, target
//	load:   version, node, then until the end: upstream, target,
//	        in-flight (uvarint)
//
// A string is a uvarint length and its bytes. The skip is a duration, not
// a time, so the nodes' clocks need not agree.
const upstreamWireVersion = 1

// Bounds a decoder enforces whatever a packet claims.
const (
	maxWireString = 512            // an upstream name, target or node name
	maxRemaining  = 24 * time.Hour // a longer skip is a bug or an attack
	maxInflight   = 1 << 32        // far beyond any node's capacity
)

var errUpstreamWire = errors.New("upstream message")

// healthNews says a target was found down (skip it for Remaining) or up.
type healthNews struct {
	Down      bool
	Remaining time.Duration
	Upstream  string
	Target    string
}

// loadEntry is one node's in-flight count to one target.
type loadEntry struct {
	Upstream string
	Target   string
	N        int64
}

// appendHealth encodes h; false when a name is too long to send.
func appendHealth(b []byte, h healthNews) ([]byte, bool) {
	if len(h.Upstream) > maxWireString || len(h.Target) > maxWireString {
		return b, false
	}
	state := byte(0)
	if h.Down {
		state = 1
	}
	rem := min(max(h.Remaining, 0), maxRemaining)
	b = append(b, upstreamWireVersion, state)
	b = binary.AppendUvarint(b, uint64(rem/time.Millisecond))
	b = appendWireString(b, h.Upstream)
	b = appendWireString(b, h.Target)
	return b, true
}

func parseHealth(b []byte) (healthNews, error) {
	var h healthNews
	r := wireReader{b: b}
	if v := r.byte(); v != upstreamWireVersion {
		return h, fmt.Errorf("%w: version %d", errUpstreamWire, v)
	}
	switch r.byte() {
	case 0:
	case 1:
		h.Down = true
	default:
		return h, fmt.Errorf("%w: bad state", errUpstreamWire)
	}
	ms := r.uvarint(uint64(maxRemaining / time.Millisecond))
	h.Remaining = time.Duration(ms) * time.Millisecond
	h.Upstream, h.Target = r.string(), r.string()
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes", errUpstreamWire, len(r.b))
	}
	return h, r.err
}

// appendLoads encodes node's entries into packets of at most limit bytes;
// an entry too long for any packet is left out.
func appendLoads(node string, entries []loadEntry, limit int) [][]byte {
	if len(node) > maxWireString {
		return nil
	}
	head := appendWireString([]byte{upstreamWireVersion}, node)
	var out [][]byte
	pkt := head
	for _, e := range entries {
		if len(e.Upstream) > maxWireString || len(e.Target) > maxWireString {
			continue
		}
		one := appendWireString(nil, e.Upstream)
		one = appendWireString(one, e.Target)
		one = binary.AppendUvarint(one, uint64(min(max(e.N, 0), maxInflight)))
		if len(head)+len(one) > limit {
			continue
		}
		if len(pkt)+len(one) > limit {
			out = append(out, pkt)
			pkt = head
		}
		pkt = append(pkt[:len(pkt):len(pkt)], one...)
	}
	if len(pkt) > len(head) {
		out = append(out, pkt)
	}
	return out
}

func parseLoads(b []byte) (node string, entries []loadEntry, err error) {
	r := wireReader{b: b}
	if v := r.byte(); v != upstreamWireVersion {
		return "", nil, fmt.Errorf("%w: version %d", errUpstreamWire, v)
	}
	node = r.string()
	for r.err == nil && len(r.b) > 0 {
		e := loadEntry{Upstream: r.string(), Target: r.string()}
		e.N = int64(r.uvarint(maxInflight))
		entries = append(entries, e)
	}
	if r.err != nil {
		return "", nil, r.err
	}
	return node, entries, nil
}

func appendWireString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// wireReader reads a packet; the first error sticks and later reads
// return zero values.
type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errUpstreamWire, what)
	}
	r.b = nil
}

func (r *wireReader) byte() byte {
	if len(r.b) == 0 {
		r.fail("short")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *wireReader) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.fail("bad number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) string() string {
	n := r.uvarint(maxWireString)
	if r.err != nil || uint64(len(r.b)) < n {
		r.fail("short string")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
