// Package books keeps a request's books: what every entry path and every
// handler records about the request it serves. It owns the request's Info
// (site, handler kind, client, user, request ID) carried in the context,
// the client address with trusted proxies applied, the Recorder that counts
// status and bytes, the access log, the Prometheus metrics and their
// per-request Span, and the error pages every handler answers with, so a
// handler needs this one import for its side of a request.
//
// It imports no other handler package but admin, whose /api/cluster member
// types the metrics count; nothing here knows about the config file.
package books
