package http1

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rules are the checks shoal makes on every HTTP/1.x request head
// before net/http reads it, for what net/http accepts and nginx refuses:
//   - Content-Length together with Transfer-Encoding (RFC 9112 6.1: a
//     smuggling attempt; the connection must close after the answer) and
//     Transfer-Encoding in HTTP/1.0: 400;
//   - obs-fold (a header line that starts with a space or tab): 400;
//   - a request line longer than max_header_bytes: 414;
//   - a head longer than max_header_bytes, exactly (net/http allows 4 KiB
//     more): 431.
//
// A refused head never reaches net/http: in its place net/http reads a
// made-up request carrying a secret token, which handler answers with the
// status and Connection: close. So the answer goes out in order, after
// any response still being written on the connection, and net/http
// closes the connection after it.
type Rules struct {
	maxHeader int
	token     string // 128 random bits, never sent to a client
	log       *rateLog
}

// rejectHeader carries the token and the status in the made-up request.
const rejectHeader = "X-Shoal-Reject"

func NewRules(maxHeader int64, log *slog.Logger) *Rules {
	var b [16]byte
	rand.Read(b[:])
	return &Rules{maxHeader: int(maxHeader), token: hex.EncodeToString(b[:]),
		log: &rateLog{log: log, msg: "request head refused", perSecond: 5}}
}

// Handler answers the made-up requests and strips the header from all
// others (a client cannot know the token, but may send the name).
func (hr *Rules) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v, ok := r.Header[rejectHeader]; ok {
			delete(r.Header, rejectHeader)
			if status := hr.status(v); status != 0 {
				w.Header().Set("Connection", "close")
				http.Error(w, strconv.Itoa(status)+" "+http.StatusText(status), status)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (hr *Rules) status(v []string) int {
	if len(v) != 1 {
		return 0
	}
	token, code, _ := strings.Cut(v[0], " ")
	if subtle.ConstantTimeCompare([]byte(token), []byte(hr.token)) != 1 {
		return 0
	}
	n, _ := strconv.Atoi(code)
	return n
}

// guard returns a reader of src for net/http that applies the rules to
// each request head; pending are bytes already read from src (they start
// at a request). remote names the client in log lines.
func (hr *Rules) guard(pending []byte, src io.Reader, remote string) *headGuard {
	g := &headGuard{rules: hr, src: src, remote: remote}
	g.store = append(make([]byte, 0, max(len(pending), 4096)), pending...)
	g.buf = g.store
	return g
}

// Framing states of a headGuard: where the next byte belongs.
const (
	guardHead     = iota // a request head (held until complete and checked)
	guardLength          // a body of known length (left bytes)
	guardChunked         // a chunked body (chunk holds the detail)
	guardBlind           // not HTTP/1.1 any more (Upgrade, CONNECT) or framing net/http will refuse: pass through
	guardRejected        // the made-up request was given; the rest is read and dropped
)

// headGuard follows the framing of the requests on one connection, so it
// knows where each head starts, and holds each head back until it has
// checked it. It keeps no bytes of a body. When in doubt about the
// framing it passes everything through (net/http then refuses what it
// refuses, as without the guard).
type headGuard struct {
	rules  *Rules
	src    io.Reader
	remote string

	state int
	left  int64 // guardLength: body bytes to come; guardChunked: data of the chunk
	chunk chunkScan
	// buf holds bytes read from src not yet given out, in store; the first
	// release of them are given out as they are. scanned is where the
	// line that is not complete yet starts in a head being read.
	store   []byte
	buf     []byte
	release int
	scanned int
}

// passthrough reports whether nothing is held and nothing is watched any
// more, so a reader may bypass the guard.
func (g *headGuard) passthrough() bool { return g.state == guardBlind && len(g.buf) == 0 }

func (g *headGuard) Read(p []byte) (int, error) {
	for {
		if g.release > 0 {
			n := copy(p, g.buf[:g.release])
			g.take(n)
			g.release -= n
			return n, nil
		}
		switch g.state {
		case guardRejected:
			return 0, g.drain()
		case guardBlind:
			if len(g.buf) > 0 {
				n := copy(p, g.buf)
				g.take(n)
				return n, nil
			}
			return g.src.Read(p)
		case guardHead:
			if err := g.scanHead(); err != nil {
				return 0, err
			}
		default:
			if len(g.buf) > 0 {
				g.release = g.feed(g.buf)
				continue
			}
			n, err := g.src.Read(p)
			k := g.feed(p[:n])
			if k < n {
				g.buf = append(g.buf, p[k:n]...) // the next head began
				err = nil
			}
			if k > 0 || err != nil {
				return k, err
			}
		}
	}
}

// take drops the first n bytes of buf, keeping its storage when empty.
func (g *headGuard) take(n int) {
	g.buf = g.buf[n:]
	if len(g.buf) == 0 {
		g.buf = g.store[:0]
	}
}

// scanHead reads until the head in buf is complete (or too long), then
// checks it: released as it is, or replaced by the made-up request.
func (g *headGuard) scanHead() error {
	limit := g.rules.maxHeader
	for {
		var end int
		end, g.scanned = headEndFrom(g.buf, g.scanned)
		if end >= 0 && end <= limit {
			g.scanned = 0
			status, reason := g.check(g.buf[:end])
			if status != 0 {
				g.reject(status, reason)
				return nil
			}
			g.release = end
			return nil
		}
		if len(g.buf) > limit {
			if bytes.IndexByte(g.buf[:limit], '\n') < 0 {
				g.reject(http.StatusRequestURITooLong, "request line longer than max_header_bytes")
			} else {
				g.reject(http.StatusRequestHeaderFieldsTooLarge, "head longer than max_header_bytes")
			}
			return nil
		}
		if cap(g.buf)-len(g.buf) < 1024 {
			g.grow(limit)
		}
		n, err := g.src.Read(g.buf[len(g.buf):cap(g.buf)])
		g.buf = g.buf[:len(g.buf)+n]
		if err != nil && n == 0 {
			if errors.Is(err, io.EOF) && len(g.buf) > 0 {
				g.state = guardBlind // a cut-off head: net/http answers it as it does
				return nil
			}
			return err // a deadline (net/http's or its abort of a read): buf waits
		}
	}
}

// grow makes room in buf for the rest of a head of at most limit bytes:
// the head moves to the front of store, or to a larger one.
func (g *headGuard) grow(limit int) {
	if len(g.buf)+4096 <= cap(g.store) {
		n := copy(g.store[:cap(g.store)], g.buf)
		g.buf = g.store[:n]
		return
	}
	nb := make([]byte, len(g.buf), min(2*cap(g.store)+4096, limit+4096))
	copy(nb, g.buf)
	g.store, g.buf = nb, nb
}

// headEndFrom is HeadEnd resuming at from, the start of a line not yet
// complete; it returns the end of the head (-1: not yet) and where to
// resume.
func headEndFrom(b []byte, from int) (end, next int) {
	for i := from; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1, i
		}
		e := i + j + 1
		if line := b[i:e]; i > 0 && (len(line) == 1 || len(line) == 2 && line[0] == '\r') {
			return e, e
		}
		i = e
	}
}

// check applies the rules to a complete head and sets the framing of what
// follows it; a status other than 0 refuses it.
func (g *headGuard) check(head []byte) (status int, reason string) {
	nl := bytes.IndexByte(head, '\n')
	reqLine := bytes.TrimSuffix(head[:nl], []byte("\r"))
	http10 := bytes.HasSuffix(reqLine, []byte(" HTTP/1.0"))
	var cls, tes [][]byte
	upgrade := bytes.HasPrefix(reqLine, []byte("CONNECT ")) || bytes.HasPrefix(reqLine, []byte("PRI "))
	for rest := head[nl+1:]; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		line := bytes.TrimSuffix(rest[:i], []byte("\r"))
		rest = rest[i+1:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return http.StatusBadRequest, "obs-fold header line"
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.Trim(value, " \t")
		switch {
		case EqualFold(name, "content-length"):
			cls = append(cls, value)
		case EqualFold(name, "transfer-encoding"):
			tes = append(tes, value)
		case EqualFold(name, "upgrade"):
			upgrade = true
		}
	}
	switch {
	case len(tes) > 0 && len(cls) > 0:
		return http.StatusBadRequest, "Content-Length with Transfer-Encoding"
	case len(tes) > 0 && http10:
		return http.StatusBadRequest, "Transfer-Encoding in HTTP/1.0"
	}
	g.state = guardHead
	switch {
	case upgrade:
		g.state = guardBlind // the connection may carry another protocol next
	case len(tes) == 1 && EqualFold(tes[0], "chunked"):
		g.state, g.chunk = guardChunked, chunkScan{}
	case len(tes) > 0:
		g.state = guardBlind // net/http answers 501 and closes
	case len(cls) > 0:
		n, err := strconv.ParseInt(string(cls[0]), 10, 64)
		for _, cl := range cls[1:] {
			if !bytes.Equal(cl, cls[0]) {
				err = errors.New("differing Content-Length")
			}
		}
		switch {
		case err != nil || n < 0 || cls[0][0] < '0' || cls[0][0] > '9':
			g.state = guardBlind // net/http answers 400 and closes
		case n > 0:
			g.state, g.left = guardLength, n
		}
	}
	return 0, ""
}

// reject puts the made-up request in place of the head.
func (g *headGuard) reject(status int, reason string) {
	g.rules.log.write("client", g.remote, "status", status, "reason", reason)
	g.scanned = 0
	g.buf = []byte("GET / HTTP/1.1\r\nHost: shoal.invalid\r\nConnection: close\r\n" +
		rejectHeader + ": " + g.rules.token + " " + strconv.Itoa(status) + "\r\n\r\n")
	g.release = len(g.buf)
	g.state = guardRejected
}

// drain reads and drops what the client still sends until the connection
// ends (net/http closes it after the answer).
func (g *headGuard) drain() error {
	var scratch [512]byte
	for {
		if _, err := g.src.Read(scratch[:]); err != nil {
			return err
		}
	}
}

// feed follows the body framing over b and returns how many of its bytes
// belong to the body; the rest begins the next head.
func (g *headGuard) feed(b []byte) int {
	switch g.state {
	case guardLength:
		n := int(min(int64(len(b)), g.left))
		if g.left -= int64(n); g.left == 0 {
			g.state = guardHead
		}
		return n
	case guardChunked:
		n, done, ok := g.chunk.scan(b)
		switch {
		case !ok:
			g.state = guardBlind
			return len(b)
		case done:
			g.state = guardHead
		}
		return n
	}
	return len(b)
}

// chunkScan follows a chunked body (RFC 9112 7.1) loosely enough to find
// its end wherever net/http would: sizes in hex, extensions and bare LF
// skipped, trailer lines up to the empty one.
type chunkScan struct {
	phase  int   // chunkSize, chunkExt, chunkData, chunkDataEnd, chunkTrailer
	size   int64 // chunk size being read, then data left
	digits int
	line   int // bytes on the current size, data-end or trailer line
	total  int // trailer bytes
}

const (
	chunkSize = iota
	chunkExt
	chunkData
	chunkDataEnd
	chunkTrailer
)

// Bounds past which net/http refuses a chunked body anyway.
const (
	maxChunkLine = 4096
	maxTrailer   = 64 << 10
)

// scan consumes b; n is the bytes up to the end of the body when done;
// ok false: the framing is not one net/http takes.
func (c *chunkScan) scan(b []byte) (n int, done, ok bool) {
	for i := 0; i < len(b); i++ {
		ch := b[i]
		switch c.phase {
		case chunkData:
			skip := int(min(int64(len(b)-i), c.size))
			c.size -= int64(skip)
			i += skip - 1
			if c.size == 0 {
				c.phase, c.line = chunkDataEnd, 0
			}
		case chunkSize, chunkExt:
			if c.line++; c.line > maxChunkLine {
				return 0, false, false
			}
			if d := unhex(ch); c.phase == chunkSize && d >= 0 {
				if c.digits++; c.digits > 15 {
					return 0, false, false
				}
				c.size = c.size<<4 | int64(d)
				continue
			}
			if ch != '\n' {
				c.phase = chunkExt
				continue
			}
			if c.digits == 0 {
				return 0, false, false
			}
			if c.size == 0 {
				c.phase, c.line = chunkTrailer, 0
			} else {
				c.phase = chunkData
			}
		case chunkDataEnd:
			if ch == '\n' {
				*c = chunkScan{}
				continue
			}
			if c.line++; c.line > 1 {
				return 0, false, false
			}
		case chunkTrailer:
			if c.total++; c.total > maxTrailer {
				return 0, false, false
			}
			switch {
			case ch == '\n' && c.line == 0:
				return i + 1, true, true
			case ch == '\n':
				c.line = 0
			case ch != '\r':
				c.line++
			}
		}
	}
	return len(b), false, true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// rateLog writes one kind of log line at most perSecond times a second
// and counts what it dropped, so hostile input cannot flood the log.
type rateLog struct {
	log       *slog.Logger
	msg       string
	perSecond int

	// mu guards the window.
	mu          sync.Mutex
	windowStart time.Time
	inWindow    int
	dropped     int
}

func (l *rateLog) write(args ...any) {
	l.mu.Lock()
	now := time.Now()
	dropped := 0
	if now.Sub(l.windowStart) >= time.Second {
		dropped = l.dropped
		l.windowStart, l.inWindow, l.dropped = now, 0, 0
	}
	l.inWindow++
	drop := l.inWindow > l.perSecond
	if drop {
		l.dropped++
	}
	l.mu.Unlock()
	if dropped > 0 {
		l.log.Info(l.msg+": lines not logged", "count", dropped)
	}
	if !drop {
		l.log.Info(l.msg, args...)
	}
}
