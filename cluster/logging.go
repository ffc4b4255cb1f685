package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
)

// Limits on memberlist's log lines. memberlist logs one line per garbage
// packet and per stranger's connection, so anyone who reaches the gossip
// port could fill the log (4,000 junk packets wrote 5,823 lines in 0.7 s).
const (
	// logWindow is how long one kind of line from one source stays quiet
	// after it was written once.
	logWindow = time.Minute
	// logKindsPerSource bounds the distinct lines one source gets per
	// window, so varying the text (a message type, a label) buys nothing.
	logKindsPerSource = 8
	// logMaxKeys bounds the limiter's memory against spoofed sources.
	logMaxKeys = 1024
	// logKindMax is how much of a line names its kind.
	logKindMax = 64
)

// newMemberlistLogger routes memberlist's "[LEVEL] memberlist: text"
// lines through slog at the matching level, at most one line per kind and
// source address per minute (see mlWriter).
func newMemberlistLogger(l *slog.Logger) (*log.Logger, *mlWriter) {
	w := newMLWriter(l.With("component", "memberlist"), logWindow)
	return log.New(w, "", 0), w
}

// mlWriter writes each kind of memberlist line from each source once per
// window and counts the rest (metric shoal_memberlist_log_suppressed_total
// and a summary line at the end of the window).
type mlWriter struct {
	log    *slog.Logger
	window time.Duration

	// mu guards every field below.
	mu         sync.Mutex
	start      time.Time       // when the window began
	seen       map[string]bool // kind|source written this window
	perSource  map[string]int  // distinct kinds written per source this window
	suppressed int             // lines not written this window
	sources    map[string]bool // sources of those lines (up to logMaxKeys)
}

func newMLWriter(l *slog.Logger, window time.Duration) *mlWriter {
	return &mlWriter{log: l, window: window, start: time.Now(),
		seen: map[string]bool{}, perSource: map[string]int{}, sources: map[string]bool{}}
}

func (w *mlWriter) Write(p []byte) (int, error) {
	level, line := parseMLLine(string(bytes.TrimSpace(p)))
	ctx := context.Background()
	if !w.log.Enabled(ctx, level) {
		return len(p), nil
	}
	if !w.admit(line, time.Now()) {
		gometrics.IncrCounter([]string{"shoal", "memberlist", "log", "suppressed"}, 1)
		return len(p), nil
	}
	w.log.Log(ctx, level, line)
	return len(p), nil
}

// parseMLLine splits "[LEVEL] memberlist: text" into a level and the text.
func parseMLLine(line string) (slog.Level, string) {
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			switch line[1:end] {
			case "DEBUG":
				level = slog.LevelDebug
			case "WARN":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			line = strings.TrimSpace(line[end+1:])
		}
	}
	return level, strings.TrimPrefix(line, "memberlist: ")
}

// admit reports whether line may be written now, counting it otherwise.
func (w *mlWriter) admit(line string, now time.Time) bool {
	kind, source := lineKind(line), lineSource(line)
	key := kind + "|" + source
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rollLocked(now)
	switch {
	case w.seen[key]:
	case source != "" && w.perSource[source] >= logKindsPerSource:
	case len(w.seen) >= logMaxKeys:
	default:
		w.seen[key] = true
		if source != "" {
			w.perSource[source]++
		}
		return true
	}
	w.suppressed++
	if len(w.sources) < logMaxKeys {
		w.sources[source] = true
	}
	return false
}

// flush ends the window if it is over, writing what it suppressed; the
// join loop calls it so the summary comes even when the lines stop.
func (w *mlWriter) flush(now time.Time) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rollLocked(now)
}

func (w *mlWriter) rollLocked(now time.Time) {
	if now.Sub(w.start) < w.window {
		return
	}
	if w.suppressed > 0 {
		// slog handlers do not call back into memberlist, so writing
		// under mu cannot deadlock; it keeps the summary in order.
		w.log.Warn("memberlist log lines suppressed (at most one per kind and source a window)",
			"lines", w.suppressed, "sources", len(w.sources), "window", w.window.String())
	}
	w.start = now
	clear(w.seen)
	clear(w.perSource)
	clear(w.sources)
	w.suppressed = 0
}

// lineKind names what a line says without its variable tail: the text
// before the first colon, without the source, capped.
func lineKind(line string) string {
	if i := strings.Index(line, " from="); i >= 0 {
		line = line[:i]
	}
	if i := strings.Index(line, ": "); i >= 0 {
		line = line[:i]
	}
	if len(line) > logKindMax {
		line = line[:logKindMax]
	}
	return line
}

// lineSource is the host memberlist names with from= (the port changes
// with every packet, so it is left out), or "".
func lineSource(line string) string {
	i := strings.Index(line, "from=")
	if i < 0 {
		return ""
	}
	addr := line[i+len("from="):]
	if j := strings.IndexAny(addr, " \t"); j >= 0 {
		addr = addr[:j]
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	if len(addr) > 64 {
		addr = addr[:64]
	}
	return addr
}
