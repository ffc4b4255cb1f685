package cluster

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxyHop is one request through a full node to its peer and
// back (client -> A -> B), against the same request served by B directly:
// the cost of the hop, in-process on loopback.
//
//	go test ./cluster -run '^$' -bench ProxyHop -cpu 2
func BenchmarkProxyHop(b *testing.B) {
	nodes := startCluster(b, 2, func(o *Options) { o.Capacity = 1 })
	a, peer := nodes[0], nodes[1]
	occupy(b, a, 1000)
	seesLoad(b, nodes, a, 1000)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	for _, tc := range []struct{ name, url string }{
		{"direct", peer.url + "/x"},
		{"hop", a.url + "/x"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := client.Get(tc.url)
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
