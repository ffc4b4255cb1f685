package fastcgi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"shoal/internal/rawio"
)

// Client sends requests to one FastCGI application (one target) over
// connections it keeps open and reuses, at most MaxConns at once. The zero
// values of its fields have the meaning their comments give; a Client must
// not be copied after first use.
type Client struct {
	// Network is "tcp" or "unix"; Address is "host:port" or a socket path.
	Network, Address string
	// MaxConns bounds the connections open to the target at once, busy and
	// idle together; a request waits for one (until its context ends).
	// php-fpm serves one request per worker: match pm.max_children. Zero: 16.
	MaxConns int
	// DialTimeout bounds a connect. Zero: 5s.
	DialTimeout time.Duration
	// IdleTimeout closes a connection unused this long instead of reusing
	// it. Zero: 30s.
	IdleTimeout time.Duration
	// Dialed, when set, is told each connect's outcome (nil: connected),
	// so an upstream can skip a target that refuses. Nil: nobody.
	Dialed func(err error)

	// relieved counts connections closed to free a worker for a starved
	// request (see put).
	relieved atomic.Int64

	// mu guards idle, open, conns and waiters.
	mu   sync.Mutex
	idle []*conn // open and unused, newest last
	open int     // connections open, busy and idle, and dials under way
	// conns are the open connections, for put's look at the requests
	// that wait for their first record.
	conns []*conn
	// waiters wait for a connection, first come first served: put hands
	// one a connection, a freed slot hands one nil (dial your own).
	waiters []chan *conn
}

// conn is one connection to the target with its buffers.
type conn struct {
	nc       net.Conn
	br       *bufio.Reader // reads through conn.Read
	bw       *bufio.Writer // the stdin stream of a body too big to send at once
	idleFrom time.Time
	reused   bool
	buf      []byte // a record too long for br; made at the first one
	// sentAt is when the request on a connection never answered yet was
	// sent (since clockStart), 0 once the application answered: such a
	// request waiting long for its first record may have no php-fpm
	// worker (see put). A connection answered once has its worker.
	sentAt atomic.Int64
	served bool // the application answered on it: a worker holds it

	// The request's context and deadline (zero: none), and the read
	// deadline armed on nc; only the goroutine reading the response
	// touches them (see Read).
	ctx         context.Context
	want, armed time.Time
}

// clockStart is the zero of conn.sentAt, read with the monotonic clock.
var clockStart = time.Now()

// rbuf is the connection's record buffer for records longer than br's
// buffer: a connection holds one, however long its responses.
func (cn *conn) rbuf() []byte {
	if cn.buf == nil {
		cn.buf = make([]byte, maxContent)
	}
	return cn.buf
}

func (c *Client) maxConns() int {
	if c.MaxConns > 0 {
		return c.MaxConns
	}
	return 16
}

// errQueueTimeout: no connection came free before the request's deadline.
var errQueueTimeout = fmt.Errorf("fastcgi: no connection free in time: %w", context.DeadlineExceeded)

// get returns a connection: an idle one that is still usable, else a new
// one while fewer than MaxConns are open, else the first one given back or
// freed, waiting until ctx ends or the deadline (zero: none) passes.
func (c *Client) get(ctx context.Context, deadline time.Time) (*conn, error) {
	for {
		c.mu.Lock()
		if n := len(c.idle); n > 0 {
			cn := c.idle[n-1]
			c.idle[n-1] = nil
			c.idle = c.idle[:n-1]
			c.mu.Unlock()
			if c.usable(cn) {
				return cn, nil
			}
			c.discard(cn)
			continue
		}
		if c.open < c.maxConns() {
			c.open++
			c.mu.Unlock()
			return c.dialSlot(ctx, deadline)
		}
		ch := make(chan *conn, 1)
		c.waiters = append(c.waiters, ch)
		c.mu.Unlock()
		return c.wait(ctx, deadline, ch)
	}
}

// wait waits in the queue for a connection handed over or a slot freed.
func (c *Client) wait(ctx context.Context, deadline time.Time, ch chan *conn) (*conn, error) {
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	select {
	case cn := <-ch:
		if cn == nil {
			return c.dialSlot(ctx, deadline)
		}
		cn.reused = true
		return cn, nil
	case <-ctx.Done():
		c.leaveQueue(ch)
		return nil, fmt.Errorf("fastcgi: waiting for a connection to %s: %w", c.Address, ctx.Err())
	case <-expired:
		c.leaveQueue(ch)
		return nil, errQueueTimeout
	}
}

// leaveQueue takes a waiter that gave up out of the queue; what was handed
// to it meanwhile goes to the next one.
func (c *Client) leaveQueue(ch chan *conn) {
	c.mu.Lock()
	for i, w := range c.waiters {
		if w == ch {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			c.mu.Unlock()
			return
		}
	}
	c.mu.Unlock()
	if cn := <-ch; cn != nil {
		c.put(cn)
	} else {
		c.freeSlot()
	}
}

// usable reports whether an idle connection may carry a request: not idle
// too long, and with nothing unread (data there means the stream is out
// of step). A connection the application closed meanwhile is found when
// the request is sent (see Response.resend).
func (c *Client) usable(cn *conn) bool {
	idleMax := c.IdleTimeout
	if idleMax <= 0 {
		idleMax = 30 * time.Second
	}
	cn.reused = true
	return time.Since(cn.idleFrom) < idleMax && cn.br.Buffered() == 0
}

// dialSlot opens a connection in a slot already counted in open.
func (c *Client) dialSlot(ctx context.Context, deadline time.Time) (*conn, error) {
	cn, err := c.dial(ctx, deadline)
	if err != nil {
		c.freeSlot()
		return nil, err
	}
	c.mu.Lock()
	c.conns = append(c.conns, cn)
	c.mu.Unlock()
	return cn, nil
}

func (c *Client) dial(ctx context.Context, deadline time.Time) (*conn, error) {
	timeout := c.DialTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	d := net.Dialer{Timeout: timeout, Deadline: deadline}
	nc, err := d.DialContext(ctx, c.Network, c.Address)
	if c.Dialed != nil && ctx.Err() == nil {
		c.Dialed(err)
	}
	if err != nil {
		return nil, fmt.Errorf("fastcgi: %w", err)
	}
	if tcp, ok := nc.(*net.TCPConn); ok {
		if r := rawio.New(tcp); r != nil {
			nc = r
		}
	}
	cn := &conn{nc: nc}
	cn.br = bufio.NewReaderSize(cn, 16<<10)
	return cn, nil
}

// ctxPoll is how often a read that waits looks at its request's context.
const ctxPoll = 100 * time.Millisecond

// Read reads from the application for br. The read deadline is a tick,
// not a per-request timer: armed at most ctxPoll ahead (or at the
// request's own deadline when nearer), it wakes a waiting read, which
// gives up when the request's context ended or its deadline passed, and
// else arms the next tick and reads on. A request that starts on a
// connection whose tick is still ahead arms nothing: setting and clearing
// a deadline per request cost more than the rest of the pool's work, and
// a context.AfterFunc per request allocates and locks the parent context.
func (cn *conn) Read(p []byte) (int, error) {
	for {
		n, err := cn.nc.Read(p)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if cn.ctx != nil && cn.ctx.Err() != nil {
			return n, cn.ctx.Err()
		}
		now := time.Now()
		if !cn.want.IsZero() && !now.Before(cn.want) {
			return n, err
		}
		cn.arm(now)
	}
}

// arm sets the read deadline to the next tick, or to the request's
// deadline when that comes first; none when nothing is to be watched.
func (cn *conn) arm(now time.Time) {
	d := now.Add(ctxPoll)
	if !cn.want.IsZero() && cn.want.Before(d) {
		d = cn.want
	}
	if cn.want.IsZero() && (cn.ctx == nil || cn.ctx.Done() == nil) {
		d = time.Time{}
	}
	cn.nc.SetReadDeadline(d)
	cn.armed = d
}

// watch makes the connection's reads answer to a request's context and
// deadline from now on (see Read).
func (cn *conn) watch(ctx context.Context, deadline, now time.Time) {
	cn.ctx, cn.want = ctx, deadline
	if cn.armed.IsZero() || !deadline.IsZero() && deadline.Before(cn.armed) {
		cn.arm(now)
	}
}

// starveAfter is how long a request may wait for the application's first
// record before the pool suspects it has no worker (see put).
const starveAfter = 200 * time.Millisecond

// put gives a connection whose request ended cleanly to the first waiter,
// or to the idle list. While a request is starved, it is closed instead:
// php-fpm binds a worker to a connection until the connection closes, so
// with fewer workers than the pool's connections, kept connections would
// hold every worker while a newer one waits forever; closing one frees a
// worker for it (nginx's fastcgi_keep_conn has no such remedy). Only a
// request on a connection no worker has answered yet can be starved: a
// slow script on a kept connection has its worker, and closing
// connections for it would only cost new ones.
func (c *Client) put(cn *conn) {
	now := time.Now()
	cn.idleFrom = now
	c.mu.Lock()
	if c.starvedLocked(now) {
		c.mu.Unlock()
		c.relieved.Add(1)
		c.discard(cn)
		return
	}
	if len(c.waiters) > 0 {
		ch := c.waiters[0]
		c.waiters = c.waiters[1:]
		c.mu.Unlock()
		ch <- cn
		return
	}
	c.idle = append(c.idle, cn)
	c.mu.Unlock()
}

// starvedLocked reports a request sent starveAfter ago or more that has
// had no answer yet. It looks at the few open connections instead of
// arming a timer per request.
func (c *Client) starvedLocked(now time.Time) bool {
	limit := int64(now.Sub(clockStart) - starveAfter)
	for _, o := range c.conns {
		if t := o.sentAt.Load(); t != 0 && t <= limit {
			return true
		}
	}
	return false
}

// discard closes a connection and frees its slot.
func (c *Client) discard(cn *conn) {
	cn.nc.Close()
	c.mu.Lock()
	for i, o := range c.conns {
		if o == cn {
			last := len(c.conns) - 1
			c.conns[i], c.conns[last] = c.conns[last], nil
			c.conns = c.conns[:last]
			break
		}
	}
	c.mu.Unlock()
	c.freeSlot()
}

// freeSlot passes a closed connection's slot to the first waiter, or
// counts it free.
func (c *Client) freeSlot() {
	c.mu.Lock()
	if len(c.waiters) > 0 {
		ch := c.waiters[0]
		c.waiters = c.waiters[1:]
		c.mu.Unlock()
		ch <- nil
		return
	}
	c.open--
	c.mu.Unlock()
}

// Close closes the idle connections; busy ones close when their requests
// end.
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, cn := range idle {
		c.discard(cn)
	}
	return nil
}

// Open reports the connections open now (busy and idle), for tests and
// metrics.
func (c *Client) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}
