package cgi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"shoal/handlers/books"
)

// cgiIsNPH reports a non-parsed-header script (RFC 3875 5): its file name
// starts with "nph-", as Apache decides.
func cgiIsNPH(file string) bool { return strings.HasPrefix(filepath.Base(file), "nph-") }

// relayNPH passes an nph- script's output to the client as it wrote it
// (status line, header and body), as Apache does: the connection is taken
// over from net/http and closed at the end, since nothing tells where the
// response ends. Where the connection cannot be taken over (HTTP/2), the
// status line and header are parsed and the response relayed as a parsed
// script's is.
func (h *Handler) relayNPH(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, sc *cgiScript, p *cgiProc, bb *cgiBuffers) string {
	line, status, err := readNPHStatusLine(bb.r)
	if err != nil {
		p.terminate(cgiStopAbandoned)
		p.finish(rc)
		h.failed(w, r, sc, p, err)
		return ""
	}
	conn, _, err := rc.Hijack()
	if err != nil {
		hdr, err := readCGIHeader(bb.r, h.droppedHeader(r, sc))
		if err != nil {
			p.terminate(cgiStopAbandoned)
			p.finish(rc)
			h.failed(w, r, sc, p, err)
			return ""
		}
		hdr.Set("Status", strconv.Itoa(status))
		return h.respond(w, r, rc, sc, p, bb, hdr)
	}
	defer conn.Close()
	n, err := h.copyRaw(conn, line, bb, p)
	cgiNoteHijacked(w, status, n)
	p.finish(nil)
	if reason := p.reason.Load(); reason == cgiStopTimeout || reason == cgiStopMaxTime {
		h.timedOut()
		h.logLimit(h.logger().With("script", sc.file, "method", r.Method, "uri", cgiRequestURI(r), "remote", books.ClientIP(r)),
			p, "during its nph output; connection closed")
	} else if err != nil {
		h.logger().Debug("cgi: nph output cut short", "error", err, "script", sc.file, "uri", cgiRequestURI(r))
	}
	return ""
}

// copyRaw writes the status line and the rest of the output to conn, each
// write bounded by the idle timeout (the client must keep reading too).
func (h *Handler) copyRaw(conn net.Conn, line []byte, bb *cgiBuffers, p *cgiProc) (int64, error) {
	idle := h.state().timeout
	conn.SetReadDeadline(time.Time{})
	conn.SetWriteDeadline(time.Now().Add(idle))
	m, err := conn.Write(line)
	total := int64(m)
	if err != nil {
		p.terminate(cgiStopClient)
		return total, err
	}
	for {
		n, rerr := bb.r.Read(bb.copy)
		if n > 0 {
			conn.SetWriteDeadline(time.Now().Add(idle))
			m, werr := conn.Write(bb.copy[:n])
			total += int64(m)
			if werr != nil {
				p.terminate(cgiStopClient)
				return total, werr
			}
			p.touch()
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// readNPHStatusLine reads "HTTP/1.1 200 OK" and returns it (with its line
// end) and its code; the slice is valid until the next read of br.
func readNPHStatusLine(br *bufio.Reader) ([]byte, int, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, 0, fmt.Errorf("%w: nph status line longer than %d bytes", errCGIBadHeader, cgiReadBuf)
	case err == io.EOF && len(line) == 0:
		return nil, 0, errCGINoOutput
	case err != nil:
		return nil, 0, errCGIHeaderEnd
	}
	proto, rest, _ := strings.Cut(string(bytes.TrimRight(line, "\r\n")), " ")
	code, _, _ := strings.Cut(rest, " ")
	n, cerr := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || len(code) != 3 || cerr != nil || n < 100 || n > 599 {
		return nil, 0, fmt.Errorf("%w: nph status line %q", errCGIBadHeader, cgiTruncate(line, 80))
	}
	return line, n, nil
}

// cgiNoteHijacked tells the access log's Recorder, wherever it sits in the
// chain of writers, what went out on a connection taken over.
func cgiNoteHijacked(w http.ResponseWriter, status int, n int64) {
	for {
		if rec, ok := w.(*books.Recorder); ok {
			if rec.Status == 0 {
				rec.Status = status
			}
			rec.Bytes += n
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}
