package http1

import (
	"bytes"
	"net/http"
	"testing"
)

// TestAppendFieldsAsNetHTTP: the lines are those http.Header.Write
// writes for the same header, a value with a line break included.
func TestAppendFieldsAsNetHTTP(t *testing.T) {
	cases := []http.Header{
		{},
		{"Content-Type": {"text/plain"}},
		{"X-B": {"2"}, "X-A": {"1", "one"}, "Cache-Control": {"no-cache"}},
		{"X-Injected": {"a\r\nSet-Cookie: evil=1"}, "X-Lf": {"b\nc"}},
		{"X-Padded": {"  value \t"}},
	}
	for _, h := range cases {
		var want bytes.Buffer
		h.Write(&want)
		if got := AppendFields(nil, h); string(got) != want.String() {
			t.Errorf("AppendFields(%v) = %q; net/http writes %q", h, got, want.String())
		}
	}
}
