package http1

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// chunkReader gives b out n bytes at a time, as a slow client would.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[n:]
	return n, nil
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// httpStarts returns where net/http, reading in as one connection, finds
// each request, and where it stopped: at a request it refused, just past
// the start of one whose body it could not read, at the end, or (after an
// upgrade, when the connection may carry another protocol) at the end.
func httpStarts(in []byte) (starts []int, stop int) {
	cr := &countReader{r: bytes.NewReader(in)}
	br := bufio.NewReader(cr)
	for {
		at := cr.n - br.Buffered()
		if at >= len(in) {
			return starts, at
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return starts, at
		}
		starts = append(starts, at)
		if req.Header.Get("Upgrade") != "" || req.Method == "CONNECT" || req.Method == "PRI" {
			return starts, len(in)
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return starts, at + 1 // a broken body: nothing after is read
		}
	}
}

// mustRefuse is the rules written out independently of headGuard.check:
// whether the head at the start of b must not reach net/http.
func mustRefuse(b []byte, maxHeader int) bool {
	end := HeadEnd(b)
	if end < 0 {
		return len(b) > maxHeader
	}
	if end > maxHeader {
		return true
	}
	lines := strings.Split(strings.ReplaceAll(string(b[:end]), "\r\n", "\n"), "\n")
	var cl, te bool
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
			return true
		}
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(name) {
		case "content-length":
			cl = true
		case "transfer-encoding":
			te = true
		}
	}
	return cl && te || te && strings.HasSuffix(strings.TrimSuffix(lines[0], "\r"), " HTTP/1.0")
}

// FuzzHeadGuard: whatever the bytes and however they arrive, the guard
// gives net/http the client's bytes unchanged up to a request boundary
// net/http agrees on, then at most the made-up request; no head it must
// refuse gets through before that point.
func FuzzHeadGuard(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nX: 1\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\nGET /" + strings.Repeat("a", 2000) + " HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\nanything\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(200))
	}
	const maxHeader = 1024
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		rules := &Rules{maxHeader: maxHeader, token: "tok", log: &rateLog{log: discard, msg: "x", perSecond: 1}}
		g := rules.guard(nil, &chunkReader{b: in, n: int(chunk)%64 + 1}, "fuzz")
		out, err := io.ReadAll(g)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		made := "GET / HTTP/1.1\r\nHost: shoal.invalid\r\nConnection: close\r\n" + rejectHeader + ": tok "
		k := len(out)
		if i := bytes.Index(out, []byte(made)); i >= 0 {
			k = i
			status := strings.TrimSuffix(string(out[i+len(made):]), "\r\n\r\n")
			if code, _ := strconv.Atoi(status); code != 400 && code != 414 && code != 431 {
				t.Fatalf("made-up request ends %q", out[i+len(made):])
			}
		} else if len(out) != len(in) {
			t.Fatalf("passed %d bytes of %d without refusing", len(out), len(in))
		}
		if !bytes.Equal(out[:k], in[:k]) {
			t.Fatalf("bytes changed before the refusal at %d", k)
		}
		starts, stop := httpStarts(in)
		// Past stop net/http reads nothing more: it has refused a request
		// there (and closes) or the connection is another protocol.
		if k < len(out) && k < stop && !contains(starts, k) {
			t.Fatalf("refused at %d, not where net/http starts a request (%v, stop %d)", k, starts, stop)
		}
		for _, s := range starts {
			if s < k && mustRefuse(in[s:], maxHeader) {
				t.Fatalf("head at %d reached net/http: %q", s, in[s:min(len(in), s+200)])
			}
		}
	})
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestHeadGuardPassesBodies: bodies that look like heads pass untouched,
// and a refused head after them is found at its boundary.
func TestHeadGuardPassesBodies(t *testing.T) {
	body := "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	in := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body +
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n\r\n"
	for _, chunk := range []int{1, 3, 4096} {
		rules := &Rules{maxHeader: 1024, token: "tok", log: &rateLog{log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		out, _ := io.ReadAll(rules.guard(nil, &chunkReader{b: []byte(in + body), n: chunk}, "t"))
		if !strings.HasPrefix(string(out), in) {
			t.Fatalf("chunk %d: bodies changed:\n%q", chunk, out)
		}
		if rest := string(out[len(in):]); !strings.Contains(rest, rejectHeader+": tok 400") {
			t.Fatalf("chunk %d: the CL+TE head after the bodies got through: %q", chunk, rest)
		}
	}
}

// Only the connections handed over for a peer's TLS count as a peer's.
func TestIsPeerConn(t *testing.T) {
	for _, tc := range []struct {
		conn net.Conn
		peer bool
	}{
		{NewPeerReplayConn(nil, nil), true},
		{&replayConn{}, false},
		{&net.TCPConn{}, false},
	} {
		if got := IsPeerConn(tc.conn); got != tc.peer {
			t.Errorf("%T: IsPeerConn %v, want %v", tc.conn, got, tc.peer)
		}
	}
}
