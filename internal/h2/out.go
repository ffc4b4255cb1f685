package h2

import (
	"errors"
	"fmt"
	"time"
)

// The way out: frames are encoded under wmu into connWriter's buffer, a
// memory copy that never blocks on the client; one writer goroutine per
// connection takes what has gathered and writes it to the socket with no
// lock held. So a client that stops reading stalls only that goroutine:
// the read loop goes on reading frames (and notices floods), handlers
// block on a full queue, never on the socket while holding a lock the
// read loop needs. A batch of answers the read loop encodes between two
// reads leaves in one write, as before.

const (
	// connWriteBuf is the capacity of the buffers frames gather in.
	connWriteBuf = 16 << 10
	// maxQueued is what may wait for the socket before handlers wait for
	// room and the read loop stops answering from Fast.
	maxQueued = 256 << 10
	// maxQueuedControl is what may wait beyond maxQueued: only the read
	// loop's own frames (acks, resets, window updates) get there, so a
	// client that sends PINGs or SETTINGS and reads nothing is told to
	// calm down once they pile up this high (net/http counts 10000
	// control frames; this is about 4000 PING acks).
	maxQueuedControl = 64 << 10
	// drainTimeout bounds the wait for a last GOAWAY to leave before the
	// connection closes.
	drainTimeout = time.Second
	// lingerTimeout: how long a closing connection's socket stays open
	// after its last frame (drainAndClose).
	lingerTimeout = 500 * time.Millisecond
)

var errQueueFull = errors.New("h2: client reads nothing while its frames pile up")

// connWriter gathers frames. Its buffer comes from the server's pool at
// the first write and goes to the writer goroutine at each flush, so an
// idle connection holds none. Under wmu.
type connWriter struct {
	c   *conn
	buf []byte
}

func (w *connWriter) Write(p []byte) (int, error) {
	if w.buf == nil {
		w.buf = w.c.srv.connBufs.get(connWriteBuf)
	}
	w.buf = append(w.buf, p...)
	w.c.wqueued += int64(len(p))
	return len(p), nil
}

// take hands over what has gathered.
func (w *connWriter) take() []byte {
	b := w.buf
	w.buf = nil
	return b
}

// writeLocked runs fn with the writer; after a failed write nothing more
// is written.
func (c *conn) writeLocked(fn func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if err := fn(); err != nil {
		c.failWrite(err)
		return err
	}
	return nil
}

// failWrite records a write error and closes the connection, which wakes
// the reader. Under wmu.
func (c *conn) failWrite(err error) {
	if c.werr == nil {
		c.werr = fmt.Errorf("h2: writing to %s: %w", c.remote, err)
		c.nc.Close()
	}
	c.wcond.Broadcast()
}

// flush hands what has gathered to the writer goroutine; it does not wait
// for the socket.
func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *conn) flushLocked() error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.bw.buf) > 0 && !c.writing {
		c.writing = true
		go c.writeLoop()
	}
	return nil
}

// writeLoop writes what gathers until nothing is left: it is the only
// code that writes to the socket. Each write gets WriteTimeout.
func (c *conn) writeLoop() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for c.werr == nil && len(c.bw.buf) > 0 {
		p := c.bw.take()
		c.wmu.Unlock()
		if d := c.srv.WriteTimeout; d > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(d))
		}
		_, err := c.nc.Write(p)
		if cap(p) <= 4*connWriteBuf { // a rare large one is not kept
			c.srv.connBufs.put(p)
		}
		c.wmu.Lock()
		if err != nil {
			c.failWrite(err)
			break
		}
		c.wsent += int64(len(p))
		c.wcond.Broadcast()
	}
	c.writing = false
	c.wcond.Broadcast()
}

// queuedLocked is what waits for the socket. Under wmu.
func (c *conn) queuedLocked() int64 { return c.wqueued - c.wsent }

// waitRoomLocked makes a handler wait while the queue is full. Under wmu.
func (c *conn) waitRoomLocked() {
	for c.werr == nil && c.queuedLocked() >= maxQueued {
		c.flushLocked()
		c.wcond.Wait()
	}
}

// overQueued reports whether the client leaves so much unread that the
// connection is not worth keeping.
func (c *conn) overQueued() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.queuedLocked() > maxQueued+maxQueuedControl
}

// fastRoom reports whether an answer of about n bytes may be queued by
// the read loop.
func (c *conn) fastRoom(n int) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.queuedLocked()+int64(n) <= maxQueued
}

// flushWait sends what has gathered and waits until it is written or the
// connection failed.
func (c *conn) flushWait() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	target := c.wqueued
	c.flushLocked()
	for c.werr == nil && c.wsent < target {
		c.wcond.Wait()
	}
	return c.werr
}

// drainAndClose closes the connection once what has gathered is written,
// waiting at most drainTimeout: a client that reads nothing does not get
// to keep it. The socket closes lingerTimeout after the last write, as
// net/http's does: closed at once with a flood still unread, it would
// answer with a reset, and a reset makes the client's kernel drop the
// GOAWAY it has not read yet, so the client never learns why.
func (c *conn) drainAndClose() {
	t := time.AfterFunc(drainTimeout, func() { c.nc.Close() })
	err := c.flushWait()
	t.Stop()
	if err != nil {
		c.nc.Close()
		return
	}
	time.AfterFunc(lingerTimeout, func() { c.nc.Close() })
}
