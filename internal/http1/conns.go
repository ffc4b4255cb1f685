package http1

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"shoal/internal/rawio"
)

// The slow-client limits (server.min_send_rate, server.max_conns_per_ip)
// are off by default, as SPEC's config block gives them: a benchmark or a
// NAT gateway with hundreds of connections from one address must work out
// of the box. docs/security.md gives the values to set (1 KiB/s, 256).

// sendWindow is the span min_send_rate is averaged over: send_timeout, or
// a minute when that is off.
func sendWindow(send time.Duration) time.Duration {
	if send > 0 {
		return send
	}
	return time.Minute
}

// ConnLimiter counts the open connections of each client address across
// a node's listeners (server.max_conns_per_ip).
type ConnLimiter struct {
	log *slog.Logger
	// Exempt reports addresses the cap does not apply to (proxies and
	// peers that carry many clients' requests); asked only at the cap.
	Exempt func(netip.Addr) bool

	// mu guards ips.
	mu  sync.Mutex
	ips map[netip.Addr]*ipConns
}

type ipConns struct {
	open    int
	logged  time.Time // last "over the cap" line for this address
	refused int       // refusals since that line
}

// capLogEvery is how often one address may put an "over the cap" line in
// the log: a host hammering the cap must not flood it.
const capLogEvery = 10 * time.Second

func NewConnLimiter(log *slog.Logger) *ConnLimiter {
	return &ConnLimiter{log: log, ips: map[netip.Addr]*ipConns{}}
}

// admit counts a new connection from ip, or reports false (and logs, at
// most every capLogEvery per address) when ip already has max open; max 0
// admits all.
func (l *ConnLimiter) admit(ip netip.Addr, max int) bool {
	l.mu.Lock()
	e := l.ips[ip]
	if e == nil {
		e = &ipConns{}
		l.ips[ip] = e
	}
	if max > 0 && e.open >= max && (l.Exempt == nil || !l.Exempt(ip)) {
		e.refused++
		now := time.Now()
		var refused int
		if now.Sub(e.logged) >= capLogEvery {
			e.logged, refused, e.refused = now, e.refused, 0
		}
		l.mu.Unlock()
		if refused > 0 {
			l.log.Warn("max_conns_per_ip reached: closing new connections", "client", ip.String(),
				"open", max, "refused", refused)
		}
		return false
	}
	e.open++
	l.mu.Unlock()
	return true
}

func (l *ConnLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.ips[ip]; e != nil {
		if e.open--; e.open <= 0 {
			delete(l.ips, ip)
		}
	}
}

// Listener wraps ln so that each connection is counted against its
// address and carries the send-rate limit of lim.
func (l *ConnLimiter) Listener(ln net.Listener, lim Limits) net.Listener {
	return &limitListener{Listener: ln, lim: l, max: lim.MaxConnsPerIP,
		rate: lim.MinSendRate, window: sendWindow(lim.Send)}
}

// limitListener hands out *LimitConn.
type limitListener struct {
	net.Listener
	lim    *ConnLimiter
	max    int
	rate   int64
	window time.Duration
}

// Accept closes connections beyond the address's cap at once, without
// reading from them, and returns the next one within it.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tcp, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		ip := clientAddr(tcp)
		if !l.lim.admit(ip, l.max) {
			tcp.Close()
			continue
		}
		lc := newLimitConn(tcp)
		lc.release = func() { l.lim.release(ip) }
		lc.rate, lc.window = l.rate, l.window
		return lc, nil
	}
}

func clientAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// LimitConn is a client connection counted by a ConnLimiter, whose writes
// must keep up min_send_rate: the time spent blocked in writes is summed,
// and each time it reaches the window the bytes sent in it must be at
// least rate x window, or the write fails. Time the server spends making
// the response (a slow CGI script, an idle stream) does not count, only
// time the client takes to accept bytes. The write deadline the server
// asks for (send_timeout) still holds as it is.
type LimitConn struct {
	*net.TCPConn
	// raw does the reads and writes (package rawio says why); nil: the
	// TCPConn's own.
	raw      *rawio.Conn
	release  func()
	released atomic.Bool
	rate     int64 // bytes per second; 0: off
	window   time.Duration

	// mu guards outer and the window below, and orders the socket's write
	// deadline between a write and SetWriteDeadline.
	mu      sync.Mutex
	outer   time.Time     // the write deadline the server set
	blocked time.Duration // time spent in writes in this window
	sent    int64         // bytes written in this window
	atEnd   bool          // the armed deadline is the window's end
	// cut: a write timed out or was too slow; Close then resets the
	// connection, so the kernel drops what is still queued for the
	// client instead of trickling it out for minutes.
	cut atomic.Bool
}

// newLimitConn is tcp, not counted and without a send rate until the
// caller sets them.
func newLimitConn(tcp *net.TCPConn) *LimitConn {
	return &LimitConn{TCPConn: tcp, raw: rawio.New(tcp)}
}

// Read reads from the socket.
func (c *LimitConn) Read(p []byte) (int, error) {
	if c.raw != nil {
		return c.raw.Read(p)
	}
	return c.TCPConn.Read(p)
}

// write writes p to the socket.
func (c *LimitConn) write(p []byte) (int, error) {
	if c.raw != nil {
		return c.raw.Write(p)
	}
	return c.TCPConn.Write(p)
}

// writeBuffers writes a fast answer's parts with one writev. Like the
// answers net/http sends with sendfile, it is bound by send_timeout
// alone.
func (c *LimitConn) writeBuffers(bufs *net.Buffers) (int64, error) {
	if c.raw != nil {
		return c.raw.Writev(bufs)
	}
	return bufs.WriteTo(c.TCPConn)
}

// errTooSlow: the client read slower than min_send_rate. It is a
// timeout, as a stalled reader's is.
var errTooSlow = fmt.Errorf("client below min_send_rate: %w", os.ErrDeadlineExceeded)

// Close closes the connection and gives its place back to its address.
func (c *LimitConn) Close() error {
	if c.release != nil && c.released.CompareAndSwap(false, true) {
		c.release()
	}
	if c.cut.Load() {
		c.TCPConn.SetLinger(0)
	}
	if c.raw != nil {
		return c.raw.Close() // sends a deferred response first
	}
	return c.TCPConn.Close()
}

// CloseWrite sends a deferred response, then shuts the write side.
func (c *LimitConn) CloseWrite() error {
	if c.raw != nil {
		return c.raw.CloseWrite()
	}
	return c.TCPConn.CloseWrite()
}

// deferWrite makes the next write go out with the next read (a kept
// connection's response with the read of the next request), when the
// socket is raw and no send rate is watched.
func (c *LimitConn) deferWrite() bool {
	if c.raw == nil || c.rate != 0 {
		return false
	}
	c.raw.DeferWrite()
	return true
}

func (c *LimitConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// deadlines is what sets the socket's deadlines: the raw connection,
// which remembers them for ReadWithin and WriteWithin, else the TCPConn.
func (c *LimitConn) deadlines() interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
} {
	if c.raw != nil {
		return c.raw
	}
	return c.TCPConn
}

func (c *LimitConn) SetReadDeadline(t time.Time) error {
	return c.deadlines().SetReadDeadline(t)
}

func (c *LimitConn) SetWriteDeadline(t time.Time) error {
	if c.rate == 0 {
		return c.deadlines().SetWriteDeadline(t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outer = t
	return c.deadlines().SetWriteDeadline(t)
}

// ReadWithin sets the read deadline d from now, leaving one already set
// within d/16 of that (rawio.Conn.ReadWithin): the idle timeout a kept
// connection asks for before every request.
func (c *LimitConn) ReadWithin(d time.Duration) error {
	if c.raw != nil {
		return c.raw.ReadWithin(d)
	}
	return c.TCPConn.SetReadDeadline(time.Now().Add(d))
}

// WriteWithin is ReadWithin for the write deadline (send_timeout); with
// a send rate watched it is set exactly, as arm needs it.
func (c *LimitConn) WriteWithin(d time.Duration) error {
	if c.raw != nil && c.rate == 0 {
		return c.raw.WriteWithin(d)
	}
	return c.SetWriteDeadline(time.Now().Add(d))
}

// arm sets the socket's deadline to the end of the window or the
// server's deadline, whichever comes first, and returns the start time.
func (c *LimitConn) arm() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	end := now.Add(c.window - c.blocked)
	c.atEnd = true
	if !c.outer.IsZero() && !c.outer.After(end) {
		end, c.atEnd = c.outer, false
	}
	c.deadlines().SetWriteDeadline(end)
	return now
}

// judge books a write that started at start and moved n bytes; err is its
// error. It returns the error to report: nil when the write only stopped
// at the end of a window that kept up the rate (the caller goes on).
func (c *LimitConn) judge(start time.Time, n int64, err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blocked += time.Since(start)
	c.sent += n
	timedOut := err != nil && errors.Is(err, os.ErrDeadlineExceeded)
	// A timer may fire a little before the clock says the window is
	// over: the deadline armed says which one it was.
	if c.blocked < c.window && !(timedOut && c.atEnd) {
		if timedOut {
			c.cut.Store(true)
		}
		return err
	}
	kept := c.sent >= int64(float64(c.rate)*c.window.Seconds())
	c.blocked, c.sent = 0, 0
	switch {
	case !kept:
		c.cut.Store(true)
		return errTooSlow
	case timedOut && c.atEnd:
		return nil // the window's deadline, not the server's
	case timedOut:
		c.cut.Store(true)
	}
	return err
}

func (c *LimitConn) Write(p []byte) (int, error) {
	if c.rate == 0 {
		return c.write(p)
	}
	var n int
	for {
		start := c.arm()
		m, err := c.write(p[n:])
		n += m
		if err = c.judge(start, int64(m), err); err != nil || n == len(p) {
			return n, err
		}
	}
}

// ReadFrom keeps sendfile for files (net/http serves static files so):
// the file's offset says exactly what went out when a window ends in the
// middle. Anything else is copied through Write.
func (c *LimitConn) ReadFrom(src io.Reader) (int64, error) {
	if c.raw != nil {
		// A deferred response goes first; net/http writes a head before
		// a file, which sends it, but sendfile must never overtake it.
		if err := c.raw.Flush(); err != nil {
			return 0, err
		}
	}
	if c.rate == 0 {
		return c.TCPConn.ReadFrom(src)
	}
	inner := src
	if lr, ok := src.(*io.LimitedReader); ok {
		inner = lr.R
	}
	if _, ok := inner.(*os.File); !ok {
		return io.Copy(writerOnly{c}, src)
	}
	var total int64
	for {
		start := c.arm()
		n, werr := c.TCPConn.ReadFrom(src)
		total += n
		if err := c.judge(start, n, werr); err != nil || werr == nil {
			return total, err
		}
		// The window ended mid-file and the rate was kept: go on.
	}
}

// writerOnly hides ReadFrom, so io.Copy does not come back to it.
type writerOnly struct{ io.Writer }
