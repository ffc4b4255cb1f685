package route

import (
	"sync"
	"time"
)

// bucket is a token bucket: tokens refill at the owner's rate up to its
// capacity; a request takes one. Tokens may go below zero when peers
// report what they admitted, so the local node waits its share out.
type bucket struct {
	tokens float64
	last   time.Time
}

// buckets is a set of token buckets of one rate and capacity, one per
// key (a client), created full on first use.
type buckets struct {
	rate     float64 // tokens per second
	capacity float64
	// floor is the lowest debt peers' reports can push a bucket to: two
	// seconds of rate beyond empty, so one stale burst cannot lock a
	// client out for long while the debt that matters is kept.
	floor float64

	// mu guards m.
	mu sync.Mutex
	m  map[string]*bucket
}

func newBuckets(rate, burst float64) *buckets {
	c := burst + 1
	return &buckets{rate: rate, capacity: c, floor: -(c + 2*rate), m: map[string]*bucket{}}
}

// maxKeys bounds the buckets of one set: past it, refilled buckets are
// swept, and if the set is still full, half of it is forgotten (a flood of
// new clients costs them their debt, never the node its memory).
const maxKeys = 1 << 16

// get returns key's bucket refilled up to now; mu is held.
func (bs *buckets) get(key string, now time.Time) *bucket {
	b := bs.m[key]
	if b == nil {
		if len(bs.m) >= maxKeys {
			bs.shrink(now)
		}
		b = &bucket{tokens: bs.capacity, last: now}
		bs.m[key] = b
		return b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens += dt * bs.rate
		if b.tokens > bs.capacity {
			b.tokens = bs.capacity
		}
		b.last = now
	}
	return b
}

// take takes a token for key if one is there; else it says how long
// until one will be.
func (bs *buckets) take(key string, now time.Time) (bool, time.Duration) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b := bs.get(key, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := (1 - b.tokens) / bs.rate
	return false, time.Duration(wait * float64(time.Second))
}

// peek reports whether key has a token, without taking it.
func (bs *buckets) peek(key string, now time.Time) bool {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.get(key, now).tokens >= 1
}

// charge takes n tokens for key that were spent elsewhere (a peer
// admitted n requests of this client), down to the floor.
func (bs *buckets) charge(key string, n float64, now time.Time) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b := bs.get(key, now)
	b.tokens -= n
	if b.tokens < bs.floor {
		b.tokens = bs.floor
	}
}

// sweep forgets buckets that have refilled completely: a new one would be
// the same. It returns how many are left.
func (bs *buckets) sweep(now time.Time) int {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.sweepLocked(now)
	return len(bs.m)
}

func (bs *buckets) sweepLocked(now time.Time) {
	full := time.Duration((bs.capacity - bs.floor) / bs.rate * float64(time.Second))
	for k, b := range bs.m {
		if now.Sub(b.last) > full {
			delete(bs.m, k)
		}
	}
}

// shrink makes room: refilled buckets go first, then half of the rest.
func (bs *buckets) shrink(now time.Time) {
	bs.sweepLocked(now)
	for k := range bs.m {
		if len(bs.m) < maxKeys/2 {
			return
		}
		delete(bs.m, k)
	}
}
