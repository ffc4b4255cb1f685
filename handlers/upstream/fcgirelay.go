package upstream

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"shoal/handlers/fastcgi"
)

// FastCGIRelayable reports whether RelayFastCGI can take the upstream's
// requests: all its targets are FastCGI applications.
func (h *Handler) FastCGIRelayable() bool {
	for _, t := range h.u.targets {
		if t.fcgi == nil {
			return false
		}
	}
	return len(h.u.targets) > 0
}

// RelayFastCGI serves in, a GET or HEAD a server's own HTTP/1.1 path
// parsed, on w, the writer of the client's connection, as ServeHTTP
// serves it: a target picked by the policy among the available ones,
// counted in flight while it serves, another one tried (up to Retries)
// when the connection to one fails before the request reached it. It
// reports whether it answered; when not, nothing reached the client and
// the caller serves the request the full way (ServeHTTP), which answers
// with the site's 502 page or tries the targets left, or serves what the
// relay does not take (a loop, a site with sessions, an unclean path).
func (h *Handler) RelayFastCGI(ctx context.Context, in *fastcgi.Inbound, w http.ResponseWriter) (served bool, err error) {
	u := h.u
	if bytes.Contains(in.Meta.Lines, []byte(u.via)) {
		return false, errNotRelayed // ServeHTTP's 508
	}
	return u.relayOn(ctx, in.Meta.ClientIP, time.Time{}, func(t *target, _ time.Time) (served, next bool, err error) {
		if t.fcgi == nil {
			return false, false, errNoTarget
		}
		served, err = h.relayTo(ctx, t, in, w)
		// Not served and relayed: the connect failed (the client's Dialed
		// marked the target) or the request could not be written; nothing
		// ran, another target may take it.
		return served, !served && !errors.Is(err, fastcgi.ErrNotRelayed), err
	})
}

// relayTo relays in to t, counted in flight while it serves (the site's
// code a local redirect runs may panic: the count is kept right).
func (h *Handler) relayTo(ctx context.Context, t *target, in *fastcgi.Inbound, w http.ResponseWriter) (bool, error) {
	t.inflight.Add(1)
	defer t.inflight.Add(-1)
	return h.fcgi[t].Relay(ctx, in, w)
}
