package cluster

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkProxyHop is one request through a full node to its peer and
// back (client -> A -> B), against the same request served by B directly:
// the cost of the hop, in-process on loopback, over plain HTTP and over
// peer TLS.
//
//	go test ./cluster -run '^$' -bench ProxyHop -cpu 2
func BenchmarkProxyHop(b *testing.B) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	for _, tc := range []struct {
		name    string
		peerTLS bool
		hop     bool
	}{
		{"direct", false, false},
		{"hop", false, true},
		{"hop-tls", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			// A cluster of its own, so no other node's gossip counts in
			// this one's CPU.
			nodes := startCluster(b, 2, func(o *Options) {
				o.Capacity, o.PeerTLS = 1, tc.peerTLS
				// The production default: on a machine shared with other
				// work the tests' 1s lets a busy peer look suspect.
				o.Timings.StaleAfter = 3 * time.Second
			})
			occupy(b, nodes[0], 1000)
			seesLoad(b, nodes, nodes[0], 1000)
			peer := nodes[1]
			url := peer.url + "/x"
			if tc.hop {
				url = nodes[0].url + "/x"
			}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			cpu0 := cpuTime()
			defer func() {
				// CPU per request (client, A and B together): unlike ns/op it
				// holds on a machine shared with other work.
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
			}()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 || res.Header.Get("X-Node") != peer.name {
						b.Errorf("status %d from %q", res.StatusCode, res.Header.Get("X-Node"))
						return
					}
				}
			})
		})
	}
}
