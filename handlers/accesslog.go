package handlers

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AccessLog writes one line per request in Combined Log Format (what
// goaccess and awstats read) or as JSON lines. Lines are buffered and
// flushed every second and on Close, so logging costs no syscall per
// request.
type AccessLog struct {
	json bool

	// mu guards w and closed.
	mu     sync.Mutex
	w      *bufio.Writer
	out    io.Writer
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// NewAccessLog logs to out in format "combined" or "json".
func NewAccessLog(out io.Writer, format string) *AccessLog {
	l := &AccessLog{json: format == "json", w: bufio.NewWriterSize(out, 64<<10), out: out,
		stop: make(chan struct{}), done: make(chan struct{})}
	go l.flushLoop()
	return l
}

func (l *AccessLog) flushLoop() {
	defer close(l.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.mu.Lock()
			l.w.Flush()
			l.mu.Unlock()
		case <-l.stop:
			return
		}
	}
}

// Close flushes what is buffered and stops the flusher. It is idempotent.
func (l *AccessLog) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	err := l.w.Flush()
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	if c, ok := l.out.(io.Closer); ok {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Entry is one finished request as the access log writes it: the Info
// the layers filled in, the request line and the outcome. Every entry path
// of the server fills one (server/request.go), so a line reads the same
// whichever path answered.
type Entry struct {
	Info
	Started   time.Time
	Duration  time.Duration // first byte to the last of the books
	Method    string
	URI       string // the request-target as sent
	Proto     string // "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"
	Host      string
	Referer   string
	UserAgent string
	Status    int // 0 counts as 200 (a handler that wrote nothing)
	Bytes     int64
}

// Read fills the request-line fields and the client address (trusted
// proxies applied) of e from r.
func (e *Entry) Read(r *http.Request, trusted []netip.Prefix) {
	e.Method, e.URI, e.Proto, e.Host = r.Method, r.RequestURI, r.Proto, r.Host
	e.ClientIP = clientAddr(r, trusted)
}

// ReadLogged fills what only the log line shows: referer, user agent and
// the Basic auth user. A caller without a log skips the lookups.
func (e *Entry) ReadLogged(r *http.Request) {
	e.Referer, e.UserAgent = r.Referer(), r.UserAgent()
	if auth := r.Header.Get("Authorization"); auth != "" {
		e.User = BasicUser(auth)
	}
}

// BasicUser is the user name of a Basic Authorization value, as
// http.Request.BasicAuth reads it; "" for any other value. Unchecked: the
// name the client claims, for the log until a site's auth checks it.
func BasicUser(auth string) string {
	const prefix = "Basic "
	if len(auth) < len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return ""
	}
	c, err := base64.StdEncoding.DecodeString(auth[len(prefix):])
	if err != nil {
		return ""
	}
	user, _, ok := strings.Cut(string(c), ":")
	if !ok {
		return ""
	}
	return user
}

// status is the status sent, 200 when the handler wrote nothing.
func (e *Entry) status() int {
	if e.Status == 0 {
		return http.StatusOK
	}
	return e.Status
}

// Log writes the line for one finished request. It keeps nothing of e.
func (l *AccessLog) Log(e *Entry) {
	var line []byte
	if l.json {
		line = l.jsonLine(e)
	} else {
		line = combinedLine(make([]byte, 0, 256), e)
	}
	l.mu.Lock()
	if !l.closed {
		l.w.Write(line)
	}
	l.mu.Unlock()
}

// combinedLine formats the NCSA combined format:
// host ident user [time] "request" status bytes "referer" "user-agent"
func combinedLine(b []byte, e *Entry) []byte {
	b = append(b, e.ClientIP...)
	b = append(b, " - "...)
	b = appendQuotedField(b, orDash(e.User), false)
	b = append(b, " ["...)
	b = e.Started.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = appendQuotedField(b, e.Method, true)
	b = append(b, ' ')
	b = appendQuotedField(b, e.URI, true)
	b = append(b, ' ')
	b = appendQuotedField(b, e.Proto, true)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(e.status()), 10)
	b = append(b, ' ')
	if e.Bytes == 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendInt(b, e.Bytes, 10)
	}
	b = append(b, " \""...)
	b = appendQuotedField(b, orDash(e.Referer), true)
	b = append(b, "\" \""...)
	b = appendQuotedField(b, orDash(e.UserAgent), true)
	b = append(b, "\"\n"...)
	return b
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// appendQuotedField escapes what could break the line or forge another
// one: quotes, backslashes, control bytes (as Apache's \xhh).
func appendQuotedField(b []byte, s string, inQuotes bool) []byte {
	const hexDigits = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' && inQuotes, c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f || (!inQuotes && c == ' '):
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

type jsonEntry struct {
	Time      string  `json:"time"`
	Site      string  `json:"site,omitempty"`
	Client    string  `json:"client"`
	User      string  `json:"user,omitempty"`
	Method    string  `json:"method"`
	URI       string  `json:"uri"`
	Proto     string  `json:"proto"`
	Host      string  `json:"host"`
	Status    int     `json:"status"`
	Bytes     int64   `json:"bytes"`
	Duration  float64 `json:"duration_ms"`
	Referer   string  `json:"referer,omitempty"`
	UserAgent string  `json:"user_agent,omitempty"`
	Handler   string  `json:"handler,omitempty"`
	Peer      string  `json:"peer,omitempty"`
	RequestID string  `json:"request_id,omitempty"`
}

func (l *AccessLog) jsonLine(e *Entry) []byte {
	b, _ := json.Marshal(jsonEntry{
		Time: e.Started.UTC().Format(time.RFC3339Nano), Site: e.Site, Client: e.ClientIP, User: e.User,
		Method: e.Method, URI: e.URI, Proto: e.Proto, Host: e.Host,
		Status: e.status(), Bytes: e.Bytes,
		Duration: float64(e.Duration.Microseconds()) / 1000,
		Referer:  e.Referer, UserAgent: e.UserAgent, Handler: e.Handler, Peer: e.Peer, RequestID: e.RequestID,
	})
	return append(b, '\n')
}
