package forward

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// errChunk: a chunked body that does not follow RFC 9112 7.1.
var errChunk = errors.New("forward: malformed chunked body")

// copyBody streams the response body from br to dst, straight from br's
// buffer: the only copy is the kernel's into it. A body without a length
// or of server-sent events is flushed after every write.
func copyBody(dst Sink, br *bufio.Reader, h *Head, method string) error {
	if h.bodyless(method) {
		return nil
	}
	flush := h.ContentLength < 0 || h.EventStream
	switch {
	case h.Chunked:
		return copyChunked(dst, br, flush)
	case h.ContentLength >= 0:
		return copyN(dst, br, h.ContentLength, flush)
	default:
		return copyUntilEOF(dst, br)
	}
}

// copyN copies exactly n bytes.
func copyN(dst Sink, br *bufio.Reader, n int64, flush bool) error {
	for n > 0 {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("forward: reading the response body: %w", err)
			}
		}
		b, _ := br.Peek(int(min(int64(br.Buffered()), n)))
		if err := send(dst, b, flush); err != nil {
			return err
		}
		br.Discard(len(b))
		n -= int64(len(b))
	}
	return nil
}

// copyUntilEOF copies a body that ends when the target closes.
func copyUntilEOF(dst Sink, br *bufio.Reader) error {
	for {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return fmt.Errorf("forward: reading the response body: %w", err)
			}
		}
		b, _ := br.Peek(br.Buffered())
		if err := send(dst, b, true); err != nil {
			return err
		}
		br.Discard(len(b))
	}
}

func send(dst Sink, b []byte, flush bool) error {
	if _, err := dst.Write(b); err != nil {
		return fmt.Errorf("%w: %w", errSinkWrite, err)
	}
	if flush {
		if err := dst.Flush(); err != nil {
			return fmt.Errorf("%w: %w", errSinkWrite, err)
		}
	}
	return nil
}

// maxChunkLine bounds a chunk-size line with its extensions, and
// maxTrailer the trailer section, which is read and dropped.
const (
	maxChunkLine = 4 << 10
	maxTrailer   = 16 << 10
)

// copyChunked decodes a chunked body; the trailer fields are dropped.
func copyChunked(dst Sink, br *bufio.Reader, flush bool) error {
	for {
		size, err := chunkSize(br)
		if err != nil {
			return err
		}
		if size == 0 {
			return skipTrailer(br)
		}
		if err := copyN(dst, br, size, flush); err != nil {
			return err
		}
		if err := chunkEnd(br); err != nil {
			return err
		}
	}
}

// chunkSize reads "hex[;ext]" CRLF.
func chunkSize(br *bufio.Reader) (int64, error) {
	line, err := readLine(br, maxChunkLine)
	if err != nil {
		return 0, err
	}
	hex := line
	for i, c := range line {
		if c == ';' || c == ' ' || c == '\t' {
			hex = line[:i]
			break
		}
	}
	if len(hex) == 0 || len(hex) > 15 {
		return 0, fmt.Errorf("%w: size %q", errChunk, trim(string(hex)))
	}
	var n int64
	for _, c := range hex {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: size %q", errChunk, trim(string(hex)))
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}

// chunkEnd reads the CRLF after a chunk's data.
func chunkEnd(br *bufio.Reader) error {
	line, err := readLine(br, 2)
	if err != nil {
		return err
	}
	if len(line) != 0 {
		return fmt.Errorf("%w: data longer than its size", errChunk)
	}
	return nil
}

// skipTrailer reads the trailer fields up to the blank line.
func skipTrailer(br *bufio.Reader) error {
	total := 0
	for {
		line, err := readLine(br, maxChunkLine)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if total += len(line); total > maxTrailer {
			return fmt.Errorf("%w: trailer too large", errChunk)
		}
		if _, err := parseField(string(line)); err != nil {
			return fmt.Errorf("%w: trailer: %w", errChunk, err)
		}
	}
}

// readLine reads one line ending in CR LF (as net/http insists) of at most limit bytes
// before it, and returns it without its ending; valid until the next read.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			err = fmt.Errorf("%w: line too long", errChunk)
		}
		return nil, fmt.Errorf("forward: reading the response body: %w", err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line ends with a bare LF", errChunk)
	}
	line = line[:len(line)-2]
	if len(line) > limit {
		return nil, fmt.Errorf("%w: line too long", errChunk)
	}
	return line, nil
}

// isReset: the target closed or reset the connection.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// isDeadline: a deadline on the connection passed.
func isDeadline(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
