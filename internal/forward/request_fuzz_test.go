package forward

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// FuzzRequestLines: whatever header block a caller passes, the head
// written is one request net/http reads, to the given Host, with none of
// the hop-by-hop or dropped fields and only the framing this side chose.
func FuzzRequestLines(f *testing.F) {
	for _, s := range []string{
		"Accept: */*\r\nConnection: x-a\r\nX-A: 1\r\n\r\n",
		"Host: evil\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		"X\rY: 1\r\nX-B:  v  \r\n: nothing\r\nno colon\r\n",
		"x-forwarded-for: 1.1.1.1\nkeep-alive: 1\nTE: trailers\n\nAfter: 1\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, lines string) {
		req := &Request{Method: "GET", Target: "/t", Host: "target.example", Lines: lines,
			Drop: map[string]bool{"X-Forwarded-For": true}, DropPrefix: "X-Shoal-",
			Extra: []Field{{Name: "X-Forwarded-For", Value: "192.0.2.1"}}}
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		writeHead(bw, req, false)
		bw.Flush()
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf.Bytes())))
		if err != nil {
			t.Fatalf("unreadable head (%v): %q", err, buf.String())
		}
		if r.Host != "target.example" || r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
			t.Fatalf("Host %q, length %d, TE %v: %q", r.Host, r.ContentLength, r.TransferEncoding, buf.String())
		}
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "192.0.2.1" {
			t.Fatalf("X-Forwarded-For %q", xff)
		}
		for k := range r.Header {
			if isHopByHop(k) || strings.HasPrefix(k, "X-Shoal-") {
				t.Fatalf("%s sent: %q", k, buf.String())
			}
		}
	})
}
