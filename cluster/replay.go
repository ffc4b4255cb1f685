package cluster

import (
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// replayMax bounds the nonces remembered at once: about 20 MiB at most,
// which covers some 25 000 proxied requests a second arriving at one node
// under the default 30 s validity. Beyond it hops are refused rather than
// accepted unchecked: otherwise a client could flood the cluster with
// requests until replays pass.
const replayMax = 1 << 20

// Why a hop's nonce was refused.
type replayVerdict int

const (
	nonceNew  replayVerdict = iota // first sight: accepted and remembered
	nonceSeen                      // a replay within the validity window
	nonceFull                      // no room left to remember it
)

// replayGuard remembers the nonce of every hop accepted while the hop's
// signature is still valid. A nonce is signed together with its
// timestamp, so a replay carries the same timestamp: nonces are kept in
// buckets by timestamp, a lookup probes one bucket, and a bucket is
// dropped whole once every timestamp in it is too old to pass the
// freshness check anyway. Only hops whose signature verified get here, so
// a stranger cannot fill it.
type replayGuard struct {
	validity time.Duration
	span     int64 // milliseconds of timestamps per bucket
	seed     maphash.Seed

	// mu guards buckets and count.
	mu      sync.Mutex
	buckets map[int64]map[uint64]struct{} // by timestamp / span
	count   int
}

func newReplayGuard(validity time.Duration) *replayGuard {
	return &replayGuard{validity: validity, span: max(validity.Milliseconds()/4, 1),
		seed: maphash.MakeSeed(), buckets: map[int64]map[uint64]struct{}{}}
}

// admit records nonce, signed with timestamp ts (unix ms), unless it was
// seen before or there is no room.
func (g *replayGuard) admit(nonce string, ts int64, now time.Time) replayVerdict {
	key := maphash.String(g.seed, nonce)
	b := ts / g.span
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(now)
	set := g.buckets[b]
	if _, ok := set[key]; ok {
		return nonceSeen
	}
	if g.count >= replayMax {
		return nonceFull
	}
	if set == nil {
		set = map[uint64]struct{}{}
		g.buckets[b] = set
	}
	set[key] = struct{}{}
	g.count++
	return nonceNew
}

// expire drops the buckets whose newest timestamp is older than the
// validity allows. mu must be held.
func (g *replayGuard) expire(now time.Time) {
	oldest := now.Add(-g.validity).UnixMilli() // fresh refuses ts at or before this
	for b, set := range g.buckets {
		if (b+1)*g.span <= oldest {
			g.count -= len(set)
			delete(g.buckets, b)
		}
	}
}

// logLimiter lets one line a second through and counts the others, so a
// flood of replayed headers cannot flood the log.
type logLimiter struct {
	last    atomic.Int64 // unix second of the last line written
	dropped atomic.Int64 // lines suppressed since
}

func (l *logLimiter) note(log *slog.Logger, msg string, args ...any) {
	now := time.Now().Unix()
	if last := l.last.Load(); last == now || !l.last.CompareAndSwap(last, now) {
		l.dropped.Add(1)
		return
	}
	if n := l.dropped.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Warn(msg, args...)
}
