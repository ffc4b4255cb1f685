// Package forward sends one HTTP/1.1 request to an application server or
// a cluster peer over a pooled keep-alive connection and streams the
// answer to a Sink, in the caller's goroutine.
//
// It is the lean path next to net/http's Transport and httputil's
// ReverseProxy: the request head is written straight from the client's
// header (an http.Header, a field list or the raw header block), with
// hop-by-hop and caller-dropped fields left out and the caller's fields
// added; the response head is read by a small parser into one string;
// the body is copied from the connection's read buffer to the Sink with
// no copy in between. Transport spends two goroutines and several channel
// operations per round trip and ReverseProxy clones the header twice; for
// a small response those were most of a proxy's CPU.
//
// What it does not handle goes to ReverseProxy, as Lean decides: upgrades
// (WebSocket), Expect: 100-continue, CONNECT. The response parser is
// stricter than net/http's ReadResponse, never more lenient (no obs-fold,
// one Transfer-Encoding, chunked only, Content-Lengths that agree, CR LF
// in chunked bodies): FuzzParseHead holds it to that against
// ReadResponse, and FuzzRequestLines holds the request writer to heads
// net/http reads back as the one request meant.
//
// A Pool is per target; its Dialer decides TCP, unix socket, TLS or the
// cluster's peer TLS. A kept connection the target closed is retried on a
// new one for idempotent requests and checked before any other. Request
// carries a header timeout and, besides the context, an Abort context (a
// peer found dead). The Sink is the destination: ResponseWriterSink
// adapts an http.ResponseWriter, WireSink writes HTTP/1.1 to a server's
// own client connection (a fast path's relay).
package forward
