package fastcgi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// record builds one record's bytes as an application would send them.
func record(typ uint8, id uint16, content []byte, pad uint8) []byte {
	b := []byte{version1, typ, 0, 0, 0, 0, pad, 0}
	binary.BigEndian.PutUint16(b[2:4], id)
	binary.BigEndian.PutUint16(b[4:6], uint16(len(content)))
	b = append(b, content...)
	return append(b, make([]byte, pad)...)
}

func endRecord(protocolStatus uint8) []byte {
	return record(typeEndRequest, requestID, []byte{0, 0, 0, 0, protocolStatus, 0, 0, 0}, 0)
}

func TestWriteRecordPadsAndReadsBack(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 1000, maxContent} {
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		content := bytes.Repeat([]byte{'x'}, n)
		if err := writeRecord(bw, typeStdin, 3, content); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		if out.Len()%8 != 0 {
			t.Errorf("%d bytes of content: record of %d bytes, not a multiple of 8", n, out.Len())
		}
		h, got, err := readRecord(bufio.NewReader(&out), make([]byte, maxContent))
		if err != nil || h.Type != typeStdin || h.RequestID != 3 || !bytes.Equal(got, content) || out.Len() != 0 {
			t.Errorf("%d bytes: read back %+v, %d bytes, err %v, %d left", n, h, len(got), err, out.Len())
		}
	}
}

func TestReadRecordErrors(t *testing.T) {
	buf := make([]byte, maxContent)
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"half a header", []byte{1, 6, 0}, errShortRecord},
		{"bad version", []byte{2, 6, 0, 1, 0, 0, 0, 0}, errBadVersion},
		{"short content", []byte{1, 6, 0, 1, 0, 5, 0, 0, 'a'}, errShortRecord},
		{"short padding", []byte{1, 6, 0, 1, 0, 1, 4, 0, 'a', 0}, errShortRecord},
	}
	for _, tc := range cases {
		_, _, err := readRecord(bufio.NewReader(bytes.NewReader(tc.in)), buf)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzReadRecord: on any input the parser never panics, never reads past
// the record it returns (header, content and padding exactly), returns
// the input's own content bytes, whose length is the header's, and never
// in memory that input can size: in place in the reader's buffer when the
// record fits there, else in the caller's buffer.
func FuzzReadRecord(f *testing.F) {
	f.Add(record(typeStdout, 1, []byte("Status: 200\r\n\r\nhi"), 6))
	f.Add(append(record(typeStderr, 1, []byte("oops"), 4), endRecord(0)...))
	f.Add([]byte{1, 6, 0, 1, 0xff, 0xff, 0xff, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		buf := make([]byte, maxContent)
		src := bytes.NewReader(data)
		br := bufio.NewReaderSize(src, 16)
		consumed := func() int { return len(data) - src.Len() - br.Buffered() }
		for i := 0; i <= len(data)/headerLen; i++ {
			before := consumed()
			h, content, err := readRecord(br, buf)
			if err != nil {
				return
			}
			n, total := int(h.ContentLength), headerLen+int(h.ContentLength)+int(h.PaddingLength)
			if len(content) != n || n > 0 && total > br.Size() && &content[0] != &buf[0] {
				t.Fatalf("content of %d bytes for length %d, or a long record outside the buffer", len(content), n)
			}
			if want := data[before+headerLen : before+headerLen+n]; !bytes.Equal(content, want) {
				t.Fatalf("content %q, want %q", content, want)
			}
			if got := consumed() - before; got != total {
				t.Fatalf("consumed %d bytes for a record of %d", got, total)
			}
		}
		t.Fatal("more records than the input can hold")
	})
}

// FuzzResponse: a Response reading any byte stream as the application's
// answer ends (EOF or an error) within a bounded number of reads, never
// hands out more stdout than the input held, and never panics.
func FuzzResponse(f *testing.F) {
	f.Add(append(record(typeStdout, 1, []byte("Content-Type: text/plain\r\n\r\nok"), 0), endRecord(0)...))
	f.Add(append(record(typeStdout, 2, []byte("x"), 0), endRecord(2)...))
	f.Add(append(record(typeStdout, 0, []byte("x"), 0), record(99, 1, nil, 0)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		defer b.Close()
		c := &Client{MaxConns: 1, open: 1}
		resp := &Response{c: c, ctx: context.Background(), writeDone: make(chan struct{}),
			cn: &conn{nc: a, br: bufio.NewReader(bytes.NewReader(data))}}
		close(resp.writeDone)
		var stderr int
		resp.stderr = func(p []byte) { stderr += len(p) }
		out := 0
		p := make([]byte, 100)
		for i := 0; ; i++ {
			if i > len(data)+2 {
				t.Fatal("no end after more reads than input bytes")
			}
			n, err := resp.Read(p)
			out += n
			if err != nil {
				break
			}
		}
		if out+stderr > len(data) {
			t.Fatalf("%d bytes out of %d in", out+stderr, len(data))
		}
		resp.Close()
		if c.Open() != 0 && !resp.done {
			t.Fatal("a failed response kept its connection")
		}
	})
}

func TestPairsRoundTrip(t *testing.T) {
	long := strings.Repeat("v", 300)
	var b []byte
	b = appendPair(b, "A", "1")
	b = appendPair(b, "LONG", long)
	b = appendPair(b, strings.Repeat("N", 200), "")
	var got []string
	if err := parsePairs(b, func(n, v []byte) { got = append(got, string(n)+"="+string(v)) }); err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "LONG=" + long, strings.Repeat("N", 200) + "="}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q", got)
	}
}

// FuzzParsePairs: the pair decoder a test server uses never panics and
// never yields more bytes than it was given.
func FuzzParsePairs(f *testing.F) {
	f.Add(appendPair(appendPair(nil, "A", "1"), "B", strings.Repeat("x", 200)))
	f.Add([]byte{0x80, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		total := 0
		parsePairs(data, func(n, v []byte) { total += len(n) + len(v) })
		if total > len(data) {
			t.Fatalf("%d bytes of pairs from %d", total, len(data))
		}
	})
}

// parsePairs reads name-value pairs (a GET_VALUES_RESULT, or params as a
// server sees them); it stops with an error at a pair that runs past the
// end of b and never allocates more than b holds.
func parsePairs(b []byte, each func(name, value []byte)) error {
	for len(b) > 0 {
		nl, n, ok := readLen(b)
		if !ok {
			return errors.New("fastcgi: truncated pair length")
		}
		b = b[n:]
		vl, n, ok := readLen(b)
		if !ok {
			return errors.New("fastcgi: truncated pair length")
		}
		b = b[n:]
		if uint64(nl)+uint64(vl) > uint64(len(b)) {
			return errors.New("fastcgi: pair longer than its record")
		}
		each(b[:nl], b[nl:nl+vl])
		b = b[nl+vl:]
	}
	return nil
}

func readLen(b []byte) (length uint32, size int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0] < 128 {
		return uint32(b[0]), 1, true
	}
	if len(b) < 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b[:4]) &^ (1 << 31), 4, true
}
