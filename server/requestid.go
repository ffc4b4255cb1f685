package server

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// requestIDs makes the IDs of requests that arrive without a trusted one:
// a random prefix drawn once per node and a counter, so an ID is unique
// across the cluster and across restarts without a random read per
// request (the fast paths make one per logged request).
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (ids *requestIDs) next() string {
	return ids.prefix + strconv.FormatUint(ids.n.Add(1), 36)
}

// requestID is the ID of a request: the X-Request-ID it carries when a
// peer or a trusted proxy set it (and it is a sane token), else a fresh
// one. A client's own X-Request-ID is replaced: it could otherwise make
// log lines of other requests look like its own.
func (ids *requestIDs) requestID(sent string, trusted bool) string {
	if trusted && validRequestID(sent) {
		return sent
	}
	return ids.next()
}

// validRequestID accepts 1 to 128 visible ASCII characters.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
