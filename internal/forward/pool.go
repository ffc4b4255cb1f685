package forward

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"shoal/internal/rawio"
)

// Dialer opens a connection to one target: TCP, a unix socket, TLS or
// the cluster's peer TLS, as the caller decides.
type Dialer func(ctx context.Context) (net.Conn, error)

// Pool keeps the idle keep-alive connections to one target.
type Pool struct {
	dial        Dialer
	maxIdle     int
	idleTimeout time.Duration

	// mu guards idle and closed.
	mu     sync.Mutex
	idle   []*conn // most recently used last
	closed bool
}

// PoolOptions configure a Pool; the zero value of each field has the
// meaning its comment gives.
type PoolOptions struct {
	// Dial opens a connection. Required.
	Dial Dialer
	// MaxIdle is how many idle connections are kept. Zero: 512.
	MaxIdle int
	// IdleTimeout is how long an idle connection is kept; keep it below
	// the target's own keep-alive timeout. Zero: 60s.
	IdleTimeout time.Duration
}

// NewPool returns an empty pool.
func NewPool(o PoolOptions) *Pool {
	return &Pool{dial: o.Dial, maxIdle: cmp.Or(o.MaxIdle, 512), idleTimeout: cmp.Or(o.IdleTimeout, 60*time.Second)}
}

// conn is one connection with its buffers.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// abort fails every pending read and write: a context's AfterFunc,
	// made once per connection rather than once per request.
	abort func()
	// readDeadline: a header timeout's deadline may still be set.
	readDeadline bool
	// dialed is when the dial of a connection not used yet began
	// (Request.TimeoutFromDial); zero once it carried a request.
	dialed time.Time
	// heads is the response being relayed and the last one parsed: one
	// response at a time comes on a connection.
	heads headCache
}

// readBuffer holds a whole response head (maxHead) and is the copy buffer
// of the body.
const readBuffer = maxHead

// get returns an idle connection, or dials one.
func (p *Pool) get(ctx, abort context.Context, now time.Time) (c *conn, reused bool, err error) {
	if now.IsZero() {
		now = time.Now()
	}
	if c = p.takeIdle(now); c != nil {
		return c, true, nil
	}
	return p.dialNew(ctx, abort)
}

// dialNew dials a connection; abort (nil: none) ends the dial too.
func (p *Pool) dialNew(ctx, abort context.Context) (*conn, bool, error) {
	if abort != nil {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		stop := context.AfterFunc(abort, func() { cancel(context.Cause(abort)) })
		defer stop()
	}
	start := time.Now()
	nc, err := p.dial(ctx)
	if err != nil {
		if abort != nil && abort.Err() != nil {
			err = fmt.Errorf("%w: %w", err, context.Cause(abort))
		}
		return nil, false, err
	}
	if tcp, ok := nc.(*net.TCPConn); ok {
		if r := rawio.New(tcp); r != nil {
			nc = r
		}
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, readBuffer), bw: bufio.NewWriterSize(nc, 4<<10), dialed: start}
	c.abort = func() { nc.SetDeadline(aLongTimeAgo) }
	return c, false, nil
}

func (p *Pool) takeIdle(now time.Time) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.idleAt) < p.idleTimeout {
			return c
		}
		c.nc.Close()
	}
	return nil
}

// put keeps c for the next request, or closes it when the pool is full
// or closed.
func (p *Pool) put(c *conn) {
	c.idleAt = time.Now()
	var stale *conn
	p.mu.Lock()
	// The oldest idle connection sits at the bottom, under the ones in
	// use, which takeIdle never reaches while the load lasts: each put
	// retires it once it is past the idle timeout, so its descriptor is
	// not held for good.
	if len(p.idle) > 0 && c.idleAt.Sub(p.idle[0].idleAt) >= p.idleTimeout {
		stale = p.idle[0]
		p.idle[0] = nil
		p.idle = p.idle[1:]
	}
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.nc.Close()
	} else {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
	}
	if stale != nil {
		stale.nc.Close()
	}
}

// Close closes the idle connections and keeps none from now on;
// requests under way finish. Safe to call more than once.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// Prune closes the idle connections past the idle timeout, for a pool
// no request may come to for a while (a peer gone); it reports how many
// connections it keeps.
func (p *Pool) Prune() int {
	now := time.Now()
	p.mu.Lock()
	var stale []*conn
	for len(p.idle) > 0 && now.Sub(p.idle[0].idleAt) >= p.idleTimeout {
		stale = append(stale, p.idle[0])
		p.idle[0] = nil
		p.idle = p.idle[1:]
	}
	n := len(p.idle)
	p.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
	return n
}

// Idle is how many connections the pool keeps now.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
