package fastcgi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Record types (FastCGI 1.0, section 8).
const (
	typeBeginRequest uint8 = 1
	typeAbortRequest uint8 = 2
	typeEndRequest   uint8 = 3
	typeParams       uint8 = 4
	typeStdin        uint8 = 5
	typeStdout       uint8 = 6
	typeStderr       uint8 = 7
	typeUnknownType  uint8 = 11
)

const (
	version1      = 1
	roleResponder = 1
	flagKeepConn  = 1
	headerLen     = 8
	// maxContent is the most one record carries (a 16-bit length).
	maxContent = 65535
)

// protocolStatus values of FCGI_END_REQUEST.
const (
	statusRequestComplete = 0
	statusCantMpxConn     = 1
	statusOverloaded      = 2
	statusUnknownRole     = 3
)

var (
	// errBadVersion: the peer does not speak FastCGI 1 (or the stream is
	// out of step): the connection is unusable.
	errBadVersion = errors.New("fastcgi: record with an unknown version")
	// errShortRecord: the connection ended inside a record.
	errShortRecord = errors.New("fastcgi: connection ended inside a record")
)

// header is a record's fixed 8-byte header.
type header struct {
	Type          uint8
	RequestID     uint16
	ContentLength uint16
	PaddingLength uint8
}

// readRecord reads one record from br: its header, then its content. A
// record that fits in br's buffer is returned in place there, valid until
// br is read again (no copy); a longer one is read into buf, which must
// hold maxContent bytes. The padding is skipped. It never reads past the
// record's end, and never allocates.
func readRecord(br *bufio.Reader, buf []byte) (header, []byte, error) {
	var h header
	raw, err := br.Peek(headerLen)
	if err != nil {
		if len(raw) > 0 && err == io.EOF {
			return h, nil, errShortRecord
		}
		return h, nil, err // io.EOF between records: a clean end
	}
	if raw[0] != version1 {
		return h, nil, fmt.Errorf("%w: %d", errBadVersion, raw[0])
	}
	h.Type = raw[1]
	h.RequestID = binary.BigEndian.Uint16(raw[2:4])
	h.ContentLength = binary.BigEndian.Uint16(raw[4:6])
	h.PaddingLength = raw[6]
	n, total := int(h.ContentLength), headerLen+int(h.ContentLength)+int(h.PaddingLength)
	if total <= br.Size() {
		rec, err := br.Peek(total)
		if err != nil {
			return h, nil, shortRecord(err)
		}
		br.Discard(total)
		return h, rec[headerLen : headerLen+n], nil
	}
	br.Discard(headerLen)
	content := buf[:n]
	if _, err := io.ReadFull(br, content); err != nil {
		return h, nil, shortRecord(err)
	}
	if _, err := br.Discard(int(h.PaddingLength)); err != nil {
		return h, nil, shortRecord(err)
	}
	return h, content, nil
}

// shortRecord is the error of a read that ended inside a record: the
// connection's own failure (a deadline, a close) when it has one.
func shortRecord(err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return errShortRecord
	}
	return err
}

// writeRecord writes one record with content (at most maxContent bytes),
// padded to a multiple of 8 bytes as the specification recommends.
func writeRecord(w *bufio.Writer, typ uint8, id uint16, content []byte) error {
	pad := uint8(-len(content) & 7)
	var raw [headerLen]byte
	raw[0] = version1
	raw[1] = typ
	binary.BigEndian.PutUint16(raw[2:4], id)
	binary.BigEndian.PutUint16(raw[4:6], uint16(len(content)))
	raw[6] = pad
	w.Write(raw[:])
	w.Write(content)
	var zeros [8]byte
	_, err := w.Write(zeros[:pad])
	return err
}

// writeStream writes data as records of type typ, each at most maxContent
// bytes. It does not write the empty record that ends a stream.
func writeStream(w *bufio.Writer, typ uint8, id uint16, data []byte) error {
	for len(data) > 0 {
		n := min(len(data), maxContent)
		if err := writeRecord(w, typ, id, data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// beginRecord is the whole FCGI_BEGIN_REQUEST record of every request: a
// responder that keeps the connection open.
var beginRecord = [2 * headerLen]byte{version1, typeBeginRequest, 0, requestID, 0, 8, 0, 0,
	0, roleResponder, flagKeepConn}

// requestRoom is the room an encoded params buffer leaves at its front
// for FCGI_BEGIN_REQUEST and the params record's header, so that a
// request goes out in one write without its params being copied.
const requestRoom = 3 * headerLen

// frameRequest turns b, requestRoom bytes of room and then the encoded
// params, into the request's records: FCGI_BEGIN_REQUEST, the params and
// the empty record that ends them, then body as FCGI_STDIN and the empty
// record that ends stdin when end says the body is whole. false: the
// params exceed one record and need writeStream.
func frameRequest(b, body []byte, end bool) ([]byte, bool) {
	n := len(b) - requestRoom
	if n > maxContent {
		return b, false
	}
	copy(b, beginRecord[:])
	putHeader(b[2*headerLen:], typeParams, n)
	b = append(b, zeros[:-n&7]...)
	b = appendRecordHeader(b, typeParams, 0)
	for len(body) > 0 {
		m := min(len(body), maxContent)
		b = appendRecordHeader(b, typeStdin, m)
		b = append(b, body[:m]...)
		b = append(b, zeros[:-m&7]...)
		body = body[m:]
	}
	if end {
		b = appendRecordHeader(b, typeStdin, 0)
	}
	return b, true
}

var zeros [8]byte

// putHeader writes a record header for n bytes of content, padded to a
// multiple of 8, into b.
func putHeader(b []byte, typ uint8, n int) {
	b[0], b[1] = version1, typ
	binary.BigEndian.PutUint16(b[2:4], requestID)
	binary.BigEndian.PutUint16(b[4:6], uint16(n))
	b[6], b[7] = uint8(-n&7), 0
}

func appendRecordHeader(b []byte, typ uint8, n int) []byte {
	b = append(b, zeros[:]...)
	putHeader(b[len(b)-headerLen:], typ, n)
	return b
}

// endRequest is FCGI_END_REQUEST's content.
type endRequest struct {
	appStatus      uint32
	protocolStatus uint8
}

func parseEndRequest(content []byte) (endRequest, error) {
	if len(content) < 8 {
		return endRequest{}, fmt.Errorf("fastcgi: end-request record of %d bytes", len(content))
	}
	return endRequest{appStatus: binary.BigEndian.Uint32(content[0:4]), protocolStatus: content[4]}, nil
}

// appendPair appends one name-value pair (section 3.4): each length in one
// byte below 128, else in four with the high bit set.
func appendPair(b []byte, name, value string) []byte {
	b = appendLen(b, len(name))
	b = appendLen(b, len(value))
	b = append(b, name...)
	return append(b, value...)
}

// appendPair2 appends a pair whose value is v1+v2, without making that
// string.
func appendPair2(b []byte, name, v1, v2 string) []byte {
	b = appendLen(b, len(name))
	b = appendLen(b, len(v1)+len(v2))
	b = append(b, name...)
	b = append(b, v1...)
	return append(b, v2...)
}

func appendLen(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}
