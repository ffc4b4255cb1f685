package books

import (
	"context"
	"net/http"
	"net/netip"
)

// Handler kinds, as labels in the access log and metrics.
const (
	KindStatic   = "static"
	KindTemplate = "template"
	KindCGI      = "cgi"
	KindProxy    = "proxy"
	KindUpstream = "upstream"
	KindRedirect = "redirect"
	KindAdmin    = "admin"
)

// Info is what the layers serving one request learn about it, for the
// access log and metrics that wrap them. Begin puts one in the context (one
// allocation for all layers); inner handlers fill in what they decided.
type Info struct {
	Site     string // the site's first host, or "default"
	Handler  string // one of the Kind constants
	Peer     string // the node that served a proxied or redirected request
	ClientIP string // the client's address, trusted_proxies applied
	// User is who the request says it is: the Basic auth name for now,
	// the checked user once a site's auth has run.
	User string
	// AuthType is "Basic" once a site's auth checked User; "" while User
	// is only what the client claims.
	AuthType string
	// RequestID names the request across nodes and logs; "" until a
	// layer assigns one.
	RequestID string
}

type infoKey struct{}

// WithInfo returns r carrying info.
func WithInfo(r *http.Request, info *Info) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
}

// Begin starts a request's Info: the site's label and the client address
// (the connection's peer, or X-Forwarded-For when that peer is trusted).
func Begin(r *http.Request, site string, trusted []netip.Prefix) (*http.Request, *Info) {
	info := &Info{Site: site, ClientIP: clientAddr(r, trusted)}
	return WithInfo(r, info), info
}

// InfoFrom returns the request's Info; a request without one gets a fresh
// Info that nobody else reads, so callers never check for nil.
func InfoFrom(r *http.Request) *Info {
	if info, ok := r.Context().Value(infoKey{}).(*Info); ok {
		return info
	}
	return &Info{ClientIP: hostOnly(r.RemoteAddr)}
}

// SetKind records which handler served r.
func SetKind(r *http.Request, kind string) {
	if info, ok := r.Context().Value(infoKey{}).(*Info); ok {
		info.Handler = kind
	}
}
