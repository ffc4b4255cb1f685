package fastcgi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"shoal/internal/rawio"
)

// requestID is the id of every request: a connection carries one request
// at a time (php-fpm does not multiplex, and FCGI_MPXS_CONNS is rare).
const requestID = 1

// Param is one FastCGI parameter, a CGI meta-variable.
type Param struct{ Name, Value string }

// Request is one request to a responder.
type Request struct {
	// Params are the CGI meta-variables (see Params).
	Params []Param
	// Stdin is the request body, streamed as FCGI_STDIN while the response
	// is read (so an application that answers before it reads all of it
	// cannot deadlock); nil: an empty body.
	Stdin io.Reader
	// Stderr gets the content of each FCGI_STDERR record; nil: dropped.
	// It runs on the goroutine that reads the response.
	Stderr func(p []byte)

	// encoded, when set, holds the params already encoded, after
	// requestRoom bytes of room (Handler's path); Params is then unused.
	// Framing the request writes into it.
	encoded []byte
	// body is a whole body small enough to go out with the params; Stdin
	// is then nil.
	body []byte
	// deadline bounds the wait for a connection and for the first records
	// (the response header). Zero: none.
	deadline time.Time
}

// Response is the application's stdout as it arrives. Read it to the end
// (io.EOF comes with FCGI_END_REQUEST) and Close it; only then does its
// connection go back to the pool, and only when nothing went wrong.
type Response struct {
	c       *Client
	cn      *conn
	stderr  func([]byte)
	pending []byte // the unread part of the current stdout record

	ctx context.Context

	// wire is the whole request as written (params and a small body),
	// kept to send it again on a fresh connection when a kept one turns
	// out closed before any answer; nil when stdin streams.
	wire     []byte
	deadline time.Time
	// resent counts the sends after the first (bounded).
	resent int

	writing   bool           // a goroutine streams stdin
	writer    sync.WaitGroup // that goroutine
	writerErr error          // set before writer.Done
	writeDone chan struct{}  // closed when the writer is done

	end      endRequest
	answered bool  // a record came
	done     bool  // END_REQUEST was read
	err      error // the first failure; sticky
	released bool  // the connection went back to the pool or was closed
}

// errProtocol: the application broke the protocol; its connection is closed.
var errProtocol = errors.New("fastcgi: protocol error")

// Do sends req and returns once the request is on its way: the response is
// read through the returned Response. Ending ctx aborts the request: a
// read waiting for the application gives up within a tenth of a second
// with ctx's error, and the connection is closed (php-fpm stops the
// script at its next output).
func (c *Client) Do(ctx context.Context, req *Request) (*Response, error) {
	resp := new(Response)
	if err := c.do(ctx, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// do is Do into a Response the caller provides (Handler keeps one per
// request state, so a request allocates none).
func (c *Client) do(ctx context.Context, req *Request, resp *Response) error {
	*resp = Response{c: c, stderr: req.Stderr, ctx: ctx, deadline: req.deadline}
	wire, framed := req.frame()
	if framed {
		resp.wire = wire
	}
	cn, err := resp.send(req, wire, framed)
	if err != nil {
		return err
	}
	resp.start(cn)
	if framed {
		return nil
	}
	// Without a body to stream, writeUnframed ended stdin already: no
	// goroutine whose exit could race with the answer.
	if req.Stdin != nil {
		resp.writing = true
		resp.writeDone = make(chan struct{})
		resp.writer.Add(1)
		go resp.writeStdin(req.Stdin)
	}
	return nil
}

// frame returns the request's records for one write: the params (encoded
// here unless the Handler did) and a small body with the end of stdin.
// false: the params exceed a record or stdin streams, and send writes
// them through the connection's buffered writer.
func (req *Request) frame() ([]byte, bool) {
	b := req.encoded
	if b == nil {
		b = make([]byte, requestRoom, requestRoom+1024)
		for _, p := range req.Params {
			b = appendPair(b, p.Name, p.Value)
		}
	}
	if req.Stdin != nil {
		return b, false
	}
	return frameRequest(b, req.body, true)
}

// send takes a connection and writes the request on it. A kept connection
// the application closed meanwhile fails the write: once more on another
// (nothing of the body was read yet).
func (r *Response) send(req *Request, wire []byte, framed bool) (*conn, error) {
	for attempt := 0; ; attempt++ {
		cn, err := r.c.get(r.ctx, r.deadline)
		if err != nil {
			return nil, err
		}
		if framed {
			if rc, ok := cn.nc.(*rawio.Conn); ok {
				// Sent with the first read of the answer. A kept
				// connection php-fpm closed fails there, with the same
				// EPIPE or reset, and resend takes it.
				rc.DeferWrite()
			}
			_, err = cn.nc.Write(wire)
		} else {
			err = writeUnframed(cn, req, wire)
		}
		if err == nil {
			return cn, nil
		}
		r.c.discard(cn)
		if !cn.reused || attempt > r.c.maxConns() {
			return nil, fmt.Errorf("fastcgi: sending request: %w", err)
		}
	}
}

// writeUnframed writes FCGI_BEGIN_REQUEST and the params stream through
// the connection's buffered writer, and the end of stdin when there is no
// body: params too long for one record, or a body to stream after.
func writeUnframed(cn *conn, req *Request, b []byte) error {
	if cn.bw == nil {
		cn.bw = bufio.NewWriterSize(cn.nc, 16<<10)
	}
	bw := cn.bw
	bw.Write(beginRecord[:])
	writeStream(bw, typeParams, requestID, b[requestRoom:])
	writeRecord(bw, typeParams, requestID, nil)
	if req.Stdin == nil {
		writeStream(bw, typeStdin, requestID, req.body)
		writeRecord(bw, typeStdin, requestID, nil)
	}
	return bw.Flush()
}

// start watches the request sent on cn: its context, its deadline, and
// how long the first record takes (Client.put).
func (r *Response) start(cn *conn) {
	r.cn = cn
	now := time.Now()
	cn.watch(r.ctx, r.deadline, now)
	if !cn.served {
		cn.sentAt.Store(int64(max(now.Sub(clockStart), 1)))
	}
}

// resend sends the request again on another connection after a kept one
// ended before a single byte of answer: the application closed it while
// it was idle (php-fpm recycling a worker), which a write to it does not
// reveal. Only a request sent whole in one write (no streamed stdin) can
// go again; an application that began to answer ran the script, and its
// failure stands.
func (r *Response) resend(cause error) bool {
	if r.wire == nil || r.answered || r.cn.br.Buffered() > 0 || !r.cn.reused || r.resent > r.c.maxConns() ||
		r.ctx.Err() != nil || !(errors.Is(cause, io.EOF) || errors.Is(cause, syscall.ECONNRESET) || errors.Is(cause, syscall.EPIPE)) {
		return false
	}
	r.resent++
	r.cn.sentAt.Store(0)
	r.cn.ctx = nil
	r.c.discard(r.cn)
	cn, err := r.send(nil, r.wire, true)
	if err != nil {
		r.released = true // discarded above
		r.failWith(err)
		return true
	}
	r.start(cn)
	return true
}

// writeStdin streams the body as FCGI_STDIN records, then the empty one
// that ends the stream.
func (r *Response) writeStdin(body io.Reader) {
	defer r.writer.Done()
	defer close(r.writeDone)
	bw := r.cn.bw
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			writeRecord(bw, typeStdin, requestID, buf[:n])
			if werr := bw.Flush(); werr != nil {
				r.writerErr = werr
				return
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			r.writerErr = fmt.Errorf("fastcgi: reading the request body: %w", err)
			return
		}
	}
	writeRecord(bw, typeStdin, requestID, nil)
	if err := bw.Flush(); err != nil {
		r.writerErr = err
	}
}

// Read reads the application's stdout; stderr records met on the way go
// to Request.Stderr. io.EOF means the request ended and the application
// said so.
func (r *Response) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.next()
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// chunk returns the next piece of stdout as it came (in the connection's
// buffer, valid until the next call), so a copier writes it on without
// copying it first; io.EOF as Read.
func (r *Response) chunk() ([]byte, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return nil, r.err
		}
		if r.done {
			return nil, io.EOF
		}
		r.next()
	}
	p := r.pending
	r.pending = nil
	return p, nil
}

// headerRead ends the header's deadline: the body streams without one.
func (r *Response) headerRead() {
	if !r.released {
		r.cn.want = time.Time{}
	}
}

// next reads one record and acts on it.
func (r *Response) next() {
	h, content, err := readRecord(r.cn.br, r.cn.rbuf())
	if err != nil {
		if r.resend(err) {
			return
		}
		if r.ctx.Err() != nil {
			err = r.ctx.Err()
		} else if errors.Is(err, io.EOF) {
			err = fmt.Errorf("fastcgi: the application closed the connection before ending the request: %w", io.ErrUnexpectedEOF)
		}
		r.fail(err)
		return
	}
	if !r.answered {
		r.answered = true
		if !r.cn.served {
			r.cn.served = true
			r.cn.sentAt.Store(0)
		}
	}
	if h.RequestID != requestID {
		if h.RequestID == 0 {
			return // a management record nobody asked for: ignored
		}
		r.fail(fmt.Errorf("%w: record for request %d", errProtocol, h.RequestID))
		return
	}
	switch h.Type {
	case typeStdout:
		r.pending = content
	case typeStderr:
		if r.stderr != nil && len(content) > 0 {
			r.stderr(content)
		}
	case typeEndRequest:
		end, err := parseEndRequest(content)
		if err != nil {
			r.fail(fmt.Errorf("%w: %v", errProtocol, err))
			return
		}
		r.end, r.done = end, true
		if end.protocolStatus != statusRequestComplete {
			r.fail(fmt.Errorf("fastcgi: request refused: %s", protocolStatusText(end.protocolStatus)))
			return
		}
		r.finish()
	default:
		r.fail(fmt.Errorf("%w: record type %d", errProtocol, h.Type))
	}
}

func protocolStatusText(s uint8) string {
	switch s {
	case statusCantMpxConn:
		return "cannot multiplex connections"
	case statusOverloaded:
		return "overloaded"
	case statusUnknownRole:
		return "unknown role"
	}
	return fmt.Sprintf("protocol status %d", s)
}

// fail records the first error and closes the connection.
func (r *Response) fail(err error) {
	r.failWith(err)
	r.release(false)
}

func (r *Response) failWith(err error) {
	if r.err == nil {
		r.err = err
	}
}

// finish ends a request the application completed: the connection is
// reused when the body went out whole, else closed.
func (r *Response) finish() {
	if !r.writing {
		r.release(true)
		return
	}
	select {
	case <-r.writeDone:
		r.release(r.writerErr == nil)
		return
	default:
	}
	// The writer may be a step from done (its last flush returned, the
	// application answered at once): a moment's grace, so such a
	// connection is kept. Still not done: the application answered
	// without reading the whole body, the rest of stdin cannot be taken
	// back, and the connection goes.
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-r.writeDone:
		r.release(r.writerErr == nil)
	case <-t.C:
		r.release(false)
	}
}

// release gives the connection back or closes it, once.
func (r *Response) release(reuse bool) {
	if r.released {
		return
	}
	r.released = true
	cn := r.cn
	cn.sentAt.Store(0)
	cn.ctx, cn.want = nil, time.Time{}
	if reuse {
		r.c.put(cn)
	} else {
		r.c.discard(cn)
	}
}

// Buffered reports stdout bytes that a Read returns without waiting: the
// rest of the current record and what the connection holds. A copier
// flushes to its client when it is 0.
func (r *Response) Buffered() int {
	if r.released {
		return len(r.pending)
	}
	return len(r.pending) + r.cn.br.Buffered()
}

// AppStatus is the application's exit status from FCGI_END_REQUEST, once
// Read returned io.EOF.
func (r *Response) AppStatus() int { return int(r.end.appStatus) }

// Close ends the request: an unfinished one is aborted by closing its
// connection. It waits for the goroutine streaming the body, which may
// wait on a slow client (the server's body timeout bounds that).
func (r *Response) Close() error {
	if !r.done || r.err != nil {
		r.release(false)
	}
	r.writer.Wait()
	return nil
}
