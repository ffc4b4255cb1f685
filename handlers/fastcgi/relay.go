package fastcgi

import (
	"bytes"
	"context"
	"errors"
	"net/http"

	"shoal/handlers/cgi"
	"shoal/handlers/session"
)

// Inbound is a request as a server's own HTTP/1.1 path parsed it, for
// Relay: a GET or HEAD without a body.
type Inbound struct {
	// Meta holds what its params are made of: Lines (the header block as
	// sent) and RequestID in place of an http.Header.
	Meta cgi.Meta
	// Path is the URL path (the target up to '?', no escapes).
	Path string
	// Request makes the request as the full chain would have it, with its
	// books, for what only an *http.Request serves (a local redirect
	// through Dispatch, an error page, the log of X-Replace-Session):
	// called at most once per request, and only then.
	Request func() *http.Request
}

// mayHoldSession reports whether the header block may carry the session
// cookie: only then is the request made whose session HTTP_SESSION
// passes (a request without one has none: no HTTP_SESSION).
func mayHoldSession(s session.Codec, lines []byte) bool {
	named, ok := s.(interface{ CookieName() string })
	if !ok {
		return bytes.IndexByte(lines, '=') >= 0
	}
	name := named.CookieName()
	for rest := lines; ; {
		i := bytes.Index(rest, []byte(name))
		if i < 0 {
			return false
		}
		rest = rest[i+len(name):]
		if len(rest) > 0 && rest[0] == '=' {
			return true
		}
	}
}

// maxRelayFields is the most header lines a relayed request may carry.
// Reading the block as net/http would (cgi.LineFields) looks back over
// the lines before each one; a block of hundreds of tiny lines would make
// that quadratic work a client could buy cheaply, so such a request goes
// to net/http, which reads it once into a map.
const maxRelayFields = 64

// ErrNotRelayed: Relay leaves the request to ServeHTTP, nothing sent.
var ErrNotRelayed = errors.New("fastcgi: not for the relay")

// Relay serves in as ServeHTTP serves the same request, through the same
// steps (params, send, header block, local redirect, stream), on w: a
// writer of the client's connection that a server's fast path provides.
// It reports whether it answered. When not, nothing reached the client
// and, but for the connect or write that failed (err), nothing reached
// the application: the caller serves the request the full way, whose
// 502 page and retries answer it. A site with sessions is left to
// ServeHTTP (ErrNotRelayed), as is a path that is not clean (its 404).
// An error with served set means the body was cut after the head: close
// the connection.
func (h *Handler) Relay(ctx context.Context, in *Inbound, w http.ResponseWriter) (served bool, err error) {
	if in.Meta.Method != http.MethodGet && in.Meta.Method != http.MethodHead ||
		bytes.Count(in.Meta.Lines, []byte("\n")) > maxRelayFields {
		return false, ErrNotRelayed
	}
	x := h.exchange(nil)
	defer h.done(x)
	x.relay, x.meta = in, in.Meta
	o := ParamsOptions{NodeName: h.NodeName, ContentLength: -1}
	if h.Sessions != nil && mayHoldSession(h.Sessions, in.Meta.Lines) {
		o.Session = h.Sessions.Encoded(x.request())
	}
	if err := x.build(in.Path, &o); err != nil {
		return false, ErrNotRelayed
	}
	return h.respond(ctx, w, x, nil)
}
