package cluster

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHopSignature(t *testing.T) {
	k := deriveKeys(testSecret)
	now := time.Now()
	const validity = 30 * time.Second
	v := k.hopValue("GET", "example.com", "/a?q=1", "node-b", "node-a", "192.0.2.7:5555", now)
	h, ok := k.checkHop(v, "GET", "example.com", "/a?q=1", "node-b", validity, now)
	if !ok || h.from != "node-a" || h.client != "192.0.2.7:5555" || h.nonce == "" || h.ts != now.UnixMilli() {
		t.Fatalf("valid hop refused: %+v %v", h, ok)
	}
	if v2 := k.hopValue("GET", "example.com", "/a?q=1", "node-b", "node-a", "192.0.2.7:5555", now); splitDots(v2)[1] == h.nonce {
		t.Fatal("two hops share a nonce")
	}
	// splice replaces field i of v (ts, nonce, from, client, sig) by that
	// of another validly signed value.
	splice := func(i int, other string) string {
		a, b := splitDots(v), splitDots(other)
		a[i] = b[i]
		return strings.Join(a, ".")
	}
	for _, tc := range []struct {
		name                        string
		value, method, host, target string
		self                        string
		now                         time.Time
	}{
		{name: "method", method: "POST"},
		{name: "host", host: "evil.com"},
		{name: "path", target: "/b?q=1"},
		{name: "query", target: "/a?q=2"},
		{name: "query dropped", target: "/a"},
		{name: "query added", value: k.hopValue("GET", "example.com", "/a", "node-b", "node-a", "192.0.2.7:5555", now), target: "/a?admin=1"},
		{name: "target node", self: "node-c"},
		{name: "expired", now: now.Add(time.Minute)},
		{name: "future", now: now.Add(-time.Minute)},
		{name: "timestamp", value: splice(0, k.hopValue("GET", "example.com", "/a?q=1", "node-b", "node-a", "192.0.2.7:5555", now.Add(time.Second)))},
		{name: "nonce", value: splice(1, k.hopValue("GET", "example.com", "/a?q=1", "node-b", "node-a", "192.0.2.7:5555", now))},
		{name: "sender", value: splice(2, k.hopValue("GET", "example.com", "/a?q=1", "node-b", "node-x", "192.0.2.7:5555", now))},
		{name: "client", value: splice(3, k.hopValue("GET", "example.com", "/a?q=1", "node-b", "node-a", "6.6.6.6:1", now))},
		{name: "signature", value: splice(4, k.hopValue("GET", "example.com", "/a?q=1", "node-b", "node-a", "192.0.2.7:5555", now))},
		{name: "other key", value: func() string {
			o := deriveKeys([]byte("ffffffffffffffff"))
			return o.hopValue("GET", "example.com", "/a?q=1", "node-b", "node-a", "192.0.2.7:5555", now)
		}()},
		{name: "old format", value: strings.Join(slices.Delete(splitDots(v), 1, 2), ".")},
		{name: "garbage", value: "1.2.3.4.5"},
	} {
		or := func(s, def string) string {
			if s == "" {
				return def
			}
			return s
		}
		at := now
		if !tc.now.IsZero() {
			at = tc.now
		}
		_, ok := k.checkHop(or(tc.value, v), or(tc.method, "GET"), or(tc.host, "example.com"), or(tc.target, "/a?q=1"),
			or(tc.self, "node-b"), validity, at)
		if ok {
			t.Errorf("hop with another %s accepted", tc.name)
		}
	}
}

func TestReplayGuard(t *testing.T) {
	const validity = 30 * time.Second
	now := time.Now()
	g := newReplayGuard(validity)
	ts := now.UnixMilli()
	if g.admit("n1", ts, now) != nonceNew || g.admit("n2", ts, now) != nonceNew {
		t.Fatal("fresh nonces refused")
	}
	if got := g.admit("n1", ts, now.Add(validity/2)); got != nonceSeen {
		t.Fatalf("replay within the window: %v, want seen", got)
	}
	// Once a timestamp is too old to pass the freshness check, its bucket
	// goes: memory follows the window, not the node's age.
	later := now.Add(2 * validity)
	if g.admit("n3", later.UnixMilli(), later) != nonceNew {
		t.Fatal("new nonce refused")
	}
	if g.count != 1 || len(g.buckets) != 1 {
		t.Fatalf("after the window: %d nonces in %d buckets, want 1 in 1", g.count, len(g.buckets))
	}
}

func TestReplayGuardBounded(t *testing.T) {
	now := time.Now()
	g := newReplayGuard(30 * time.Second)
	ts := now.UnixMilli()
	for i := range replayMax {
		if g.admit(strconv.Itoa(i), ts, now) != nonceNew {
			t.Fatalf("nonce %d refused", i)
		}
	}
	// Full: refused, neither accepted unchecked nor stored.
	if got := g.admit("one more", ts, now); got != nonceFull || g.count != replayMax {
		t.Fatalf("past the bound: %v with %d stored", got, g.count)
	}
	// The window moves on: room again.
	later := now.Add(time.Minute)
	if got := g.admit("one more", later.UnixMilli(), later); got != nonceNew || g.count != 1 {
		t.Fatalf("after the window: %v with %d stored", got, g.count)
	}
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func TestPurposeKeysDiffer(t *testing.T) {
	k := deriveKeys(testSecret)
	now := time.Now()
	// A redirect marker is no sticky cookie and no hop, even with equal
	// inputs: each purpose has its own key.
	mark := k.markValue("GET", "b", now)
	if !k.checkMark(mark, "GET", "b", time.Minute, now) || k.checkMark(mark, "GET", "c", time.Minute, now) {
		t.Fatal("marker check wrong")
	}
	if sign(k.hop, "x") == sign(k.mark, "x") || sign(k.load, "x") == sign(k.sticky, "x") {
		t.Fatal("purposes share a key")
	}
	lv := k.loadValue(&loadReport{Name: "b", Boot: 3, Seq: 4, Inflight: 5, Capacity: 6}, now)
	if l, ok := k.checkLoad(lv, time.Minute, now); !ok || l.Inflight != 5 || l.Name != "b" {
		t.Fatalf("load header: %+v %v", l, ok)
	}
	last := "A"
	if lv[len(lv)-1] == 'A' {
		last = "B"
	}
	if _, ok := k.checkLoad(lv[:len(lv)-1]+last, time.Minute, now); ok {
		t.Fatal("tampered load header accepted")
	}
}

// FuzzCheckHop: no header but the one signed for this request verifies,
// whatever its bytes; nothing panics.
func FuzzCheckHop(f *testing.F) {
	k := deriveKeys(testSecret)
	now := time.UnixMilli(1_700_000_000_000)
	valid := k.hopWithNonce("GET", "h", "/a?b=1", "n1", "n0", "192.0.2.1:5", now, "AAAAAAAAAAAAAAAA")
	f.Add(valid)
	f.Add("1.2.3.4.5")
	f.Add("....")
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Fuzz(func(t *testing.T, v string) {
		h, ok := k.checkHop(v, "GET", "h", "/a?b=1", "n1", 30*time.Second, now)
		if ok && v != valid {
			t.Fatalf("accepted a header nobody signed: %q (%+v)", v, h)
		}
		if v == valid && (!ok || h.from != "n0" || h.client != "192.0.2.1:5") {
			t.Fatalf("refused or misread the signed header: %+v %v", h, ok)
		}
	})
}
