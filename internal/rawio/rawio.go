// Package rawio owns the system calls of shoal's TCP connections on the
// request path: a Conn reads and writes its socket with raw non-blocking
// read, write and writev calls, waiting through the runtime's poller
// only when the socket is not ready, and can send a response or request
// together with the read that waits for what comes back.
//
// Why: net's Read and Write enter the scheduler's system-call state for
// every call. The socket is non-blocking, so no call blocks, but a write
// on loopback runs the receiver's TCP processing too and takes
// microseconds; the runtime's monitor then sees a processor "stuck in a
// system call", hands it to another thread and wakes that thread, and
// the writer must take it back when the call returns. With a node pinned
// to one CPU, as the benchmarks run it, that cost a thread switch every
// other request. The deferred write saves the read that would only learn
// that the answer has not come yet.
package rawio

import (
	"io"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Conn is a TCP connection whose Read, Write and Writev are raw system
// calls. Deadlines hold as on the TCPConn (the waits go through its
// poller), and ReadWithin and WriteWithin set one only when the one set
// is not close enough; ReadFrom (sendfile), CloseWrite and the rest are the
// TCPConn's own.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
	dl deadlines

	// rmu orders Reads; the fields below it are the Read in progress,
	// kept here so that a Read allocates no closure.
	rmu     sync.Mutex
	rp      []byte
	rn      int
	rerr    error
	out     []byte // a deferred write going out with this Read
	outN    int
	outErr  error
	readFn  func(fd uintptr) bool
	sendFn  func(fd uintptr) bool
	spare   []byte // out's buffer, kept between Reads
	pending []byte // guarded by wmu: the deferred write

	// wmu orders Writes and Writevs, as rmu Reads.
	wmu       sync.Mutex
	deferNext bool
	wp        []byte
	wn        int
	werr      error
	vecs      [][]byte
	vn        int64
	iov       []syscall.Iovec
	writeFn   func(fd uintptr) bool
	writevFn  func(fd uintptr) bool
}

// New returns c with raw reads and writes, or nil when c's socket cannot
// be reached.
func New(c *net.TCPConn) *Conn {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	rw := &Conn{TCPConn: c, rc: rc, dl: deadlines{born: time.Now()}}
	rw.readFn, rw.sendFn = rw.read, rw.sendThenRead
	rw.writeFn, rw.writevFn = rw.write, rw.writev
	return rw
}

// DeferWrite makes the next Write keep its bytes and send them from the
// Read that follows, on a connection that reads its peer's answer next:
// the read is then not tried before the answer can have come, and the
// poller's readiness is reset before the bytes leave, so no answer slips
// past it. Anything else that comes first sends them: a Write, a Writev,
// or Close (once, without waiting).
func (c *Conn) DeferWrite() {
	c.wmu.Lock()
	c.deferNext = true
	c.wmu.Unlock()
}

// Read reads into p: one read(2) when data is waiting, after sending a
// deferred write.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rp, c.rn, c.rerr = p, 0, nil
	c.takePending()
	var err error
	if len(c.out) > 0 {
		err = c.sendAndRead()
	} else {
		err = c.rc.Read(c.readFn)
	}
	c.rp = nil
	if err == nil {
		err = c.rerr
	}
	if err != nil {
		return c.rn, c.opError("read", err)
	}
	if c.rn == 0 {
		return 0, io.EOF
	}
	return c.rn, nil
}

// takePending moves the deferred write to c.out, for this Read to send.
func (c *Conn) takePending() {
	c.wmu.Lock()
	c.out, c.outN, c.outErr = c.pending, 0, nil
	c.pending, c.spare = c.spare[:0], nil
	c.deferNext = false
	c.wmu.Unlock()
}

// sendAndRead sends c.out and reads inside one poller read. What the
// socket does not take at once, or what a read that failed before its
// first try (a passed read deadline) left, goes out as an ordinary
// Write: the bytes were promised to the peer.
func (c *Conn) sendAndRead() error {
	err := c.rc.Read(c.sendFn)
	rest, werr := c.out[c.outN:], c.outErr
	if werr == nil && len(rest) > 0 {
		_, werr = c.Write(rest)
	}
	c.spare, c.out = c.out[:0], nil
	switch {
	case werr != nil:
		return c.opError("write", werr)
	case err != nil || len(rest) == 0:
		return err
	}
	return c.rc.Read(c.readFn)
}

func (c *Conn) sendThenRead(fd uintptr) bool {
	if c.outN == len(c.out) {
		return c.read(fd)
	}
	n, err := writeAll(fd, c.out[c.outN:])
	c.outN += n
	if err != nil {
		if err != syscall.EAGAIN {
			c.outErr = err
		}
		return true // failed, or not all out: finish outside
	}
	return false // all out: wait for the answer
}

func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rp[0])), uintptr(len(c.rp)))
		switch e {
		case 0:
			c.rn = int(n)
			raceAcquireIO(fd)
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = e
			return true
		}
	}
}

// Write writes all of p, after a deferred write; or, after DeferWrite,
// keeps p for the next Read.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.deferNext {
		c.deferNext = false
		c.pending = append(c.pending, p...)
		return len(p), nil
	}
	if err := c.flushPending(); err != nil {
		return 0, err
	}
	return c.writeLocked(p)
}

func (c *Conn) writeLocked(p []byte) (int, error) {
	c.wp, c.wn, c.werr = p, 0, nil
	err := c.pollWrite(c.writeFn, "write")
	c.wp = nil
	return c.wn, err
}

// pollWrite runs fn (write or writev) through the poller until it is
// done, and returns what failed, as an error of op.
func (c *Conn) pollWrite(fn func(fd uintptr) bool, op string) error {
	err := c.rc.Write(fn)
	if err == nil {
		err = c.werr
	}
	if err != nil {
		return c.opError(op, err)
	}
	return nil
}

// Flush sends a deferred write that no Read took, and cancels a
// DeferWrite not yet used.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.deferNext = false
	return c.flushPending()
}

// flushPending sends a deferred write that no Read took.
func (c *Conn) flushPending() error {
	if len(c.pending) == 0 {
		return nil
	}
	_, err := c.writeLocked(c.pending)
	c.pending = c.pending[:0]
	return err
}

func (c *Conn) write(fd uintptr) bool {
	n, err := writeAll(fd, c.wp[c.wn:])
	c.wn += n
	if err == syscall.EAGAIN {
		return false
	}
	c.werr = err
	return true
}

// writeAll writes p with write(2) until it is all out or the socket
// says EAGAIN or fails.
func writeAll(fd uintptr, p []byte) (int, error) {
	raceReleaseIO(fd)
	done := 0
	for done < len(p) {
		rest := p[done:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			done += int(n)
		case syscall.EINTR:
		default:
			return done, e
		}
	}
	return done, nil
}

// Writev writes every buffer of bufs, in order, with writev(2), after a
// deferred write; it consumes bufs as net.Buffers.WriteTo does. After
// DeferWrite it copies them for the next Read instead.
func (c *Conn) Writev(bufs *net.Buffers) (int64, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.deferNext {
		c.deferNext = false
		var n int64
		for _, b := range *bufs {
			c.pending = append(c.pending, b...)
			n += int64(len(b))
		}
		*bufs = nil
		return n, nil
	}
	if err := c.flushPending(); err != nil {
		return 0, err
	}
	c.vecs, c.vn, c.werr = *bufs, 0, nil
	err := c.pollWrite(c.writevFn, "writev")
	*bufs = c.vecs
	c.vecs = nil
	return c.vn, err
}

// maxIovecs is the most buffers one writev takes (IOV_MAX).
const maxIovecs = 1024

func (c *Conn) writev(fd uintptr) bool {
	for {
		c.iov = c.iov[:0]
		for _, b := range c.vecs {
			if len(c.iov) == maxIovecs {
				break
			}
			if len(b) > 0 {
				c.iov = append(c.iov, syscall.Iovec{Base: &b[0], Len: uint64(len(b))})
			}
		}
		if len(c.iov) == 0 {
			return true
		}
		raceReleaseIO(fd)
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.iov[0])), uintptr(len(c.iov)))
		c.iov = c.iov[:0] // drop the pointers into the caller's buffers
		switch e {
		case 0:
			c.vn += int64(n)
			c.consume(int64(n))
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
}

// consume drops n written bytes from the front of c.vecs.
func (c *Conn) consume(n int64) {
	for len(c.vecs) > 0 {
		l := int64(len(c.vecs[0]))
		if l > n {
			c.vecs[0] = c.vecs[0][n:]
			return
		}
		n -= l
		c.vecs[0] = nil
		c.vecs = c.vecs[1:]
	}
}

// Close sends a deferred write no Read took, once and without waiting
// (a peer that is not reading loses it, as it would lose the rest of a
// response on close), then closes the socket.
func (c *Conn) Close() error {
	c.wmu.Lock()
	if len(c.pending) > 0 {
		c.rc.Write(func(fd uintptr) bool {
			writeAll(fd, c.pending)
			return true
		})
		c.pending = c.pending[:0]
	}
	c.deferNext = false
	c.wmu.Unlock()
	return c.TCPConn.Close()
}

// CloseWrite sends a deferred write, then shuts the write side.
func (c *Conn) CloseWrite() error {
	if err := c.Flush(); err != nil {
		return err
	}
	return c.TCPConn.CloseWrite()
}

func (c *Conn) opError(op string, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
