package cluster

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// leanTransport carries GET and HEAD requests to peers over plain HTTP or
// peer TLS: the request is written and the response read in the caller's
// goroutine, on a pooled keep-alive connection. net/http's Transport spends
// two more goroutines and several channel operations on every round trip,
// which is a large part of a hop's CPU. Requests with a body, upgrades and
// (without peer TLS) HTTPS peers go to next, as does nothing else: the wire
// format is net/http's own (Request.Write, ReadResponse).
type leanTransport struct {
	next        *http.Transport
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration
	// peerTLS: dial makes peer TLS connections, for either scheme.
	peerTLS bool

	// mu guards idle and closed.
	mu     sync.Mutex
	idle   map[string][]*leanConn // by host:port, most recent last
	closed bool
}

type leanConn struct {
	addr   string
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

func newLeanTransport(next *http.Transport, peerTLS bool) *leanTransport {
	return &leanTransport{next: next, dial: next.DialContext, maxIdle: next.MaxIdleConnsPerHost,
		idleTimeout: next.IdleConnTimeout, peerTLS: peerTLS, idle: map[string][]*leanConn{}}
}

// lean reports whether req is one this transport carries.
func (t *leanTransport) lean(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.URL.Scheme == "http" || t.peerTLS && req.URL.Scheme == "https") &&
		(req.Body == nil || req.Body == http.NoBody) &&
		req.ContentLength == 0 && len(req.TransferEncoding) == 0 && req.Header.Get("Upgrade") == "" &&
		req.Header.Get("Expect") == ""
}

func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.lean(req) {
		return t.next.RoundTrip(req)
	}
	addr := canonicalAddr(req.URL)
	for {
		lc, reused, err := t.get(req.Context(), addr)
		if err != nil {
			return nil, err
		}
		res, err := t.exchange(req, lc)
		if err == nil {
			return res, nil
		}
		lc.c.Close()
		if !reused || req.Context().Err() != nil {
			return nil, err
		}
		// A kept connection the peer had closed meanwhile: try again (on
		// the next kept one, or a new one), as net/http does for requests
		// that may run twice.
	}
}

func canonicalAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// exchange writes req on lc and reads the response head. The body, when
// read to its end, gives the connection back to the pool.
func (t *leanTransport) exchange(req *http.Request, lc *leanConn) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { lc.c.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if err := req.Write(lc.bw); err != nil {
		return fail(err)
	}
	if err := lc.bw.Flush(); err != nil {
		return fail(err)
	}
	for {
		res, err := http.ReadResponse(lc.br, req)
		if err != nil {
			return fail(err)
		}
		if res.StatusCode >= 100 && res.StatusCode < 200 && res.StatusCode != http.StatusSwitchingProtocols {
			continue // informational: the final response follows
		}
		res.Body = &leanBody{ReadCloser: res.Body, t: t, lc: lc, stop: stop, keep: !res.Close && !req.Close}
		return res, nil
	}
}

// leanBody returns the connection to the pool once the body has been read
// to its end, and closes it when the body is closed before that.
type leanBody struct {
	io.ReadCloser
	t    *leanTransport
	lc   *leanConn
	stop func() bool
	keep bool
	done bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.finish(b.keep)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *leanBody) Close() error {
	b.finish(false)
	return nil
}

func (b *leanBody) finish(reuse bool) {
	if b.done {
		return
	}
	b.done = true
	// stop is false when the context fired: the deadline it set would
	// spoil the next request on this connection.
	if b.stop() && reuse && b.lc.br.Buffered() == 0 {
		b.t.put(b.lc)
		return
	}
	b.lc.c.Close()
}

// get returns an idle connection to addr, or dials one.
func (t *leanTransport) get(ctx context.Context, addr string) (lc *leanConn, reused bool, err error) {
	now := time.Now()
	t.mu.Lock()
	for list := t.idle[addr]; len(list) > 0; list = t.idle[addr] {
		lc = list[len(list)-1]
		t.idle[addr] = list[:len(list)-1]
		if now.Sub(lc.idleAt) < t.idleTimeout {
			t.mu.Unlock()
			return lc, true, nil
		}
		lc.c.Close()
	}
	t.mu.Unlock()
	c, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &leanConn{addr: addr, c: c, br: bufio.NewReader(c), bw: bufio.NewWriter(c)}, false, nil
}

func (t *leanTransport) put(lc *leanConn) {
	lc.idleAt = time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || len(t.idle[lc.addr]) >= t.maxIdle {
		lc.c.Close()
		return
	}
	t.idle[lc.addr] = append(t.idle[lc.addr], lc)
}

// close closes the pooled connections of both transports and pools no
// more.
func (t *leanTransport) close() {
	t.mu.Lock()
	t.closed = true
	for addr, list := range t.idle {
		for _, lc := range list {
			lc.c.Close()
		}
		delete(t.idle, addr)
	}
	t.mu.Unlock()
	t.next.CloseIdleConnections()
}
