package route

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limit is one route's rate: a token bucket per client.
type Limit struct {
	// ID names the limit alike on every node that has the same route:
	// site scope, route index, path and rate.
	ID string
	b  *buckets
	ls *Limits
}

// Allow admits one request of client, or says how long until it could
// be admitted (the Retry-After of the 429).
func (l *Limit) Allow(client string, now time.Time) (bool, time.Duration) {
	ok, wait := l.b.take(client, now)
	if ok {
		l.ls.admitted(l.ID, client)
	}
	return ok, wait
}

// Limits holds a node's rate limits and what they admitted since the last
// exchange with the peers. A rate holds across the cluster this way: each
// node admits from its own bucket per client and, every exchange interval
// (100-250 ms), sends the counts it admitted (Take) and charges its
// buckets with what the peers admitted (Consumed). Every bucket so sees
// every node's admissions, a fraction of a second late; the total a
// client gets is the rate plus at most what the nodes admit within one
// interval before hearing of each other.
type Limits struct {
	// shared: peers take the counts (a cluster runs); else none are kept.
	shared atomic.Bool
	// mu guards byID and pending.
	mu      sync.Mutex
	byID    map[string]*Limit
	pending map[countKey]uint32
}

type countKey struct{ id, client string }

// NewLimits returns an empty set of limits.
func NewLimits() *Limits {
	return &Limits{byID: map[string]*Limit{}, pending: map[countKey]uint32{}}
}

// limit returns the Limit of a route spec (shared with an earlier compile
// of the same route, so a reload keeps the buckets), nil for no rate, or
// the key and error of a bad rate.
func (ls *Limits) limit(scope string, index int, s Spec) (*Limit, string, error) {
	if s.Rate == "" {
		if s.Burst != 0 {
			return nil, "burst", errors.New("is set but rate is not")
		}
		return nil, "", nil
	}
	perSec, err := ParseRate(s.Rate)
	if err != nil {
		return nil, "rate", err
	}
	if s.Burst < 0 {
		return nil, "burst", fmt.Errorf("%d: must be 0 or more", s.Burst)
	}
	id := fmt.Sprintf("%s#%d:%s:%s+%d", scope, index, s.Path, s.Rate, s.Burst)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.byID[id]; l != nil {
		return l, "", nil
	}
	l := &Limit{ID: id, b: newBuckets(perSec, float64(s.Burst)), ls: ls}
	ls.byID[id] = l
	return l, "", nil
}

// ParseRate reads "20/s", "600/m" or "100/h" as requests per second.
func ParseRate(s string) (float64, error) {
	n, unit, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count <= 0 {
		return 0, fmt.Errorf("%q: a rate is a count and a unit, such as \"20/s\" or \"600/m\"", s)
	}
	switch unit {
	case "s":
		return float64(count), nil
	case "m":
		return float64(count) / 60, nil
	case "h":
		return float64(count) / 3600, nil
	}
	return 0, fmt.Errorf("%q: the unit is s, m or h (\"20/s\", \"600/m\")", s)
}

// Share says whether a cluster takes the counts (Take): without one,
// admissions are not counted at all.
func (ls *Limits) Share(on bool) { ls.shared.Store(on) }

func (ls *Limits) admitted(id, client string) {
	if !ls.shared.Load() {
		return
	}
	ls.mu.Lock()
	ls.pending[countKey{id, client}]++
	ls.mu.Unlock()
}

// Count is how many requests of one client one limit admitted on a node
// since the last exchange.
type Count struct {
	ID     string
	Client string
	N      uint32
}

// Take returns what was admitted since the last Take, the largest counts
// first and at most max of them (the heavy hitters: a client who sent a
// request or two is not worth a peer's attention), and starts counting
// anew.
func (ls *Limits) Take(max int) []Count {
	ls.mu.Lock()
	pending := ls.pending
	ls.pending = make(map[countKey]uint32, len(pending))
	ls.mu.Unlock()
	out := make([]Count, 0, len(pending))
	for k, n := range pending {
		out = append(out, Count{ID: k.id, Client: k.client, N: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].N > out[j].N })
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// Consumed charges the local buckets with what a peer admitted. Counts of
// a limit this node does not have (another config) are ignored.
func (ls *Limits) Consumed(counts []Count, now time.Time) {
	for _, c := range counts {
		ls.mu.Lock()
		l := ls.byID[c.ID]
		ls.mu.Unlock()
		if l != nil {
			l.b.charge(c.Client, float64(c.N), now)
		}
	}
}

// Sweep forgets refilled buckets and limits no longer in any config
// (keep lists the IDs of the limits compiled now); call it now and then.
func (ls *Limits) Sweep(now time.Time, keep map[string]bool) {
	ls.mu.Lock()
	var live []*Limit
	for id, l := range ls.byID {
		if keep != nil && !keep[id] {
			delete(ls.byID, id)
			continue
		}
		live = append(live, l)
	}
	ls.mu.Unlock()
	for _, l := range live {
		l.b.sweep(now)
	}
}

// IDs lists the limits of a table, for Sweep's keep set.
func (t *Table) IDs(into map[string]bool) {
	if t == nil {
		return
	}
	for i := range t.rules {
		if l := t.rules[i].limit; l != nil {
			into[l.ID] = true
		}
	}
}

// Wire format of a batch of counts, as peers exchange it: a version byte,
// then per count a uvarint length and the ID, a uvarint length and the
// client, and a uvarint N.
const countsVersion = 1

// maxField bounds an ID or a client in a received batch.
const maxField = 512

// AppendCounts encodes counts after b.
func AppendCounts(b []byte, counts []Count) []byte {
	b = append(b, countsVersion)
	for _, c := range counts {
		b = binary.AppendUvarint(b, uint64(len(c.ID)))
		b = append(b, c.ID...)
		b = binary.AppendUvarint(b, uint64(len(c.Client)))
		b = append(b, c.Client...)
		b = binary.AppendUvarint(b, uint64(c.N))
	}
	return b
}

// ErrBadCounts is returned for a batch that does not decode: a peer of
// another version, or garbage.
var ErrBadCounts = errors.New("route: bad rate counts")

// ParseCounts decodes a batch made by AppendCounts. It never reads past b
// and allocates at most in proportion to len(b).
func ParseCounts(b []byte) ([]Count, error) {
	if len(b) == 0 || b[0] != countsVersion {
		return nil, ErrBadCounts
	}
	b = b[1:]
	var out []Count
	for len(b) > 0 {
		id, rest, ok := readField(b)
		if !ok {
			return nil, ErrBadCounts
		}
		client, rest, ok := readField(rest)
		if !ok {
			return nil, ErrBadCounts
		}
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > 1<<32-1 {
			return nil, ErrBadCounts
		}
		out = append(out, Count{ID: id, Client: client, N: uint32(n)})
		b = rest[k:]
	}
	return out, nil
}

func readField(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxField || uint64(len(b)-k) < n {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}
