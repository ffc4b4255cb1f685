package fastcgi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
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
}

// Response is the application's stdout as it arrives. Read it to the end
// (io.EOF comes with FCGI_END_REQUEST) and Close it; only then does its
// connection go back to the pool, and only when nothing went wrong.
type Response struct {
	c       *Client
	cn      *conn
	stderr  func([]byte)
	pending []byte // the unread part of the current stdout record

	stopCtx func() bool
	ctx     context.Context

	writer    sync.WaitGroup // the goroutine writing stdin
	writerErr error          // set before writer.Done
	writeDone chan struct{}  // closed when the writer is done

	end      endRequest
	done     bool  // END_REQUEST was read
	err      error // the first failure; sticky
	released bool  // the connection went back to the pool or was closed

	// starve marks the request starved (Client.starved) when no record
	// came within starveAfter; answered stops it (first record or end).
	starve   *time.Timer
	starving atomic.Bool
}

// watchStarve starts the starvation watch of a request just sent.
func (r *Response) watchStarve() {
	r.starve = time.AfterFunc(starveAfter, func() {
		r.starving.Store(true)
		r.c.starved.Add(1)
	})
}

// answered ends the starvation watch: the application answers.
func (r *Response) answered() {
	if r.starve == nil {
		return
	}
	if !r.starve.Stop() && r.starving.Swap(false) {
		r.c.starved.Add(-1)
	}
	r.starve = nil
}

// errProtocol: the application broke the protocol; its connection is closed.
var errProtocol = errors.New("fastcgi: protocol error")

// Do sends req and returns once the request is on its way: the response is
// read through the returned Response. Ending ctx aborts the request: the
// connection is closed (php-fpm stops the script at its next output) and
// reads fail with ctx's error.
func (c *Client) Do(ctx context.Context, req *Request) (*Response, error) {
	var resp *Response
	for attempt := 0; ; attempt++ {
		cn, err := c.get(ctx)
		if err != nil {
			return nil, err
		}
		resp = &Response{c: c, cn: cn, stderr: req.Stderr, ctx: ctx, writeDone: make(chan struct{})}
		err = resp.begin(req)
		if err == nil {
			break
		}
		c.discard(cn)
		// A kept connection the application closed meanwhile: once more on
		// a fresh one (nothing of the body was read yet).
		if !cn.reused || attempt > 0 {
			return nil, fmt.Errorf("fastcgi: sending request: %w", err)
		}
	}
	cn := resp.cn
	resp.watchStarve()
	resp.stopCtx = context.AfterFunc(ctx, func() { cn.nc.Close() })
	if req.Stdin == nil {
		// begin ended the stdin stream already: nothing to write, and no
		// goroutine whose exit could race with the answer (finish).
		close(resp.writeDone)
		return resp, nil
	}
	resp.writer.Add(1)
	go resp.writeStdin(req.Stdin)
	return resp, nil
}

// begin writes FCGI_BEGIN_REQUEST and the params stream.
func (r *Response) begin(req *Request) error {
	bw := r.cn.bw
	writeRecord(bw, typeBeginRequest, requestID, beginRequest(true))
	var b []byte
	for _, p := range req.Params {
		b = appendPair(b, p.Name, p.Value)
	}
	writeStream(bw, typeParams, requestID, b)
	writeRecord(bw, typeParams, requestID, nil)
	if req.Stdin == nil {
		writeRecord(bw, typeStdin, requestID, nil)
	}
	return bw.Flush()
}

// writeStdin streams the body as FCGI_STDIN records, then the empty one
// that ends the stream.
func (r *Response) writeStdin(body io.Reader) {
	defer r.writer.Done()
	defer close(r.writeDone)
	if body == nil {
		return
	}
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

// next reads one record and acts on it.
func (r *Response) next() {
	h, content, err := readRecord(r.cn.br, r.cn.rbuf())
	r.answered()
	if err != nil {
		if r.ctx.Err() != nil {
			err = r.ctx.Err()
		} else if errors.Is(err, io.EOF) {
			err = fmt.Errorf("fastcgi: the application closed the connection before ending the request: %w", io.ErrUnexpectedEOF)
		}
		r.fail(err)
		return
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
	if r.err == nil {
		r.err = err
	}
	r.release(false)
}

// finish ends a request the application completed: the connection is
// reused when the body went out whole, else closed.
func (r *Response) finish() {
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
	r.answered()
	if r.stopCtx != nil && !r.stopCtx() {
		reuse = false // the context ended meanwhile: the connection is closed
	}
	if reuse {
		r.c.put(r.cn)
		return
	}
	r.c.discard(r.cn)
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
