package cluster

import (
	"testing"
	"time"
)

func TestHopSignature(t *testing.T) {
	k := deriveKeys(testSecret)
	now := time.Now()
	v := k.hopValue("GET", "example.com", "/a", "node-a", "192.0.2.7:5555", now)
	from, client, ok := k.checkHop(v, "GET", "example.com", "/a", 30*time.Second, now)
	if !ok || from != "node-a" || client != "192.0.2.7:5555" {
		t.Fatalf("valid hop refused: %q %q %v", from, client, ok)
	}
	for name, check := range map[string]func() bool{
		"method": func() bool { _, _, ok := k.checkHop(v, "POST", "example.com", "/a", 30*time.Second, now); return ok },
		"host":   func() bool { _, _, ok := k.checkHop(v, "GET", "evil.com", "/a", 30*time.Second, now); return ok },
		"path":   func() bool { _, _, ok := k.checkHop(v, "GET", "example.com", "/b", 30*time.Second, now); return ok },
		"expired": func() bool {
			_, _, ok := k.checkHop(v, "GET", "example.com", "/a", 30*time.Second, now.Add(time.Minute))
			return ok
		},
		"future": func() bool {
			_, _, ok := k.checkHop(v, "GET", "example.com", "/a", 30*time.Second, now.Add(-time.Minute))
			return ok
		},
		"client": func() bool {
			forged := k.hopValue("GET", "example.com", "/a", "node-a", "6.6.6.6:1", now)
			// the client field of another valid value, spliced in
			a := splitDots(v)
			b := splitDots(forged)
			_, _, ok := k.checkHop(a[0]+"."+a[1]+"."+b[2]+"."+a[3], "GET", "example.com", "/a", 30*time.Second, now)
			return ok
		},
		"other key": func() bool {
			o := deriveKeys([]byte("ffffffffffffffff"))
			_, _, ok := o.checkHop(v, "GET", "example.com", "/a", 30*time.Second, now)
			return ok
		},
	} {
		if check() {
			t.Errorf("hop with wrong %s accepted", name)
		}
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
