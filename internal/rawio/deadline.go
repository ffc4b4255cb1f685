package rawio

import (
	"sync/atomic"
	"time"
)

// deadlines remembers the read and write deadlines set on a Conn, so that
// ReadWithin and WriteWithin can leave one that is close enough: moving a
// deadline costs a clock read and a timer update in the runtime's heap,
// and a kept connection asks for the same one (idle timeout, send
// timeout, a target's header timeout) on every request.
type deadlines struct {
	// born is the time the offsets below count from (monotonic).
	born time.Time
	// read and write are the deadlines set, as nanoseconds after born;
	// none is 0 (also a deadline long past: both make the next Within
	// set one).
	read, write atomic.Int64
}

// within returns the offset after born of a deadline d from now to set
// in place of at (the one set), or 0 when at already falls from d to
// d+d/slackDiv from now.
func (dl *deadlines) within(at *atomic.Int64, d time.Duration) int64 {
	want := int64(time.Since(dl.born) + d)
	if cur := at.Load(); cur >= want && cur <= want+int64(d/slackDiv) {
		return 0
	}
	next := want + int64(d/slackDiv)
	at.Store(next)
	return next
}

// slackDiv: a Within deadline is at most 1/slackDiv of its duration
// later than asked (a 120 s idle timeout may run to 127.5 s), so that a
// connection busy with requests moves its deadline only once in that
// time.
const slackDiv = 16

// record notes t as the deadline at holds.
func (dl *deadlines) record(at *atomic.Int64, t time.Time) {
	var off int64
	if !t.IsZero() {
		off = int64(t.Sub(dl.born))
		if off <= 0 {
			off = -1 // past: never "close enough"
		}
	}
	at.Store(off)
}

// ReadWithin sets the read deadline to d from now, give or take: a
// deadline already set between d and d + d/16 from now is kept.
func (c *Conn) ReadWithin(d time.Duration) error {
	if off := c.dl.within(&c.dl.read, d); off != 0 {
		return c.TCPConn.SetReadDeadline(c.dl.born.Add(time.Duration(off)))
	}
	return nil
}

// WriteWithin is ReadWithin for the write deadline.
func (c *Conn) WriteWithin(d time.Duration) error {
	if off := c.dl.within(&c.dl.write, d); off != 0 {
		return c.TCPConn.SetWriteDeadline(c.dl.born.Add(time.Duration(off)))
	}
	return nil
}

// SetDeadline sets both deadlines, as the TCPConn's.
func (c *Conn) SetDeadline(t time.Time) error {
	c.dl.record(&c.dl.read, t)
	c.dl.record(&c.dl.write, t)
	return c.TCPConn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline, as the TCPConn's.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dl.record(&c.dl.read, t)
	return c.TCPConn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline, as the TCPConn's.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.dl.record(&c.dl.write, t)
	return c.TCPConn.SetWriteDeadline(t)
}
