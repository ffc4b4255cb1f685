package h2

import (
	"strconv"

	"golang.org/x/net/http2/hpack"
)

// AppendField appends the HPACK encoding of one header field to dst:
// indexed when the static table holds the whole field, else a literal
// without indexing (naming the static entry when there is one). Nothing
// enters the dynamic table, so a block made of these is valid on any
// connection and may be cached. Strings are Huffman-coded when shorter.
func AppendField(dst []byte, name, value string) []byte {
	if i := staticField(name, value); i > 0 {
		return appendInt(dst, 0x80, 7, uint64(i))
	}
	if i := staticName(name); i > 0 {
		dst = appendInt(dst, 0x00, 4, uint64(i))
	} else {
		dst = append(dst, 0x00)
		dst = appendString(dst, name)
	}
	return appendString(dst, value)
}

// appendStatus appends :status: indexed for the seven codes the static
// table holds, else a literal naming entry 8.
func appendStatus(dst []byte, code int) []byte {
	if i := staticStatus(code); i > 0 {
		return append(dst, 0x80|byte(i))
	}
	dst = appendInt(dst, 0x00, 4, 8)
	var b [3]byte
	return appendString(dst, string(strconv.AppendInt(b[:0], int64(code), 10)))
}

// staticStatus is the static table's index of ":status: code", or 0.
func staticStatus(code int) int {
	codes := [...]int{200, 204, 206, 304, 400, 404, 500}
	for i, c := range codes {
		if c == code {
			return 8 + i
		}
	}
	return 0
}

func appendString(dst []byte, s string) []byte {
	if n := hpack.HuffmanEncodeLength(s); n < uint64(len(s)) {
		dst = appendInt(dst, 0x80, 7, n)
		return hpack.AppendHuffmanString(dst, s)
	}
	dst = appendInt(dst, 0x00, 7, uint64(len(s)))
	return append(dst, s...)
}

// appendInt writes v with an n-bit prefix (RFC 7541 5.1); first holds the
// bits above the prefix.
func appendInt(dst []byte, first byte, n uint, v uint64) []byte {
	max := uint64(1)<<n - 1
	if v < max {
		return append(dst, first|byte(v))
	}
	dst = append(dst, first|byte(max))
	for v -= max; v >= 128; v >>= 7 {
		dst = append(dst, byte(0x80|v&0x7f))
	}
	return append(dst, byte(v))
}

// The static table (RFC 7541 Appendix A), by name: the first index and
// the values that have entries of their own.
var staticNames = map[string]int{
	":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8,
	"accept-charset": 15, "accept-encoding": 16, "accept-language": 17,
	"accept-ranges": 18, "accept": 19, "access-control-allow-origin": 20,
	"age": 21, "allow": 22, "authorization": 23, "cache-control": 24,
	"content-disposition": 25, "content-encoding": 26, "content-language": 27,
	"content-length": 28, "content-location": 29, "content-range": 30,
	"content-type": 31, "cookie": 32, "date": 33, "etag": 34, "expect": 35,
	"expires": 36, "from": 37, "host": 38, "if-match": 39,
	"if-modified-since": 40, "if-none-match": 41, "if-range": 42,
	"if-unmodified-since": 43, "last-modified": 44, "link": 45,
	"location": 46, "max-forwards": 47, "proxy-authenticate": 48,
	"proxy-authorization": 49, "range": 50, "referer": 51, "refresh": 52,
	"retry-after": 53, "server": 54, "set-cookie": 55,
	"strict-transport-security": 56, "transfer-encoding": 57,
	"user-agent": 58, "vary": 59, "via": 60, "www-authenticate": 61,
}

func staticName(name string) int { return staticNames[name] }

// staticField finds the few response fields whose value is in the table.
func staticField(name, value string) int {
	switch {
	case name == "accept-encoding" && value == "gzip, deflate":
		return 16
	}
	return 0
}
