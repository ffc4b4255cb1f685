package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"shoal/handlers/books"
	"shoal/server/config"
)

// redirectOptions configures redirectHTTPS.
type redirectOptions struct {
	// Sites are the configured virtual hosts. A Host header is only echoed
	// into Location when a site names it (exactly or by wildcard), or when
	// the default (first) site has hosts = [] (it serves any name), the
	// header is a well-formed host name or IP address and Covers says yes.
	Sites []config.Site
	// HTTPSPort is the https listener's port; "" or "443" leaves the port
	// out of Location.
	HTTPSPort string
	// HasTLS reports whether a host has a certificate; a host without one
	// is passed to next over plain HTTP instead of being sent to a broken
	// https page. nil means every host has TLS.
	HasTLS func(host string) bool
	// Covers reports whether the certificate a host would get names it.
	// With a catch-all first site (hosts = []), a Host header is echoed
	// into Location only when it is covered, so a redirect never carries a
	// name the operator did not put in a certificate. nil: never echo.
	Covers func(host string) bool
}

// redirectHTTPS is the http listener's middleware for tls.redirect_http: it
// answers 308 to https://host[:port]/path?query, keeping the method and
// body (308, unlike 301, forbids turning a POST into a GET).
//
// The host in Location comes from the request's Host only when that host is
// one this server serves: named by a site, or, when the default (first) site
// has hosts = [], a syntactically valid host name or IP that the certificate
// it would get names (Covers); then the client is sent to the same name it
// just asked for, over https, never to a third party. A request for any
// other host goes to the default (first) site's first non-wildcard host,
// like nginx's `return 308 https://$server_name`; if there is none it gets
// 400. So Location never carries a value we did not vet.
func redirectHTTPS(o redirectOptions) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, ok := o.target(r.Host)
			if !ok {
				http.Error(w, "400 bad request: unknown host", http.StatusBadRequest)
				return
			}
			if o.HasTLS != nil && !o.HasTLS(host) {
				next.ServeHTTP(w, r)
				return
			}
			books.SetKind(r, books.KindRedirect)
			http.Redirect(w, r, o.location(host, r), http.StatusPermanentRedirect)
		})
	}
}

// target returns the vetted host name for Location (lower case, no port,
// IPv6 without brackets).
func (o redirectOptions) target(hostHeader string) (string, bool) {
	host, ok := parseHostHeader(hostHeader)
	if ok {
		if len(o.Sites) > 0 && len(o.Sites[0].Hosts) == 0 && o.Covers != nil && o.Covers(host) {
			return host, true
		}
		for _, s := range o.Sites {
			if hostMatches(s.Hosts, host) {
				return host, true
			}
		}
	}
	if len(o.Sites) > 0 {
		for _, h := range o.Sites[0].Hosts {
			if !strings.HasPrefix(h, "*.") {
				return normalizeHost(h), true
			}
		}
	}
	return "", false
}

func (o redirectOptions) location(host string, r *http.Request) string {
	switch {
	case o.HTTPSPort != "" && o.HTTPSPort != "443":
		host = net.JoinHostPort(host, o.HTTPSPort)
	case strings.Contains(host, ":"):
		host = "[" + host + "]"
	}
	// RequestURI is the path and query as the client sent them; an
	// absolute-form target ("GET http://x/p") is reduced to its path.
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") {
		uri = r.URL.RequestURI()
	}
	return "https://" + host + uri
}

// hostMatches reports whether host (normalized) is one of patterns, with
// the vhost router's rule: "*.example.com" matches any name ending in
// ".example.com".
func hostMatches(patterns []string, host string) bool {
	for _, p := range patterns {
		p = normalizeHost(p)
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			if len(host) > len(suffix) && strings.HasSuffix(host, suffix) {
				return true
			}
		} else if p == host {
			return true
		}
	}
	return false
}

// parseHostHeader splits a Host header into a normalized host without its
// port, accepting only a DNS name (letters, digits, hyphens, dots;
// RFC 1123 lengths), an IPv4 address, or a bracketed IPv6 address without
// zone. Anything else (user info, percent escapes, slashes, backslashes)
// is refused, because it could make a Location point elsewhere.
func parseHostHeader(h string) (string, bool) {
	host, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", false
		}
		host, port = h[1:end], h[end+1:]
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", false
		}
		host = ip.String()
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i:]
	}
	if port != "" && !validPort(strings.TrimPrefix(port, ":")) {
		return "", false
	}
	if strings.HasPrefix(h, "[") {
		return host, true
	}
	host = normalizeHost(host)
	if ip, err := netip.ParseAddr(host); err == nil {
		return host, ip.Is4()
	}
	return host, validHostname(host)
}

func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// hsts sets Strict-Transport-Security to value on responses to requests
// that came over TLS; over plain HTTP the header is meaningless and RFC 6797
// says to leave it out. value "" returns next unchanged.
func hsts(value string) func(http.Handler) http.Handler {
	return tlsOnlyHeader("Strict-Transport-Security", value)
}

// altSvc announces HTTP/3 (value from http3Listener.AltSvc) on responses
// sent over TLS by HTTP/1.1 and HTTP/2; "" returns next unchanged.
func altSvc(value string) func(http.Handler) http.Handler {
	return tlsOnlyHeader("Alt-Svc", value)
}

// setHTTPSHeaders is hsts and altSvc as a call, for a chain that reads the
// values from the config in force per request (so a reload changes them):
// it sets Strict-Transport-Security and Alt-Svc ("" = leave out) when r
// came over TLS.
func setHTTPSHeaders(h http.Header, r *http.Request, hstsValue, altSvcValue string) {
	if r.TLS == nil {
		return
	}
	if hstsValue != "" {
		h.Set("Strict-Transport-Security", hstsValue)
	}
	if altSvcValue != "" {
		h.Set("Alt-Svc", altSvcValue)
	}
}

func tlsOnlyHeader(name, value string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if value == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS != nil {
				w.Header().Set(name, value)
			}
			next.ServeHTTP(w, r)
		})
	}
}
