package cluster

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// BenchmarkLoadSpread measures how long a load change on one node takes to
// be seen by every other node, sent directly to each peer or by gossip
// broadcast, for several cluster sizes. Gossip timings are memberlist's
// LAN defaults, as in production (only probing is slowed, so the test
// machine's CPU goes to the messages being measured). Run:
//
//	go test ./cluster -run '^$' -bench LoadSpread -benchtime 40x
func BenchmarkLoadSpread(b *testing.B) {
	for _, mode := range []string{"direct", "broadcast"} {
		for _, n := range []int{5, 10, 20, 40} {
			b.Run(fmt.Sprintf("%s/N=%d", mode, n), func(b *testing.B) {
				benchSpread(b, mode, n)
			})
		}
	}
}

func benchSpread(b *testing.B, mode string, size int) {
	direct := 1000
	if mode == "broadcast" {
		direct = -1
	}
	lan := func(cfg *memberlist.Config) {
		cfg.ProbeInterval = 5 * time.Second // keep failure detection quiet
		cfg.ProbeTimeout = 2 * time.Second
		cfg.TCPTimeout = 2 * time.Second
	}
	nodes := startCluster(b, size, func(o *Options) {
		o.Tune = lan
		o.Timings.DirectMax = direct
		o.Timings.Heartbeat = time.Hour // only changes travel
		o.Timings.StaleAfter = time.Hour
		o.Timings.LoadInterval = time.Millisecond
	})
	src := nodes[0]
	var lat []time.Duration
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := src.c.inflight.Add(1)
		start := time.Now()
		src.c.kickLoad()
		for _, n := range nodes[1:] {
			m := n.c.lookup(src.name)
			for m.inflight.Load() != want {
				if time.Since(start) > 10*time.Second {
					b.Fatalf("%s did not see load %d", n.name, want)
				}
				time.Sleep(200 * time.Microsecond)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	// CPU of the whole process (all nodes) per change, background gossip
	// included: what one load change costs the cluster.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/change")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "ms-p90")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "ms-max")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLoadSteady measures what keeping loads fresh costs: every node
// changes its load every tick (100 ms, the default LoadInterval, so the
// busiest possible sender) and the whole process's CPU is divided by
// nodes and seconds. "idle" is the same cluster with no load changes
// (heartbeats and memberlist only). One op is one tick:
//
//	go test ./cluster -run '^$' -bench LoadSteady -benchtime 30x
func BenchmarkLoadSteady(b *testing.B) {
	for _, mode := range []string{"idle", "direct", "broadcast"} {
		for _, n := range []int{10, 20, 40} {
			b.Run(fmt.Sprintf("%s/N=%d", mode, n), func(b *testing.B) {
				benchSteady(b, mode, n)
			})
		}
	}
}

func benchSteady(b *testing.B, mode string, size int) {
	direct := 1000
	if mode == "broadcast" {
		direct = -1
	}
	nodes := startCluster(b, size, func(o *Options) {
		o.Tune = func(cfg *memberlist.Config) {} // LAN defaults
		o.Timings.DirectMax = direct
		o.Timings.StaleAfter = time.Hour
	})
	tick := 100 * time.Millisecond
	cpu0, t0 := cpuTime(), time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if mode != "idle" {
			for _, n := range nodes {
				n.c.inflight.Add(1)
				n.c.kickLoad()
			}
		}
		time.Sleep(tick) // the tick being measured, not synchronisation
	}
	b.StopTimer()
	secs := time.Since(t0).Seconds()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/secs/float64(size), "cpu-ms/node/s")
}
