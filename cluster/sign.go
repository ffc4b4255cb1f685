package cluster

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header and cookie names this package owns. Requests from outside the
// cluster never get to set the first two: they are stripped on arrival.
const (
	hopHeader    = "X-Shoal-Hop"  // on a proxied request: signed by the sending peer
	loadHeader   = "X-Shoal-Load" // on a proxied response: the serving peer's load
	markerParam  = "_shoal"       // query parameter on a redirect: do not redirect again
	stickyCookie = "shoal_node"
)

// hmacKeys are derived from the cluster secret, one per purpose, so a
// value signed for one use never verifies for another.
type hmacKeys struct {
	hop, load, mark, sticky *macKey
}

func deriveKeys(secret []byte) hmacKeys {
	k := func(purpose string) *macKey {
		b, err := hkdf.Key(sha256.New, secret, nil, "shoal/"+purpose, 32)
		if err != nil {
			panic(err) // only for lengths above 255*32 bytes
		}
		return newMacKey(b)
	}
	return hmacKeys{hop: k("hop"), load: k("load"), mark: k("mark"), sticky: k("sticky")}
}

// macKey signs with one key; HMAC states are pooled because every proxied
// request and reply is signed or checked (hmac.New was a fifth of the
// hop's allocations).
type macKey struct{ pool sync.Pool }

type macState struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

func newMacKey(key []byte) *macKey {
	m := &macKey{}
	m.pool.New = func() any { return &macState{h: hmac.New(sha256.New, key)} }
	return m
}

var b64 = base64.RawURLEncoding

// sign returns a truncated HMAC-SHA256 over parts, each length-prefixed
// so no two part lists share an encoding.
func sign(m *macKey, parts ...string) string {
	st := m.pool.Get().(*macState)
	b := st.buf[:0]
	for _, p := range parts {
		b = strconv.AppendInt(b, int64(len(p)), 10)
		b = append(b, ':')
		b = append(b, p...)
	}
	st.h.Reset()
	st.h.Write(b)
	out := b64.EncodeToString(st.h.Sum(st.sum[:0])[:16])
	st.buf = b
	m.pool.Put(st)
	return out
}

func verify(key *macKey, sig string, parts ...string) bool {
	return hmac.Equal([]byte(sig), []byte(sign(key, parts...)))
}

func fresh(ts string, validity time.Duration, now time.Time) bool {
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	d := now.Sub(time.UnixMilli(ms))
	return d < validity && d > -validity
}

// hopValue signs a request being proxied: the method, host and target
// (path and query, as sent) it goes out with, the node it goes to, the
// time, a random nonce (the receiver accepts each one once), the sending
// node and the client's address (which the receiver restores, since a
// peer is no trusted proxy of its own). Changing any of them, or sending
// it to another node, breaks the signature.
func (k *hmacKeys) hopValue(method, host, target, to, from, client string, now time.Time) string {
	var raw [12]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	return k.hopWithNonce(method, host, target, to, from, client, now, b64.EncodeToString(raw[:]))
}

func (k *hmacKeys) hopWithNonce(method, host, target, to, from, client string, now time.Time, nonce string) string {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	sig := sign(k.hop, "hop", method, host, target, to, ts, nonce, from, client)
	return ts + "." + nonce + "." + b64.EncodeToString([]byte(from)) + "." + b64.EncodeToString([]byte(client)) + "." + sig
}

// hop is what a verified hop header says.
type hop struct {
	from, client string
	nonce        string
	ts           int64 // unix ms, as signed
}

// checkHop verifies a hop header for a request received by node self. It
// does not look at the nonce: the caller admits it once.
func (k *hmacKeys) checkHop(v, method, host, target, self string, validity time.Duration, now time.Time) (hop, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 5 || !fresh(parts[0], validity, now) {
		return hop{}, false
	}
	// Strict: one encoding per value, so no two headers carry one
	// signature.
	f, err1 := b64.Strict().DecodeString(parts[2])
	cl, err2 := b64.Strict().DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return hop{}, false
	}
	if !verify(k.hop, parts[4], "hop", method, host, target, self, parts[0], parts[1], string(f), string(cl)) {
		return hop{}, false
	}
	ts, _ := strconv.ParseInt(parts[0], 10, 64) // fresh parsed it
	return hop{from: string(f), client: string(cl), nonce: parts[1], ts: ts}, true
}

// loadValue signs this node's load report for a proxied response.
func (k *hmacKeys) loadValue(r *loadReport, now time.Time) string {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	payload := b64.EncodeToString(r.encode(msgLoad)[1:])
	return ts + "." + payload + "." + sign(k.load, "load", ts, payload)
}

func (k *hmacKeys) checkLoad(v string, validity time.Duration, now time.Time) (*loadReport, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 || !fresh(parts[0], validity, now) || !verify(k.load, parts[2], "load", parts[0], parts[1]) {
		return nil, false
	}
	b, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	l, err := decodeLoad(b)
	return l, err == nil
}

// markValue is the redirect marker: the target node serves the request
// it marks and never redirects it again. It binds method and target, not
// the path, which a front proxy of the public URL may rewrite.
func (k *hmacKeys) markValue(method, target string, now time.Time) string {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	return ts + "." + sign(k.mark, "mark", method, target, ts)
}

func (k *hmacKeys) checkMark(v, method, self string, validity time.Duration, now time.Time) bool {
	ts, sig, ok := strings.Cut(v, ".")
	return ok && fresh(ts, validity, now) && verify(k.mark, sig, "mark", method, self, ts)
}

// stickyValue names the node a client is kept on.
func (k *hmacKeys) stickyValue(node string) string {
	return b64.EncodeToString([]byte(node)) + "." + sign(k.sticky, "sticky", node)
}

func (k *hmacKeys) checkSticky(v string) (string, bool) {
	name, sig, ok := strings.Cut(v, ".")
	if !ok {
		return "", false
	}
	b, err := b64.DecodeString(name)
	if err != nil || !verify(k.sticky, sig, "sticky", string(b)) {
		return "", false
	}
	return string(b), true
}
