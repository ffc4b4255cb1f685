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

	// starved counts requests sent that have had no answer for
	// starveAfter: php-fpm may have no worker for their connection,
	// because its workers sit on the pool's idle kept connections.
	starved atomic.Int64
	// relieved counts connections closed to free a worker for them.
	relieved atomic.Int64

	// mu guards idle, open and waiters.
	mu   sync.Mutex
	idle []*conn // open and unused, newest last
	open int     // connections open, busy and idle
	// waiters wait for a connection, first come first served: put hands
	// one a connection, a freed slot hands one nil (dial your own).
	waiters []chan *conn
}

// conn is one connection to the target with its buffers.
type conn struct {
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	idleFrom time.Time
	reused   bool
	buf      []byte // one record's content; made at the first read
}

// rbuf is the connection's record buffer: records are read into it one at
// a time, so a connection holds one, however long its responses.
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

// get returns a connection: an idle one that is still alive, else a new
// one while fewer than MaxConns are open, else the first one given back or
// freed, waiting until ctx ends.
func (c *Client) get(ctx context.Context) (*conn, error) {
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
			return c.dialSlot(ctx)
		}
		ch := make(chan *conn, 1)
		c.waiters = append(c.waiters, ch)
		c.mu.Unlock()
		select {
		case cn := <-ch:
			if cn == nil {
				return c.dialSlot(ctx)
			}
			cn.reused = true
			return cn, nil
		case <-ctx.Done():
			c.leaveQueue(ch)
			return nil, fmt.Errorf("fastcgi: waiting for a connection to %s: %w", c.Address, ctx.Err())
		}
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

// usable reports whether an idle connection may carry a request.
func (c *Client) usable(cn *conn) bool {
	idleMax := c.IdleTimeout
	if idleMax <= 0 {
		idleMax = 30 * time.Second
	}
	cn.reused = true
	return time.Since(cn.idleFrom) < idleMax && cn.alive()
}

// dialSlot opens a connection in a slot already counted in open.
func (c *Client) dialSlot(ctx context.Context) (*conn, error) {
	cn, err := c.dial(ctx)
	if err != nil {
		c.freeSlot()
		return nil, err
	}
	return cn, nil
}

func (c *Client) dial(ctx context.Context) (*conn, error) {
	timeout := c.DialTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, c.Network, c.Address)
	if c.Dialed != nil && ctx.Err() == nil {
		c.Dialed(err)
	}
	if err != nil {
		return nil, fmt.Errorf("fastcgi: %w", err)
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 16<<10)}, nil
}

// alive reports whether the application still has the connection open: a
// read that may not wait finds nothing (an EOF means it closed it, as
// php-fpm does when a worker is recycled, and data means the stream is
// out of step).
func (cn *conn) alive() bool {
	if cn.br.Buffered() > 0 {
		return false
	}
	cn.nc.SetReadDeadline(time.Now())
	var one [1]byte
	_, err := cn.nc.Read(one[:])
	cn.nc.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// starveAfter is how long a request may wait for the application's first
// record before the pool suspects it has no worker (see put).
const starveAfter = 200 * time.Millisecond

// put gives a connection whose request ended cleanly to the first waiter,
// or to the idle list. While a request is starved, it is closed instead:
// php-fpm binds a worker to a connection until the connection closes, so
// with fewer workers than the pool's connections, kept connections would
// hold every worker while a newer one waits forever; closing one frees a
// worker for it (nginx's fastcgi_keep_conn has no such remedy).
func (c *Client) put(cn *conn) {
	if c.starved.Load() > 0 {
		c.relieved.Add(1)
		c.discard(cn)
		return
	}
	cn.idleFrom = time.Now()
	c.mu.Lock()
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

// discard closes a connection and frees its slot.
func (c *Client) discard(cn *conn) {
	cn.nc.Close()
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
