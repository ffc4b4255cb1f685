package cgi

import (
	"bufio"
	"bytes"
	"maps"
	"net/http"
	"strings"
	"testing"
)

// linesVars are the variables Meta.Vars adds for a request given as its
// header block, read by LineFields (fast) or parsed by net/http (full).
func linesVars(t testing.TB, lines string, fast bool) (map[string]string, bool) {
	raw := "GET /p?q HTTP/1.1\r\n" + lines + "\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return nil, false
	}
	m := Meta{Method: "GET", Proto: "HTTP/1.1", URI: "/p?q", Query: "q", Host: r.Host, RemoteAddr: "192.0.2.1:5",
		ClientIP: "192.0.2.1"}
	if fast {
		m.Lines, m.RequestID = []byte(lines), "id-1"
	} else {
		r.Header.Set("X-Request-Id", "id-1") // as the full chain does
		m.Header = r.Header
	}
	vars := map[string]string{}
	dup := false
	m.Vars(func(k, v string) {
		if _, ok := vars[k]; ok {
			dup = true
		}
		vars[k] = v
	})
	if dup {
		t.Errorf("a variable twice for %q", lines)
	}
	return vars, true
}

// TestLineFieldsAsNetHTTP: a header block read by LineFields gives a
// script the variables net/http's parse of it gives: names in any case
// joined, Host apart, Pragma's implied Cache-Control, credentials and
// Proxy left out, the server's X-Request-ID.
func TestLineFieldsAsNetHTTP(t *testing.T) {
	for _, lines := range []string{
		"Host: a.test\r\n",
		"Host: a.test\r\nX-Dup: 1\r\nx-dup: 2\r\nX-DUP:  3 \r\n",
		"Host: a.test\r\nCookie: a=1\r\ncookie: b=2\r\n",
		"Host: a.test\r\nPragma: no-cache\r\n",
		"Host: a.test\r\nPragma: no-cache\r\nCache-Control: max-age=0\r\n",
		"Host: a.test\r\nPragma: x\r\n",
		"Host: a.test\r\nX-Request-Id: theirs\r\nx-request-id: again\r\n",
		"Host: a.test\r\nAuthorization: Basic eA==\r\nProxy: http://evil\r\nSession: s\r\nProxy-Authorization: x\r\n",
		"Host: a.test\r\nX_Under: z\r\nX-Empty:\r\nX-Empty: e\r\nContent-Type: text/plain\r\n",
		"host: a.test:8080\r\nuser-agent: ua\r\nACCEPT: */*\r\n",
	} {
		full, ok := linesVars(t, lines, false)
		if !ok {
			t.Fatalf("net/http refuses %q", lines)
		}
		fast, _ := linesVars(t, lines, true)
		if !maps.Equal(fast, full) {
			t.Errorf("%q:\nLineFields %v\nnet/http   %v", lines, fast, full)
		}
	}
}

// FuzzLineFields: for any header block net/http accepts that the fast
// path would take (CRLF lines, token names, no controls in values),
// LineFields gives the variables net/http's parse gives.
func FuzzLineFields(f *testing.F) {
	f.Add("Host: a\r\nX-A: 1\r\nx-a: 2\r\nPragma: no-cache\r\n")
	f.Add("Host: a\r\nCookie: a=1\r\nCOOKIE: b\r\nX-Request-Id: q\r\n")
	f.Fuzz(func(t *testing.T, lines string) {
		if !fastLines(lines) {
			return
		}
		full, ok := linesVars(t, lines, false)
		if !ok {
			return
		}
		fast, _ := linesVars(t, lines, true)
		if !maps.Equal(fast, full) {
			t.Errorf("%q:\nLineFields %v\nnet/http   %v", lines, fast, full)
		}
	})
}

// fastLines is what internal/http1.ParseHead lets through to a relay:
// CRLF-ended "Name: value" lines, token names, values without controls,
// one Host.
func fastLines(s string) bool {
	if !strings.HasSuffix(s, "\r\n") {
		return false
	}
	hosts := 0
	for line := range strings.SplitSeq(strings.TrimSuffix(s, "\r\n"), "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || !cgiToken([]byte(name)) || strings.ContainsAny(name, "\r\n") {
			return false
		}
		for _, c := range []byte(value) {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return false
			}
		}
		if strings.EqualFold(name, "host") {
			hosts++
		}
	}
	return hosts == 1 && !bytes.Contains([]byte(s), []byte("\n\r\n"))
}
