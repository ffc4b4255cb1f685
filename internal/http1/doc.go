// Package http1 owns a listener's HTTP/1.1 connections before net/http
// sees them: it counts them per client (max_conns_per_ip) and holds
// writers to min_send_rate (conns.go), completes TLS handshakes itself
// (tls.go), guards every request head net/http will read against
// smuggling and oversized or folded headers (guard.go), and answers the
// requests whose whole response is a cached file on the connection's own
// goroutine (front.go, head.go), as internal/h2 does for HTTP/2. What it
// answers, and the books of each answer, come from the node through one
// hook, Route; a connection whose request the hook declines goes to
// net/http, with the bytes already read, for the rest of its life.
package http1
