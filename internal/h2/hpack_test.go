package h2

import (
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// TestAppendFieldDecodes: what AppendField and appendStatus write, a
// standard HPACK decoder reads back, also twice in a row as a cached
// block is sent on one connection.
func TestAppendFieldDecodes(t *testing.T) {
	fields := []hpack.HeaderField{
		{Name: "content-type", Value: "text/html; charset=utf-8"},
		{Name: "accept-encoding", Value: "gzip, deflate"},
		{Name: "x-custom-name", Value: "v"},
		{Name: "etag", Value: `"` + strings.Repeat("z", 300) + `"`},
		{Name: strings.Repeat("n", 200), Value: ""},
		{Name: "set-cookie", Value: "a=\x7f\xff binary-ish"},
	}
	for _, status := range []int{200, 204, 206, 304, 400, 404, 500, 103, 201, 431, 999} {
		blk := appendStatus(nil, status)
		for _, f := range fields {
			blk = AppendField(blk, f.Name, f.Value)
		}
		for range 2 { // the same block twice on one connection
			dec := hpack.NewDecoder(4096, nil)
			got, err := dec.DecodeFull(append(blk, blk...))
			if err != nil {
				t.Fatalf("status %d: %v", status, err)
			}
			if len(got) != 2*(1+len(fields)) || got[0].Name != ":status" || got[0].Value != strconv.Itoa(status) {
				t.Fatalf("status %d: decoded %v", status, got[:1])
			}
			for i, f := range fields {
				if got[1+i].Name != f.Name || got[1+i].Value != f.Value {
					t.Errorf("field %d: %q=%q, want %q=%q", i, got[1+i].Name, got[1+i].Value, f.Name, f.Value)
				}
			}
		}
	}
}
