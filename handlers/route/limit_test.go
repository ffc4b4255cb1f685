package route

import (
	"reflect"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for s, want := range map[string]float64{"20/s": 20, "600/m": 10, "3600/h": 1} {
		if got, err := ParseRate(s); err != nil || got != want {
			t.Errorf("%q = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "20", "0/s", "-1/s", "x/s", "5/d", "5/"} {
		if _, err := ParseRate(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestLimitLocal(t *testing.T) {
	tbl := mustCompile(t, []Spec{{Path: "/login", Rate: "2/s", Burst: 1}})
	res, _ := tbl.Resolve(req("POST", "/login", ""), nil)
	if len(res.Limits) != 1 {
		t.Fatalf("limits %v", res.Limits)
	}
	l := res.Limits[0]
	now := time.Unix(1000, 0)
	for i := 0; i < 2; i++ { // one plus the burst
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	ok, wait := l.Allow("a", now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("third at once: %v, retry after %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("another client refused")
	}
	if ok, _ := l.Allow("a", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("refused after the refill")
	}
}

// Three nodes with the same route, a client spreading requests over them,
// the nodes exchanging counts every 200 ms: the client gets the rate in
// total (within 10%), not three times it.
func TestLimitClusterWide(t *testing.T) {
	const (
		rate     = 50.0
		seconds  = 20
		sendRate = 600 // the client's requests per second, all nodes together
		exchange = 200 * time.Millisecond
	)
	spreads := map[string][3]float64{
		"even":   {1. / 3, 1. / 3, 1. / 3},
		"uneven": {0.7, 0.2, 0.1},
		"one":    {1, 0, 0},
	}
	for name, spread := range spreads {
		t.Run(name, func(t *testing.T) {
			var nodes [3]*Limit
			var sets [3]*Limits
			for i := range nodes {
				sets[i] = NewLimits()
				sets[i].Share(true)
				tbl, errs := Compile([]Spec{{Path: "/api/*", Rate: "50/s", Burst: 5}}, Options{Scope: "site", Limits: sets[i]})
				if errs != nil {
					t.Fatal(errs)
				}
				res, _ := tbl.Resolve(req("GET", "/api/x", ""), nil)
				nodes[i] = res.Limits[0]
			}
			start := time.Unix(1000, 0)
			step := time.Second / sendRate
			admitted := 0
			var credit [3]float64
			nextExchange := start.Add(exchange)
			for now := start; now.Before(start.Add(seconds * time.Second)); now = now.Add(step) {
				// Deal each request to the node whose share is most behind.
				best := 0
				for i := range credit {
					credit[i] += spread[i]
					if credit[i] > credit[best] {
						best = i
					}
				}
				credit[best]--
				if ok, _ := nodes[best].Allow("198.51.100.1", now); ok {
					admitted++
				}
				if !now.Before(nextExchange) {
					swapCounts(sets[:], now)
					nextExchange = nextExchange.Add(exchange)
				}
			}
			limit := rate * seconds
			if float64(admitted) < limit*0.9 || float64(admitted) > limit*1.1 {
				t.Fatalf("admitted %d in %ds, want %v within 10%%", admitted, seconds, limit)
			}
			t.Logf("%s: admitted %d, limit %v (%.1f%%)", name, admitted, limit, 100*float64(admitted)/limit)
		})
	}
}

func swapCounts(sets []*Limits, now time.Time) {
	batches := make([][]byte, len(sets))
	for i, s := range sets {
		batches[i] = AppendCounts(nil, s.Take(256))
	}
	for i, s := range sets {
		for j, b := range batches {
			if i == j {
				continue
			}
			counts, err := ParseCounts(b)
			if err != nil {
				panic(err)
			}
			s.Consumed(counts, now)
		}
	}
}

func TestLimitsKeptAcrossReload(t *testing.T) {
	ls := NewLimits()
	spec := []Spec{{Path: "/a", Rate: "1/m"}}
	t1, _ := Compile(spec, Options{Scope: "s", Limits: ls})
	t2, _ := Compile(spec, Options{Scope: "s", Limits: ls})
	r1, _ := t1.Resolve(req("GET", "/a", ""), nil)
	r2, _ := t2.Resolve(req("GET", "/a", ""), nil)
	if r1.Limits[0] != r2.Limits[0] {
		t.Fatal("a reload with the same route made new buckets")
	}
	keep := map[string]bool{}
	ls.Sweep(time.Now(), keep)
	if len(ls.byID) != 0 {
		t.Fatal("sweep kept a limit no table has")
	}
}

func TestCountsRoundTrip(t *testing.T) {
	in := []Count{{ID: "site#0:/a:5/s+0", Client: "192.0.2.1", N: 7}, {ID: "x", Client: "2001:db8::1", N: 1 << 31}}
	out, err := ParseCounts(AppendCounts(nil, in))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %v, %v", out, err)
	}
	for _, bad := range [][]byte{nil, {0}, {countsVersion, 5, 'a'}, {countsVersion, 1, 'a', 1, 'b'}} {
		if _, err := ParseCounts(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseCounts(f *testing.F) {
	f.Add(AppendCounts(nil, []Count{{ID: "a", Client: "b", N: 3}}))
	f.Add([]byte{countsVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		counts, err := ParseCounts(b)
		if err != nil {
			return
		}
		// Whatever decodes encodes back to the same bytes, and holds no
		// more than the input's size.
		size := 0
		for _, c := range counts {
			size += len(c.ID) + len(c.Client)
		}
		if size > len(b) {
			t.Fatalf("decoded %d bytes of fields from %d", size, len(b))
		}
		if again, err := ParseCounts(AppendCounts(nil, counts)); err != nil || !reflect.DeepEqual(again, counts) && len(counts) > 0 {
			t.Fatalf("re-encoding changed %v: %v %v", counts, again, err)
		}
	})
}
