package forward

import (
	"io"
	"net/http"
	"strconv"
)

// WireSink writes a response as HTTP/1.1 to W, a server's own client
// connection: the status line, the end-to-end fields as received, the
// framing this side chooses, then the body. A body without a length goes
// out chunked, so the connection lives on; the head waits for the first
// piece of the body so that a small response leaves in one Write.
type WireSink struct {
	W io.Writer
	// HEAD: the request was a HEAD (no body follows the head).
	HEAD bool
	// Close adds Connection: close; the caller closes after End.
	Close bool
	// Fields, when set, adds the caller's own fields to the head (a
	// Date, a cookie) by appending "Name: value\r\n" lines to b.
	Fields func(b []byte, h *Head) []byte

	buf     []byte // the head, and body bytes gathered behind it
	chunked bool
	// Keep reports, after End, whether the client's connection may carry
	// another request.
	Keep bool
	// Status and Bytes are the response's status and body length so far,
	// for the access log.
	Status int
	Bytes  int64
}

// gather is how much body is held behind the head before a Write.
const gather = 16 << 10

// WriteHead composes the head; it leaves with the first body bytes, at
// Flush or at End.
func (s *WireSink) WriteHead(h *Head) error {
	s.Status, s.Bytes, s.chunked, s.Keep = h.Status, 0, false, false
	b := s.buf[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(h.Status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(h.Status)...)
	b = append(b, "\r\n"...)
	for i, f := range h.Fields {
		if h.hop[i] {
			continue
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if s.Fields != nil {
		b = s.Fields(b, h)
	}
	bodyless := s.HEAD || h.Status < 200 || h.Status == 204 || h.Status == 304
	if !bodyless && h.ContentLength < 0 {
		s.chunked = true
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if s.Close {
		b = append(b, "Connection: close\r\n"...)
	}
	s.buf = append(b, "\r\n"...)
	return nil
}

// Write adds p to what is gathered, chunk-framed when chunked; a full
// gather goes out.
func (s *WireSink) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.Bytes += int64(len(p))
	if s.chunked {
		s.buf = strconv.AppendInt(s.buf, int64(len(p)), 16)
		s.buf = append(s.buf, "\r\n"...)
	}
	if len(s.buf)+len(p) <= gather {
		s.buf = append(s.buf, p...)
	} else {
		if err := s.Flush(); err != nil {
			return 0, err
		}
		if _, err := s.W.Write(p); err != nil {
			return 0, err
		}
	}
	if s.chunked {
		s.buf = append(s.buf, "\r\n"...)
	}
	return len(p), nil
}

// Flush writes out what is gathered.
func (s *WireSink) Flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.W.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}

// lastWriter is a W that sends a kept connection's last bytes its own
// way (http1.Conn: with the read of the next request).
type lastWriter interface {
	WriteLast(p []byte) (int, error)
}

// End finishes a chunked body and writes out the rest; a second End
// (Forward ends the sink itself) adds nothing.
func (s *WireSink) End() error {
	if s.chunked {
		s.chunked = false
		s.buf = append(s.buf, "0\r\n\r\n"...)
	}
	var err error
	if lw, ok := s.W.(lastWriter); ok && !s.Close && len(s.buf) > 0 {
		_, err = lw.WriteLast(s.buf)
		s.buf = s.buf[:0]
	} else {
		err = s.Flush()
	}
	s.Keep = err == nil && !s.Close
	return err
}
