package main

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const rateClusterConfig = `[server]
drain_delay = "0s"

[log]
access = "off"

[[site]]
root = "www"

[[site.route]]
path = "/who.txt"
rate = "%[1]d/s"

[[site.route]]
path = "/big.bin"
rate = "%[1]d/s"

[cluster]
enabled = true
balance = "none"
`

// TestE2ERateHoldsAcrossCluster: three real nodes, one client spreading
// requests over them evenly and unevenly; the requests admitted in total
// stay within 10%% of the route's rate, not three times it.
func TestE2ERateHoldsAcrossCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of processes and 2 x 6 s of load")
	}
	const rate = 40
	cl := newCClusterWith(t, 3, fmt.Sprintf(rateClusterConfig, rate))
	nodes := []*cnode{cl.nodes["a"], cl.nodes["b"], cl.nodes["c"]}
	rounds := []struct {
		method, path string
		spread       [3]int
	}{
		{"GET", "/who.txt", [3]int{1, 1, 1}}, // each round a route (bucket) of its own
		{"HEAD", "/big.bin", [3]int{7, 2, 1}},
	}
	for _, r := range rounds {
		spread := r.spread
		admitted, window := spreadLoad(t, nodes, r.method, r.path, spread, 6*time.Second)
		limit := rate * window.Seconds()
		t.Logf("spread %v: %d admitted in %v, limit %.0f (%.1f%%)", spread, admitted, window.Round(time.Millisecond), limit, 100*float64(admitted)/limit)
		if float64(admitted) < limit*0.9 || float64(admitted) > limit*1.1 {
			t.Errorf("spread %v: %d admitted in %v, want %.0f within 10%%", spread, admitted, window, limit)
		}
	}
}

// spreadLoad sends method path for d from 12 workers, dealing the
// requests to nodes in the proportions of spread, and counts the 200s.
func spreadLoad(t *testing.T, nodes []*cnode, method, path string, spread [3]int, d time.Duration) (int64, time.Duration) {
	t.Helper()
	var deck []*cnode
	for i, n := range spread {
		for range n {
			deck = append(deck, nodes[i])
		}
	}
	var next, admitted, failed atomic.Int64
	start := time.Now()
	stop := start.Add(d)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			for count := 0; count < 100000 && time.Now().Before(stop); count++ {
				n := deck[int(next.Add(1))%len(deck)]
				req, _ := http.NewRequest(method, "http://"+n.http+path, nil)
				res, err := e2eClient.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				res.Body.Close()
				switch res.StatusCode {
				case http.StatusOK:
					admitted.Add(1)
				case http.StatusTooManyRequests:
				default:
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d requests failed (neither 200 nor 429)", failed.Load())
	}
	return admitted.Load(), time.Since(start)
}
