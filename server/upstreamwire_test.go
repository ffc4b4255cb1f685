package server

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHealthRoundTrip(t *testing.T) {
	for _, h := range []healthNews{
		{Down: true, Remaining: 10 * time.Second, Upstream: "app", Target: "http://127.0.0.1:3000"},
		{Upstream: "php", Target: "fastcgi+unix:/run/php/fpm.sock"},
		{Down: true, Remaining: maxRemaining, Upstream: "u", Target: strings.Repeat("t", maxWireString)},
	} {
		b, ok := appendHealth(nil, h)
		if !ok {
			t.Fatalf("%+v not encoded", h)
		}
		got, err := parseHealth(b)
		if err != nil || got != h {
			t.Errorf("%+v: got %+v, %v", h, got, err)
		}
	}
}

func TestHealthEncodeBounds(t *testing.T) {
	if _, ok := appendHealth(nil, healthNews{Upstream: "u", Target: strings.Repeat("t", maxWireString+1)}); ok {
		t.Error("an over-long target encoded")
	}
	for _, tc := range []struct {
		in, want time.Duration
	}{{-time.Second, 0}, {1500 * time.Microsecond, time.Millisecond}, {48 * time.Hour, maxRemaining}} {
		b, _ := appendHealth(nil, healthNews{Down: true, Remaining: tc.in})
		if h, err := parseHealth(b); err != nil || h.Remaining != tc.want {
			t.Errorf("remaining %v: got %v, %v; want %v", tc.in, h.Remaining, err, tc.want)
		}
	}
}

func TestHealthRejects(t *testing.T) {
	good, _ := appendHealth(nil, healthNews{Down: true, Remaining: time.Second, Upstream: "a", Target: "b"})
	for name, b := range map[string][]byte{
		"empty":    nil,
		"version":  append([]byte{2}, good[1:]...),
		"state":    append([]byte{1, 7}, good[2:]...),
		"short":    good[:len(good)-1],
		"trailing": append(bytes.Clone(good), 0),
		"too long": {1, 1, 0, 0xff, 0xff, 0x03},
		"too far":  {1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0},
	} {
		if _, err := parseHealth(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadsRoundTripAndSplit(t *testing.T) {
	var entries []loadEntry
	for i := range 100 {
		entries = append(entries, loadEntry{Upstream: "app", Target: "http://10.0.0." + strings.Repeat("9", i%3+1) + ":3000", N: int64(i)})
	}
	entries = append(entries, loadEntry{Upstream: "x", Target: strings.Repeat("t", maxWireString+1), N: 1})
	pkts := appendLoads("node-a", entries, 300)
	if len(pkts) < 2 {
		t.Fatalf("%d packets, want the entries split", len(pkts))
	}
	var got []loadEntry
	for _, p := range pkts {
		if len(p) > 300 {
			t.Errorf("packet of %d bytes over the limit", len(p))
		}
		node, es, err := parseLoads(p)
		if err != nil || node != "node-a" {
			t.Fatalf("%q, %v", node, err)
		}
		got = append(got, es...)
	}
	if !reflect.DeepEqual(got, entries[:100]) {
		t.Errorf("entries changed on the way (the over-long one must be left out)")
	}
	if _, _, err := parseLoads(append(bytes.Clone(pkts[0]), 1)); err == nil {
		t.Error("a truncated entry accepted")
	}
	if _, _, err := parseLoads([]byte{9, 0}); err == nil {
		t.Error("unknown version accepted")
	}
}

// FuzzUpstreamWire: no input panics either decoder; what decodes stays
// within the bounds and encodes back to the same bytes.
func FuzzUpstreamWire(f *testing.F) {
	h, _ := appendHealth(nil, healthNews{Down: true, Remaining: time.Second, Upstream: "app", Target: "http://h:1"})
	f.Add(h)
	f.Add(appendLoads("n", []loadEntry{{"app", "http://h:1", 3}, {"app", "unix:/s", 0}}, 1000)[0])
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := parseHealth(b); err == nil {
			if len(h.Upstream) > maxWireString || len(h.Target) > maxWireString || h.Remaining < 0 || h.Remaining > maxRemaining {
				t.Fatalf("out of bounds: %+v", h)
			}
			again, ok := appendHealth(nil, h)
			if !ok {
				t.Fatal("decoded news does not encode")
			}
			if back, err := parseHealth(again); err != nil || back != h {
				t.Fatalf("round trip: %+v -> %+v, %v", h, back, err)
			}
		}
		if node, es, err := parseLoads(b); err == nil {
			if len(node) > maxWireString || len(es) > len(b) {
				t.Fatalf("out of bounds: %q, %d entries from %d bytes", node, len(es), len(b))
			}
			for _, e := range es {
				if e.N < 0 || e.N > maxInflight || len(e.Upstream) > maxWireString || len(e.Target) > maxWireString {
					t.Fatalf("out of bounds: %+v", e)
				}
			}
			if len(es) > 0 {
				pkts := appendLoads(node, es, 1<<20)
				if len(pkts) != 1 {
					t.Fatalf("%d packets", len(pkts))
				}
				n2, es2, err := parseLoads(pkts[0])
				if err != nil || n2 != node || !reflect.DeepEqual(es2, es) {
					t.Fatalf("round trip changed %q %+v", node, es)
				}
			}
		}
	})
}
