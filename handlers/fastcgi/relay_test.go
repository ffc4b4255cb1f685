package fastcgi

import (
	"net/http"
	"testing"
)

type namedCodec struct{ name string }

func (namedCodec) Encoded(*http.Request) string                             { return "" }
func (namedCodec) Replace(http.ResponseWriter, *http.Request, string) error { return nil }
func (c namedCodec) CookieName() string                                     { return c.name }

// TestMayHoldSession: the relay makes a request to read the session only
// when the session cookie may be there; it never misses one.
func TestMayHoldSession(t *testing.T) {
	for _, tc := range []struct {
		lines string
		want  bool
	}{
		{"Host: a\r\n\r\n", false},
		{"Host: a\r\nCookie: shoal_session=abc\r\n\r\n", true},
		{"Host: a\r\nCookie: x=1; shoal_session=abc\r\n\r\n", true},
		{"Host: a\r\nCookie: shoal_sessionx=1\r\nX-Shoal_session: y\r\n\r\n", false},
		{"Host: a\r\nCookie: x=shoal_session\r\n\r\n", false},
	} {
		if got := mayHoldSession(namedCodec{"shoal_session"}, []byte(tc.lines)); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.lines, got, tc.want)
		}
	}
}
