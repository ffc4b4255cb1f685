package http1

import (
	"net/http"
	"slices"
	"strings"
)

// AppendFields appends h's fields to b as net/http writes a response's
// header: keys sorted, one line per value, a value's CR and LF turned
// into spaces and its ends trimmed, so that no value breaks out of its
// line. Answers composed outside net/http (a fast answer's cached
// fields, a relay's response) go out the same as net/http's would.
func AppendFields(b []byte, h http.Header) []byte {
	var keys [24]string
	ks := keys[:0]
	for k := range h {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	for _, k := range ks {
		for _, v := range h[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, strings.Trim(strings.Map(newlineToSpace, v), " \t")...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

func newlineToSpace(r rune) rune {
	if r == '\r' || r == '\n' {
		return ' '
	}
	return r
}
