package handlers

import (
	"context"
	"net/http"
)

// Handler kinds, as labels in the access log and metrics.
const (
	KindStatic   = "static"
	KindTemplate = "template"
	KindCGI      = "cgi"
	KindProxy    = "proxy"
	KindRedirect = "redirect"
	KindAdmin    = "admin"
)

// Info is what the layers serving one request learn about it, for the
// access log and metrics that wrap them. The outermost middleware puts one
// in the context; inner handlers fill in what they decided.
type Info struct {
	Site    string // the site's first host, or "default"
	Handler string // one of the Kind constants
	Peer    string // the node that served a proxied or redirected request
}

type infoKey struct{}

// WithInfo returns r carrying info.
func WithInfo(r *http.Request, info *Info) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
}

// InfoFrom returns the request's Info; a request without one gets a fresh
// Info that nobody else reads, so callers never check for nil.
func InfoFrom(r *http.Request) *Info {
	if info, ok := r.Context().Value(infoKey{}).(*Info); ok {
		return info
	}
	return &Info{}
}

// SetKind records which handler served r.
func SetKind(r *http.Request, kind string) {
	InfoFrom(r).Handler = kind
}
