package server

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hopNode runs a cluster node named name whose www/1k.bin holds body,
// with balance = "all", policy = "ip_hash" and the more [cluster] keys
// (peer_tls stays at its default). With ip_hash, requests from 127.0.0.1
// go to the node whose name wins the rendezvous: "origin" against
// "front", "hop-a" against "hop-b".
func hopNode(tb testing.TB, name, body, more string) *Node {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "1k.bin"), []byte(body), 0o644); err != nil {
		tb.Fatal(err)
	}
	src := "[log]\naccess = \"off\"\n[server]\nname = \"" + name + "\"\nhttp = \"127.0.0.1:0\"\nadmin = \"\"\ndrain_delay = \"0s\"\n" +
		"[cluster]\nenabled = true\ngossip = \"127.0.0.1:0\"\nsecret = \"" + retuneSecret + "\"\nbalance = \"all\"\npolicy = \"ip_hash\"\n" +
		more + "\n[[site]]\nroot = \"www\"\n"
	path := filepath.Join(dir, "shoal.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		tb.Fatal(err)
	}
	return runNode(tb, path)
}

// hopPair runs two nodes in one cluster, each serving a 1 KiB 1k.bin
// (same size, so the same site hash; the first byte names the node), and
// waits until they see each other.
func hopPair(tb testing.TB, front, origin, more string) (a, b *Node) {
	tb.Helper()
	a = hopNode(tb, front, "A"+strings.Repeat("x", 1023), more)
	b = hopNode(tb, origin, "B"+strings.Repeat("x", 1023), more+"\njoin = [\""+a.cl.get().GossipAddr()+"\"]")
	waitMembers(tb, a, b)
	return a, b
}

// BenchmarkNodeWireHop proxies a 1 KiB GET from node A to node B (the
// cluster hop of bench/run.sh proxy: balance "all", ip_hash, peer_tls
// on) over a real keep-alive connection; both nodes run in this process,
// so cpu-ns/op counts both.
//
//	go test ./server -run '^$' -bench NodeWireHop -cpu 2
func BenchmarkNodeWireHop(b *testing.B) {
	front, origin := hopPair(b, "front", "origin", "")
	conn, err := net.Dial("tcp", front.Addrs()["http"])
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	benchKeepAlive(b, front, conn, "GET /1k.bin HTTP/1.1\r\nHost: x\r\n\r\n", true)
	_ = origin
}
