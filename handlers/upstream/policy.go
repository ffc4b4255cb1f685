package upstream

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync/atomic"
)

// Policy names, as the policy key spells them.
const (
	LeastLoaded = "least_loaded"
	RoundRobin  = "round_robin"
	IPHash      = "ip_hash"
	Random      = "random"
	First       = "first"
)

// Policies lists every policy name, for validation.
var Policies = []string{LeastLoaded, RoundRobin, IPHash, Random, First}

// policy picks one of the candidates (all available, never empty) for
// the client at that address.
type policy interface {
	Select(candidates []*target, client string) *target
}

func newPolicy(name string) (policy, error) {
	switch name {
	case LeastLoaded, "":
		return leastLoaded{}, nil
	case RoundRobin:
		return &roundRobin{}, nil
	case IPHash:
		return ipHash{}, nil
	case Random:
		return random{}, nil
	case First:
		return first{}, nil
	}
	return nil, fmt.Errorf("upstream: unknown policy %q", name)
}

// leastLoaded compares two random candidates and takes the less loaded
// (power of two choices): nearly as even as scanning all, and it never
// sends a burst to the one target every node saw as idlest at once.
type leastLoaded struct{}

func (leastLoaded) Select(c []*target, _ string) *target {
	if len(c) == 1 {
		return c[0]
	}
	i := rand.IntN(len(c))
	j := rand.IntN(len(c) - 1)
	if j >= i {
		j++
	}
	a, b := c[i], c[j]
	if b.load() < a.load() {
		return b
	}
	return a
}

// roundRobin takes candidates in turn.
type roundRobin struct{ next atomic.Uint64 }

func (p *roundRobin) Select(c []*target, _ string) *target {
	return c[(p.next.Add(1)-1)%uint64(len(c))]
}

// ipHash keeps a client on one target by rendezvous hashing of its IP:
// when a target goes down only its clients move, and every node picks
// the same target for a client.
type ipHash struct{}

func (ipHash) Select(c []*target, client string) *target {
	h := fnv.New64a()
	h.Write([]byte(client))
	ip := h.Sum64()
	best, bestScore := c[0], mix(ip^c[0].key)
	for _, t := range c[1:] {
		if s := mix(ip ^ t.key); s > bestScore {
			best, bestScore = t, s
		}
	}
	return best
}

// mix is splitmix64's finaliser: it spreads the xor of two hashes.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

type random struct{}

func (random) Select(c []*target, _ string) *target { return c[rand.IntN(len(c))] }

// first takes the first candidate in config order: a primary with
// fallbacks.
type first struct{}

func (first) Select(c []*target, _ string) *target { return c[0] }
