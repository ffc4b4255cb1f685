// Package upstream proxies requests to application servers ([[upstream]]):
// HTTP targets (TCP, a unix socket, TLS) through internal/forward's lean
// forwarder on a keep-alive pool per target (upgrades such as WebSocket
// through net/http/httputil's ReverseProxy), and FastCGI targets through
// handlers/fastcgi. Relay is the same path for a server's own HTTP/1.1
// front, which writes the answer to its connection itself. An Upstream picks a target per request by its policy
// among the available ones (healthy and not skipped after a failure),
// retries idempotent requests on another target when the connection fails
// before a response, and checks targets actively when asked. It imports no
// server code: the node builds it from a plain Options literal, and the
// cluster shares health and load through MarkDown, OnMarkDown and
// SetRemoteInflight.
package upstream
