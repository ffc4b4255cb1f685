// Package forward sends one HTTP/1.1 request to an application server or
// a cluster peer over a pooled keep-alive connection and streams the
// answer to a Sink, in the caller's goroutine.
//
// It is the lean path next to net/http's Transport and httputil's
// ReverseProxy: the request head is written straight from the client's
// header (hop-by-hop and caller-dropped fields left out, the caller's
// fields added), the response head is read by a small parser into one
// string, and the body is copied from the connection's read buffer to the
// Sink with no copy in between. Transport spends two goroutines and
// several channel operations per round trip, ReverseProxy clones the
// header twice; for a small response those are most of a proxy's CPU.
//
// What it does not handle goes to ReverseProxy, decided by Lean: upgrades
// (WebSocket), Expect: 100-continue, CONNECT. The response parser is
// stricter than net/http's ReadResponse, never more lenient (no obs-fold,
// one Transfer-Encoding, chunked only, no Content-Length disagreement);
// FuzzParseHead checks that difference against ReadResponse.
//
// A Pool is per target; its Dialer decides TCP, unix socket, TLS or the
// cluster's peer TLS. Sink is the destination: ResponseWriterSink adapts
// an http.ResponseWriter, and a server's own HTTP/1.1 path can implement
// Sink to write the head and body to its connection directly.
package forward
