package cgi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
)

// cgiMemBody is how much of a body without a length is kept in memory
// before it moves to a temp file.
const cgiMemBody = 256 << 10

// cgiSmallBody is the largest body with a Content-Length that is read
// whole before the script starts; larger ones stream to its stdin.
const cgiSmallBody = 64 << 10

// cgiInput is what a script reads on stdin.
type cgiInput struct {
	length    int64     // CONTENT_LENGTH; -1: the request has no body
	cgiStream io.Reader // a body of known length, streamed as the script reads
	mem       []byte    // a small body that came without a length
	file      *os.File  // a large one, in an unlinked temp file given to the script as is
}

func (in *cgiInput) close() {
	if in.file != nil {
		in.file.Close()
	}
}

// requestBody decides how the body reaches the script. One without a
// length is read whole first (up to the cap) so CONTENT_LENGTH is exact,
// which RFC 3875 requires and net/http/cgi answers with 400.
func (h *Handler) requestBody(r *http.Request) (*cgiInput, int, error) {
	max := h.state().maxBody
	switch {
	case r.ContentLength > max:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("cgi: body of %d bytes over the %d limit", r.ContentLength, max)
	case r.ContentLength > 0 && r.ContentLength <= cgiSmallBody:
		// A form-sized body is read before the script starts: nothing
		// then reads the client while the script runs.
		return cgiBufferBody(r.Body, max)
	case r.ContentLength > 0:
		return &cgiInput{length: r.ContentLength, cgiStream: r.Body}, 0, nil
	case r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody:
		if r.Header.Get("Content-Length") != "" {
			return &cgiInput{length: 0}, 0, nil
		}
		return &cgiInput{length: -1}, 0, nil
	}
	return cgiBufferBody(r.Body, max)
}

func cgiBufferBody(body io.Reader, max int64) (*cgiInput, int, error) {
	lim := min(int64(cgiMemBody), max)
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(body, lim+1))
	if err != nil {
		return nil, cgiBodyErrStatus(err), fmt.Errorf("cgi: reading body: %w", err)
	}
	if n <= lim {
		return &cgiInput{length: n, mem: buf.Bytes()}, 0, nil
	}
	if n > max {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("cgi: body over the %d limit", max)
	}
	f, err := os.CreateTemp("", "shoal-cgi-body-")
	if err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("cgi: temp file for body: %w", err)
	}
	os.Remove(f.Name()) // nothing to clean up later, whatever happens
	in := &cgiInput{file: f}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return nil, http.StatusInternalServerError, fmt.Errorf("cgi: buffering body: %w", err)
	}
	m, err := io.Copy(f, io.LimitReader(body, max-n+1))
	if err != nil {
		f.Close()
		return nil, cgiBodyErrStatus(err), fmt.Errorf("cgi: reading body: %w", err)
	}
	if in.length = n + m; in.length > max {
		f.Close()
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("cgi: body over the %d limit", max)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, http.StatusInternalServerError, fmt.Errorf("cgi: rewinding body: %w", err)
	}
	return in, 0, nil
}

func cgiBodyErrStatus(err error) int {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return http.StatusRequestTimeout // body_timeout: the client stopped sending
	}
	return http.StatusBadRequest
}
