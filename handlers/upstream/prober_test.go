package upstream

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestProber: only the node Prober names checks a target; the prober's
// verdicts go out through OnMarkDown and OnMarkUp, and a node that stops
// probing drops its own verdict but keeps the target skipped by time.
func TestProber(t *testing.T) {
	var sick atomic.Bool
	var checks atomic.Int32
	app := backend(t, func(w http.ResponseWriter, r *http.Request) {
		checks.Add(1)
		if sick.Load() {
			w.WriteHeader(500)
		}
	})
	var probing atomic.Bool
	var mu sync.Mutex
	var downs, ups []string
	u, _ := front(t, Options{Name: "p", Targets: []string{app.URL}, Health: "/", HealthInterval: 20 * time.Millisecond,
		FailTimeout: time.Hour,
		Prober:      func(string) bool { return probing.Load() },
		OnMarkDown:  func(target string, until time.Time) { mu.Lock(); downs = append(downs, target); mu.Unlock() },
		OnMarkUp:    func(target string) { mu.Lock(); ups = append(ups, target); mu.Unlock() },
	}, Site{})
	count := func(l *[]string) int { mu.Lock(); defer mu.Unlock(); return len(*l) }
	healthy := func() bool { return u.Snapshot().Targets[0].Healthy }

	sick.Store(true)
	time.Sleep(100 * time.Millisecond) // nothing to poll: no check may come
	if checks.Load() != 0 {
		t.Fatalf("%d checks by a node that is not the prober", checks.Load())
	}
	probing.Store(true)
	eventually(t, "down announced", func() bool { return count(&downs) > 0 })
	if healthy() {
		t.Error("healthy after a failed check")
	}
	probing.Store(false)
	eventually(t, "own verdict dropped", func() bool { return !u.targets[0].unhealthy.Load() })
	if healthy() {
		t.Error("a target this node found down is taken back before any prober said so")
	}
	sick.Store(false)
	probing.Store(true)
	eventually(t, "up announced", func() bool { return count(&ups) > 0 })
	if !healthy() {
		t.Error("unhealthy after the prober's check passed")
	}
	n := count(&ups)
	time.Sleep(100 * time.Millisecond) // nothing to poll: no repeat may come
	if count(&ups) != n {
		t.Error("up announced again while nothing changed")
	}
}

// TestMarkUp: another node's passing check takes a skipped target back.
func TestMarkUp(t *testing.T) {
	a, b := named(t, "a"), named(t, "b")
	u, fe := front(t, Options{Name: "mu", Targets: []string{a.URL, b.URL}, Policy: First}, Site{})
	u.MarkDown(a.URL, time.Now().Add(time.Hour))
	if !u.MarkUp(a.URL) || u.MarkUp("http://nope:1") {
		t.Fatal("MarkUp's answer is wrong")
	}
	if _, body, _ := get(t, fe.Client(), fe.URL+"/"); body != "a" {
		t.Errorf("got %q, want a", body)
	}
}
