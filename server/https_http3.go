package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// altSvcMaxAge is how long clients remember the HTTP/3 announcement. A day
// rather than quic-go's 30 days, so turning tls.http3 off is noticed soon
// (clients fall back to TCP anyway when UDP fails).
const altSvcMaxAge = 24 * time.Hour

// http3Options configures startHTTP3.
type http3Options struct {
	// Addr is the UDP address to bind: the https listener's address, so
	// Alt-Svc can announce the same port.
	Addr string
	// TLS is certManager.TLSConfig(); quic-go clones it with ALPN h3, and
	// certificates and ticket keys still follow the manager.
	TLS     *tls.Config
	Handler http.Handler
	// MaxHeaderBytes caps a request's header block; 0 is quic-go's default
	// (http.DefaultMaxHeaderBytes).
	MaxHeaderBytes int
	// IdleTimeout closes idle connections; 0 never does.
	IdleTimeout time.Duration
	// Log receives serve errors; nil is slog.Default().
	Log *slog.Logger
}

// http3Listener is a running HTTP/3 server on one UDP socket.
type http3Listener struct {
	srv  *http3.Server
	conn net.PacketConn
	port int
	done chan struct{}
	// inflight counts the requests being handled and lastDone (unix
	// nanoseconds) is when one last ended: quic-go's Shutdown waits for
	// every client to close its connection, which a client that went away
	// never does, so Shutdown closes once no request was in flight for a
	// while.
	inflight atomic.Int64
	lastDone atomic.Int64
}

// startHTTP3 binds the UDP socket now, so a port in use is a start error,
// and serves in the background until Shutdown.
//
// 0-RTT is off: early data can be replayed by an attacker, and shoal's
// handlers (CGI, sessions) cannot tell a replayed POST from a real one.
func startHTTP3(o http3Options) (*http3Listener, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	conn, err := net.ListenPacket("udp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("http3: %w", err)
	}
	h := &http3Listener{}
	*h = http3Listener{
		srv: &http3.Server{
			TLSConfig:      o.TLS,
			Handler:        h.counted(o.Handler),
			MaxHeaderBytes: o.MaxHeaderBytes,
			IdleTimeout:    o.IdleTimeout,
			QUICConfig:     &quic.Config{Allow0RTT: false},
			Logger:         log,
		},
		conn: conn,
		port: conn.LocalAddr().(*net.UDPAddr).Port,
		done: make(chan struct{}),
	}
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(conn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http3: serve failed", "addr", conn.LocalAddr().String(), "err", err)
		}
	}()
	return h, nil
}

// cancelWhenIdle calls cancel once no request was in flight for
// http3Settle, polling as net/http's Shutdown does; a request that starts
// meanwhile is refused by the GOAWAY the shutdown sent first.
func (h *http3Listener) cancelWhenIdle(ctx context.Context, cancel context.CancelFunc) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			since := start
			if last := time.Unix(0, h.lastDone.Load()); last.After(since) {
				since = last
			}
			quiet := now.Sub(since)
			if h.inflight.Load() == 0 && quiet >= http3Settle {
				cancel()
				return
			}
		}
	}
}

// Addr is the bound UDP address.
func (h *http3Listener) Addr() net.Addr { return h.conn.LocalAddr() }

// AltSvc is the Alt-Svc header value announcing this listener, for altSvc.
func (h *http3Listener) AltSvc() string {
	return fmt.Sprintf(`h3=":%d"; ma=%d`, h.port, int(altSvcMaxAge.Seconds()))
}

// counted wraps next to count the requests in flight.
func (h *http3Listener) counted(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.inflight.Add(1)
		defer func() {
			h.lastDone.Store(time.Now().UnixNano())
			h.inflight.Add(-1)
		}()
		next.ServeHTTP(w, r)
	})
}

// http3Settle is how long Shutdown waits with no request in flight (since
// its GOAWAY, and since the last request ended) before it closes every
// connection: clients that behave close theirs, and the last responses,
// which may still sit in QUIC's send buffers when their handler returns,
// reach their clients (closing discards what is not yet acknowledged).
const http3Settle = time.Second

// Shutdown sends GOAWAY, waits for requests in flight until ctx ends,
// then closes every connection (a client that went away would otherwise
// hold the shutdown until ctx ends) and releases the socket.
func (h *http3Listener) Shutdown(ctx context.Context) error {
	idle, cancel := context.WithCancel(ctx)
	defer cancel()
	go h.cancelWhenIdle(idle, cancel)
	err := h.srv.Shutdown(idle)
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		err = nil // closed early: no request was left
	}
	if cerr := h.conn.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	<-h.done
	if err != nil {
		return fmt.Errorf("http3: shutdown: %w", err)
	}
	return nil
}
