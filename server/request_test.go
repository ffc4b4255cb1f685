package server

import (
	"bufio"
	"bytes"
	"net/http"
	"net/netip"
	"testing"

	"shoal/handlers/books"
	"shoal/internal/http1"
)

// FuzzReadFast: for every header block the HTTP/1.1 fast path accepts,
// the books it fills (readFast) hold what the full chain's (Entry.Read
// and ReadLogged on net/http's parse of the same bytes) would: request
// line, host, client through a trusted proxy, referer, agent, user.
func FuzzReadFast(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /a?b=1 HTTP/1.1\r\nHost: x:80\r\nReferer: http://r/\r\nUser-Agent: a b\r\n\r\n",
		"GET /p HTTP/1.1\r\nhost: x\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nx-forwarded-for: 192.0.2.1\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWxpY2U6cHc=\r\nreferer:  \t spaced \t\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: x\r\nAuthorization: basic Ym9iOg==\r\nUser-Agent:\r\nUser-Agent: second\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	st := &site{trusted: trusted, access: &books.AccessLog{}, ids: newRequestIDs()}
	const remote = "10.1.2.3:4567"
	f.Fuzz(func(t *testing.T, b []byte) {
		n := http1.HeadEnd(b)
		if n < 0 {
			return
		}
		h, ok := http1.ParseHead(b[:n])
		if !ok {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:n])))
		if err != nil {
			return // the parsers' own fuzz test judges disagreements on validity
		}
		r.RemoteAddr = remote
		var want books.Entry
		want.Read(r, trusted)
		want.ReadLogged(r)
		want.Proto = "HTTP/1.1"
		var rq request
		readFast(&rq, st, &h, remote, "HTTP/1.1", headBlock(h.Lines))
		// The full chain's ID comes from the same function, with the
		// header net/http read (remote is a trusted proxy).
		if sent := r.Header.Get("X-Request-Id"); validRequestID(sent) && rq.RequestID != sent {
			t.Fatalf("request ID %q, want the trusted proxy's %q", rq.RequestID, sent)
		}
		want.RequestID = rq.RequestID
		if rq.Entry != want {
			t.Fatalf("fast path books differ from the full chain's for %q:\nfast %+v\nfull %+v", b[:n], rq.Entry, want)
		}
	})
}
