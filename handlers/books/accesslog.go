package books

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// AccessLog writes one line per request in Combined Log Format (what
// goaccess and awstats read) or as JSON lines.
//
// Logging never blocks serving: Log formats the line and hands it to a
// writer goroutine through a bounded queue. A destination that stalls (a
// stdout pipe nobody drains, a full disk on NFS) stops only that
// goroutine; once the queue is full, lines are dropped and counted
// (Dropped, and the Prometheus counter behind AccessLogOptions.OnDrop)
// rather than making requests wait. The writer buffers lines and flushes
// every second and on Close, so logging costs no syscall per request.
type AccessLog struct {
	json   bool
	onDrop func()
	open   func() (io.Writer, error)

	// queue carries formatted lines to the writer; pending counts their
	// bytes, so a few huge lines cannot hold much memory either.
	queue      chan []byte
	pending    atomic.Int64
	maxPending int64
	dropped    atomic.Uint64
	closed     atomic.Bool

	reopen chan chan error
	stop   chan struct{}
	done   chan struct{}

	// w is owned by the writer goroutine; out is its destination, read
	// by Close when the writer is stuck.
	w   *bufio.Writer
	out atomic.Pointer[destination]
}

// destination wraps the writer so it can sit in an atomic.Pointer.
type destination struct{ io.Writer }

// closeOut closes the destination when it can be closed (stdout cannot).
func (l *AccessLog) closeOut() error {
	if c, ok := l.out.Load().Writer.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// AccessLogOptions configures OpenAccessLog. The zero value logs in the
// combined format with the default queue.
type AccessLogOptions struct {
	// Format is "combined" or "json".
	Format string
	// QueueLines and QueueBytes bound the lines waiting for the writer
	// (0: 8192 lines, 1 MiB); beyond either, lines are dropped.
	QueueLines int
	QueueBytes int64
	// OnDrop is called once per dropped line (a metric); nil: only counted.
	OnDrop func()
	// Open opens the destination again for Reopen (after logrotate moved
	// the file); nil: Reopen keeps the writer it has.
	Open func() (io.Writer, error)
}

// Queue bounds when the options leave them zero.
const (
	defaultQueueLines = 8192
	defaultQueueBytes = 1 << 20
)

// closeWait bounds how long Close waits for a stalled destination to take
// the buffered lines: a reload or shutdown must not hang on a full pipe.
const closeWait = 2 * time.Second

// NewAccessLog logs to out in format "combined" or "json".
func NewAccessLog(out io.Writer, format string) *AccessLog {
	return OpenAccessLog(out, AccessLogOptions{Format: format})
}

// OpenAccessLog logs to out as o says.
func OpenAccessLog(out io.Writer, o AccessLogOptions) *AccessLog {
	lines, bytes := o.QueueLines, o.QueueBytes
	if lines <= 0 {
		lines = defaultQueueLines
	}
	if bytes <= 0 {
		bytes = defaultQueueBytes
	}
	l := &AccessLog{json: o.Format == "json", onDrop: o.OnDrop, open: o.Open,
		queue: make(chan []byte, lines), maxPending: bytes,
		reopen: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{}),
		w: bufio.NewWriterSize(out, 64<<10)}
	l.out.Store(&destination{out})
	go l.writeLoop()
	return l
}

// writeLoop is the only goroutine that touches the destination.
func (l *AccessLog) writeLoop() {
	defer close(l.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case line := <-l.queue:
			l.write(line)
		case <-t.C:
			l.w.Flush()
		case reply := <-l.reopen:
			reply <- l.reopenOut()
		case <-l.stop:
			l.drain()
			return
		}
	}
}

// drain writes the lines queued so far and flushes them.
func (l *AccessLog) drain() {
	for {
		select {
		case line := <-l.queue:
			l.write(line)
		default:
			l.w.Flush()
			return
		}
	}
}

func (l *AccessLog) write(line []byte) {
	l.pending.Add(-int64(len(line)))
	l.w.Write(line)
}

// reopenOut flushes to the old destination, then swaps in a new one.
func (l *AccessLog) reopenOut() error {
	if l.open == nil {
		return nil
	}
	out, err := l.open()
	if err != nil {
		return fmt.Errorf("access log: reopen: %w", err)
	}
	l.drain()
	l.closeOut()
	l.out.Store(&destination{out})
	l.w.Reset(out)
	return nil
}

// errLogClosed: Reopen on a log that Close already stopped.
var errLogClosed = errors.New("access log: closed")

// errLogStalled: the writer did not come to a Reopen in time (its
// destination is stalled).
var errLogStalled = errors.New("access log: writer stalled")

// Reopen opens the destination again, as `nginx -s reopen` does after
// logrotate renamed the file: lines queued before go to the old file,
// later ones to the new.
func (l *AccessLog) Reopen() error {
	reply := make(chan error, 1)
	timer := time.NewTimer(closeWait)
	defer timer.Stop()
	select {
	case l.reopen <- reply:
		return <-reply
	case <-l.done:
		return errLogClosed
	case <-timer.C:
		return errLogStalled
	}
}

// Dropped is how many lines were dropped because the queue was full.
func (l *AccessLog) Dropped() uint64 { return l.dropped.Load() }

// Close writes what is queued and stops the writer, waiting at most
// closeWait for a stalled destination. It is idempotent.
func (l *AccessLog) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	close(l.stop)
	timer := time.NewTimer(closeWait)
	defer timer.Stop()
	select {
	case <-l.done:
	case <-timer.C:
		// The writer is stuck in a write; closing a file below frees it
		// (it then exits), a stalled stdout keeps it until it drains.
		l.closeOut()
		return errLogStalled
	}
	return l.closeOut()
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

// Log queues the line for one finished request; it never waits and
// keeps nothing of e.
func (l *AccessLog) Log(e *Entry) {
	if l.closed.Load() {
		return
	}
	var line []byte
	if l.json {
		line = l.jsonLine(e)
	} else {
		line = combinedLine(make([]byte, 0, 256), e)
	}
	if l.pending.Add(int64(len(line))) > l.maxPending {
		l.pending.Add(-int64(len(line)))
		l.drop()
		return
	}
	select {
	case l.queue <- line:
	default:
		l.pending.Add(-int64(len(line)))
		l.drop()
	}
}

func (l *AccessLog) drop() {
	l.dropped.Add(1)
	if l.onDrop != nil {
		l.onDrop()
	}
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
