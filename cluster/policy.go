package cluster

import (
	"hash/fnv"
	"math/rand/v2"
	"sync/atomic"
)

// cand is one node a policy may choose, this one included.
type cand struct {
	name string
	load float64 // estimated in-flight / capacity (member.load)
	self bool
	idx  int // position in the caller's peer list; -1 for this node
}

// choice is everything a policy needs for one request; building it from
// the live view is separate, so policies are tested on made-up views.
type choice struct {
	self     cand   // this node; its load is its in-flight excluding this request
	selfOK   bool   // this node takes new work (not draining)
	inflight int64  // this node's in-flight, excluding this request
	capacity int64  // this node's capacity
	peers    []cand // available peers only, sorted by name
	key      string // the client address, for ip_hash
	rnd      func(n int) int
}

// all returns the candidates including this node when it takes work.
func (ch *choice) all() []cand {
	if !ch.selfOK {
		return ch.peers
	}
	out := make([]cand, 0, len(ch.peers)+1)
	out = append(out, ch.self)
	return append(out, ch.peers...)
}

// policy picks the node for one request; picking ch.self means "serve
// here". An empty candidate list also means here.
type policy interface {
	pick(ch *choice) cand
}

func newPolicy(name string, margin float64) policy {
	switch name {
	case "round_robin":
		return &roundRobin{}
	case "random":
		return randomPolicy{}
	case "ip_hash":
		return ipHash{}
	}
	return leastLoaded{margin: margin}
}

// leastLoaded serves here below capacity; beyond it, it samples two
// available peers, takes the less loaded (power of two choices: stale
// views spread over two nodes instead of herding onto one) and forwards
// only when that peer is lower by margin.
type leastLoaded struct{ margin float64 }

func (p leastLoaded) pick(ch *choice) cand {
	if ch.selfOK && ch.inflight < ch.capacity {
		return ch.self
	}
	if len(ch.peers) == 0 {
		return ch.self
	}
	best := twoChoices(ch.peers, ch.rnd)
	if !ch.selfOK || best.load <= ch.self.load-p.margin {
		return best
	}
	return ch.self
}

func twoChoices(peers []cand, rnd func(int) int) cand {
	if len(peers) == 1 {
		return peers[0]
	}
	i := rnd(len(peers))
	j := rnd(len(peers) - 1)
	if j >= i {
		j++
	}
	if peers[j].load < peers[i].load {
		return peers[j]
	}
	return peers[i]
}

// roundRobin cycles over the available nodes in name order.
type roundRobin struct{ next atomic.Uint64 }

func (p *roundRobin) pick(ch *choice) cand {
	all := ch.all()
	if len(all) == 0 {
		return ch.self
	}
	return all[(p.next.Add(1)-1)%uint64(len(all))]
}

type randomPolicy struct{}

func (randomPolicy) pick(ch *choice) cand {
	all := ch.all()
	if len(all) == 0 {
		return ch.self
	}
	return all[ch.rnd(len(all))]
}

// ipHash is rendezvous hashing on the client address: each client goes to
// the node with the highest hash of (client, node), so a node joining or
// leaving moves only the clients it wins or held.
type ipHash struct{}

func (ipHash) pick(ch *choice) cand {
	all := ch.all()
	if len(all) == 0 {
		return ch.self
	}
	return rendezvous(all, ch.key)
}

func rendezvous(all []cand, key string) cand {
	best, bestScore := all[0], uint64(0)
	for i, c := range all {
		h := fnv.New64a()
		h.Write([]byte(key))
		h.Write([]byte{0})
		h.Write([]byte(c.name))
		s := mix64(h.Sum64())
		if i == 0 || s > bestScore {
			best, bestScore = c, s
		}
	}
	return best
}

// mix64 spreads FNV's weak high bits (splitmix64 finaliser).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func randN(n int) int { return rand.IntN(n) }
