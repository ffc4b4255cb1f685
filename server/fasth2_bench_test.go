package server

import (
	"testing"

	"golang.org/x/net/http2/hpack"

	"shoal/internal/h2"
)

// BenchmarkH2FastAnswer is the HTTP/2 fast path's share of a cached 1 KiB
// file (route, books, answer) without the connection around it, with
// allocations reported: what h2.Server's Fast hook costs per stream.
func BenchmarkH2FastAnswer(b *testing.B) {
	n := benchNode(b)
	r := &h2.Request{Method: "GET", Scheme: "https", Authority: "x", Path: "/1k.html",
		Fields: []hpack.HeaderField{{Name: "user-agent", Value: "bench"}}, RemoteAddr: "127.0.0.1:1"}
	if a := n.h2Fast(r); a == nil {
		b.Fatal("the fast path declined")
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a := n.h2Fast(r)
		if a.Sent != nil {
			a.Sent()
		}
	}
}
