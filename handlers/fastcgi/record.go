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

// readRecord reads one record from br: its header and its content into
// buf (which must hold maxContent bytes), skipping the padding. It never
// reads past the record's end, and never allocates.
func readRecord(br *bufio.Reader, buf []byte) (header, []byte, error) {
	var h header
	var raw [headerLen]byte
	if _, err := io.ReadFull(br, raw[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
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
	content := buf[:h.ContentLength]
	if _, err := io.ReadFull(br, content); err != nil {
		return h, nil, errShortRecord
	}
	if _, err := br.Discard(int(h.PaddingLength)); err != nil {
		return h, nil, errShortRecord
	}
	return h, content, nil
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

// beginRequest is the content of FCGI_BEGIN_REQUEST for a responder that
// keeps the connection open.
func beginRequest(keepConn bool) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:2], roleResponder)
	if keepConn {
		b[2] = flagKeepConn
	}
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

func appendLen(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}
