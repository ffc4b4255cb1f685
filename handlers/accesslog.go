package handlers

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
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

// Log writes the line for one finished request.
func (l *AccessLog) Log(r *http.Request, rec *Recorder) {
	var line []byte
	if l.json {
		line = l.jsonLine(r, rec)
	} else {
		line = combinedLine(make([]byte, 0, 256), r, rec)
	}
	l.mu.Lock()
	if !l.closed {
		l.w.Write(line)
	}
	l.mu.Unlock()
}

// combinedLine formats the NCSA combined format:
// host ident user [time] "request" status bytes "referer" "user-agent"
func combinedLine(b []byte, r *http.Request, rec *Recorder) []byte {
	b = append(b, ClientIP(r)...)
	b = append(b, " - "...)
	user := "-"
	if u, _, ok := r.BasicAuth(); ok && u != "" {
		user = u
	}
	b = appendQuotedField(b, user, false)
	b = append(b, " ["...)
	b = rec.Started.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = appendQuotedField(b, r.Method+" "+r.RequestURI+" "+r.Proto, true)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(rec.StatusOrOK()), 10)
	b = append(b, ' ')
	if rec.Bytes == 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendInt(b, rec.Bytes, 10)
	}
	b = append(b, " \""...)
	b = appendQuotedField(b, orDash(r.Referer()), true)
	b = append(b, "\" \""...)
	b = appendQuotedField(b, orDash(r.UserAgent()), true)
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
}

func (l *AccessLog) jsonLine(r *http.Request, rec *Recorder) []byte {
	info := InfoFrom(r)
	b, _ := json.Marshal(jsonEntry{
		Time: rec.Started.UTC().Format(time.RFC3339Nano), Site: info.Site, Client: ClientIP(r),
		Method: r.Method, URI: r.RequestURI, Proto: r.Proto, Host: r.Host,
		Status: rec.StatusOrOK(), Bytes: rec.Bytes,
		Duration: float64(time.Since(rec.Started).Microseconds()) / 1000,
		Referer:  r.Referer(), UserAgent: r.UserAgent(), Handler: info.Handler, Peer: info.Peer,
	})
	return append(b, '\n')
}
