// Package upstream proxies requests to application servers ([[upstream]]):
// HTTP targets (TCP or a unix socket) through net/http/httputil's
// ReverseProxy on a tuned keep-alive transport, and FastCGI targets through
// handlers/fastcgi. An Upstream picks a target per request by its policy
// among the available ones (healthy and not skipped after a failure),
// retries idempotent requests on another target when the connection fails
// before a response, and checks targets actively when asked. It imports no
// server code: the node builds it from a plain Options literal, and the
// cluster shares health and load through MarkDown, OnMarkDown and
// SetRemoteInflight.
package upstream
