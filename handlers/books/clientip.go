package books

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the client address worked out by Begin for r (trusted
// proxies applied), or the connection's peer address when Begin did not run.
func ClientIP(r *http.Request) string {
	if info, ok := r.Context().Value(infoKey{}).(*Info); ok && info.ClientIP != "" {
		return info.ClientIP
	}
	return hostOnly(r.RemoteAddr)
}

// RealIP is Begin as a middleware, for chains that have no site label.
func RealIP(trusted []netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r, _ = Begin(r, "", trusted)
			next.ServeHTTP(w, r)
		})
	}
}

func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	return ClientAddr(r.RemoteAddr, trusted, func() []string { return r.Header.Values("X-Forwarded-For") })
}

// ClientAddr is the client address of a request from remote (host:port or
// host) whose X-Forwarded-For values forwardedFor returns: remote's host,
// or the last untrusted hop when remote is a trusted proxy. forwardedFor
// is called only then, so a caller without a header map pays nothing for
// the common case.
func ClientAddr(remote string, trusted []netip.Prefix, forwardedFor func() []string) string {
	peer := hostOnly(remote)
	if len(trusted) == 0 || !isTrusted(peer, trusted) {
		return peer
	}
	hops := forwardedFor()
	var addrs []string
	for _, h := range hops {
		for _, a := range strings.Split(h, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
	}
	for i := len(addrs) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(addrs[i])
		if err != nil {
			return peer // a malformed hop: believe nothing beyond it
		}
		if !isTrusted(a.Unmap().String(), trusted) {
			return a.Unmap().String()
		}
		peer = a.Unmap().String()
	}
	return peer
}

// IsTrusted reports whether the address ip is inside one of the prefixes.
func isTrusted(ip string, trusted []netip.Prefix) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func hostOnly(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// TrustedPeer reports whether the connection's peer (remote, host:port)
// is one of the trusted proxies, whose forwarding headers are believed.
func TrustedPeer(remote string, trusted []netip.Prefix) bool {
	return len(trusted) > 0 && isTrusted(hostOnly(remote), trusted)
}
