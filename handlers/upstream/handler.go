package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"shoal/handlers/books"
	"shoal/handlers/fastcgi"
)

// Handler serves requests through an Upstream on behalf of one site.
type Handler struct {
	u    *Upstream
	site Site
	// fcgi holds the site's FastCGI handler for each FastCGI target.
	fcgi map[*target]*fastcgi.Handler
}

// Handler returns the upstream's handler for a site: its error pages
// answer when no target does.
func (u *Upstream) Handler(s Site) *Handler {
	h := &Handler{u: u, site: s, fcgi: map[*target]*fastcgi.Handler{}}
	for _, t := range u.targets {
		if t.fcgi != nil {
			h.fcgi[t] = t.fcgi.handler(u, s)
		}
	}
	return h
}

// maxReplay is the largest body kept in memory so that an idempotent
// request with a body (PUT) can be sent again to another target.
const maxReplay = 64 << 10

// ServeHTTP picks a target and proxies r to it; when the connection fails
// before any response, an idempotent request goes to another target, up
// to Retries times; then 502, or 504 when the last one timed out.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u := h.u
	if h.looped(r) {
		u.log.Error("upstream: request came back to this upstream: a target points at this server",
			"uri", r.RequestURI, "remote", books.ClientIP(r))
		h.site.Errors.Serve(w, r, http.StatusLoopDetected)
		return
	}
	body, retryable := replayable(r)
	attempts := 1
	if retryable {
		attempts += max(u.opts.Retries, 0)
	}
	var tried [4]*target
	done := tried[:0]
	lastErr := errNoTarget
	client := books.ClientIP(r)
	for range attempts {
		t := u.pick(client, done, time.Now().UnixNano())
		if t == nil {
			break
		}
		done = append(done, t)
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		if t.fcgi != nil {
			h.serveFastCGI(t, w, r)
			return
		}
		err := t.http.serve(u, t, w, r)
		if err == nil {
			return
		}
		if r.Context().Err() != nil {
			return // the client left: nobody to answer, nothing wrong with the target
		}
		lastErr = err
		u.markFailed(t, err)
	}
	h.fail(w, r, lastErr)
}

// looped reports whether r already passed through this upstream.
func (h *Handler) looped(r *http.Request) bool {
	for _, v := range r.Header.Values("Via") {
		if strings.Contains(v, h.u.via) {
			return true
		}
	}
	return false
}

func (h *Handler) serveFastCGI(t *target, w http.ResponseWriter, r *http.Request) {
	t.inflight.Add(1)
	defer t.inflight.Add(-1)
	h.fcgi[t].ServeHTTP(w, r)
}

// fail answers a request no target answered: 504 after a timeout, else
// 502, with the site's page; the error is logged, never shown.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := h.Failed(r.Method, r.RequestURI, books.ClientIP(r), err)
	h.site.Errors.Serve(w, r, status)
}

// Failed logs a request no target answered (err says why) and returns
// the status it gets: 504 after a timeout, else 502.
func (h *Handler) Failed(method, uri, client string, err error) int {
	status := http.StatusBadGateway
	if isTimeout(err) {
		status = http.StatusGatewayTimeout
	}
	h.u.log.Warn("upstream: no target answered", "status", status, "method", method,
		"uri", uri, "remote", client, "error", err)
	return status
}

// TimedOut reports whether err, which Relay returned with nothing
// written, is a target's timeout: the answer is then 504 at once, as
// ServeHTTP gives; sent the full way, the request would find the target
// it waited for skipped and get 502.
func TimedOut(err error) bool { return err != nil && !errors.Is(err, errNotRelayed) && isTimeout(err) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// replayable reports whether r may be sent again after a failed attempt:
// an idempotent method with no body, or with a small one, which it reads
// into memory and returns.
func replayable(r *http.Request) ([]byte, bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
	default:
		return nil, false
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, true
	}
	if r.ContentLength < 0 || r.ContentLength > maxReplay {
		return nil, false
	}
	body := make([]byte, r.ContentLength)
	n, err := io.ReadFull(r.Body, body)
	if err != nil {
		// Let the proxy meet the short body: it fails as it would have.
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body[:n]), r.Body))
		return nil, false
	}
	return body, true
}
